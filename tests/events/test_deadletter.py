"""Dead letters through the real broker."""

from kafka import KafkaProducer

from events.deadletter import StoredDeadLetter, dead_letter_topic, redrive, send_dead_letters, sendable_value
from events.records import DeadLetter, IncomingRecord
from tests.conftest import topic_records


def test_a_redriven_record_goes_back_to_the_partition_it_was_read_from(
    producer: KafkaProducer, kafka_topic: str
) -> None:
    # A publisher other than kafka-python (librdkafka's default partitioner) may have put the key elsewhere
    # than kafka-python would: the redriven record goes back beside the citizen's other events.
    key = b"C-REDRIVE"
    placed_here = (
        producer.send(kafka_topic, key=key, value=b"placed by kafka-python").get(timeout=10).partition
    )
    elsewhere = (placed_here + 1) % 3
    letter = StoredDeadLetter(
        dlq_partition=0,
        dlq_offset=0,
        record=IncomingRecord(kafka_topic, elsewhere, 7, key, b"read from elsewhere", [("trace", b"t-1")]),
        reason="unresolved-identity",
        detail="",
        dead_lettered_at="",
    )
    assert redrive(producer, [letter]) == 1
    (redriven,) = [r for r in topic_records(kafka_topic) if r.value == b"read from elsewhere"]
    assert (redriven.partition, redriven.key, redriven.headers) == (elsewhere, key, [("trace", b"t-1")])


def test_a_record_without_key_or_value_is_dead_lettered_with_an_empty_value(
    producer: KafkaProducer, kafka_topic: str
) -> None:
    # Kafka takes such a record from other clients (a binary-mode event whose headers failed, an empty
    # tombstone); kafka-python refuses to send one, which stopped the consumer at its dead letter.
    record = IncomingRecord(kafka_topic, 1, 41, None, None, [("ce_specversion", b"1.0")])
    send_dead_letters(producer, [DeadLetter(record, "invalid", "id: Field required")])
    (letter,) = topic_records(dead_letter_topic(kafka_topic))
    headers = dict(letter.headers)
    assert (letter.key, letter.value) == (None, b"")
    assert (headers["dlq.reason"], headers["dlq.offset"], headers["ce_specversion"]) == (
        b"invalid",
        b"41",
        b"1.0",
    )


def test_only_a_record_without_key_or_value_has_its_value_changed() -> None:
    assert sendable_value(None, None) == b""
    assert sendable_value(b"C-1", None) is None  # a tombstone keeps its null value
    assert sendable_value(None, b"{}") == b"{}"
