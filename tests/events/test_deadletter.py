"""Dead letters through the real broker."""

from kafka import KafkaProducer

from events.deadletter import StoredDeadLetter, redrive
from events.records import IncomingRecord
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
