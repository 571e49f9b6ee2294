"""Dead letters through the real broker."""

import time
import uuid

import pytest
from click.testing import CliRunner
from kafka import KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.errors import KafkaError, KafkaTimeoutError

from context.store import ProjectionWriter
from events.deadletter import (
    MAX_DETAIL,
    VALUE_OMITTED,
    StoredDeadLetter,
    dead_letter_topic,
    landing,
    read_dead_letters,
    redrive,
    send_dead_letters,
    sendable_value,
)
from events.producer import create_producer
from events.records import DeadLetter, IncomingRecord
from events.settings import KafkaSettings
from events.topics import dead_letter_max_bytes, ensure_topic, topic_max_bytes
from ops.cli import main
from tests.conftest import topic_records, wait_until
from tests.events.test_consumer import consumer_thread


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
    result = redrive(producer, [letter])
    assert (result.sent, result.failed) == ([letter], [])
    (redriven,) = [r for r in topic_records(kafka_topic) if r.value == b"read from elsewhere"]
    assert (redriven.partition, redriven.key, redriven.headers) == (elsewhere, key, [("trace", b"t-1")])


def test_a_letter_kafka_will_not_take_fails_alone(producer: KafkaProducer, kafka_topic: str) -> None:
    # Its partition is gone (the topic was made again with fewer): the whole redrive stopped there, the
    # letters after it never sent, those before it never marked.
    def letter(partition: int, value: bytes) -> StoredDeadLetter:
        record = IncomingRecord(kafka_topic, partition, 7, b"C-GONE", value, [])
        return StoredDeadLetter(0, partition, record, "unresolved-identity", "", "2026-11-30T00:00:00+00:00")

    gone, kept = letter(99, b"to a partition that is gone"), letter(1, b"to a partition that is there")
    result = redrive(producer, [gone, kept])
    assert result.sent == [kept]
    assert [failed for failed, _error in result.failed] == [gone]
    assert [r.value for r in topic_records(kafka_topic)] == [b"to a partition that is there"]


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


def test_a_record_too_large_for_the_dead_letter_topic_is_dead_lettered_without_its_value() -> None:
    # A dead-letter topic created beforehand, with a limit below the record's size. The broker refused the
    # letter, which kafka-python's idempotent producer takes as fatal: it failed every later letter too, on
    # every retry, and the consumer stood still.
    topic = f"test.{uuid.uuid4().hex[:12]}"
    bootstrap = KafkaSettings().bootstrap_list
    ensure_topic(bootstrap, dead_letter_topic(topic), partitions=1, configs={"max.message.bytes": "4000"})
    limit = dead_letter_max_bytes(KafkaSettings(topic=topic))
    assert limit == 4000
    producer = create_producer(bootstrap, max_request_size=limit)
    try:
        large = IncomingRecord(topic, 0, 7, b"C-1", b"x" * 5000, [("trace", b"t-1")])
        small = IncomingRecord(topic, 0, 8, b"C-1", b"[1]", [])
        # Its headers alone are too large: it goes with only where it came from, and why.
        heavy = IncomingRecord(topic, 0, 9, b"C-1", b"[2]", [("trace", b"t" * 5000)])
        send_dead_letters(
            producer,
            [
                DeadLetter(large, "not-json", "the value is not JSON"),
                DeadLetter(small, "not-an-object", ""),
                DeadLetter(heavy, "not-an-object", ""),
            ],
        )
        letter, after, bare = read_dead_letters(bootstrap, topic)
        assert (after.record.offset, after.record.value) == (8, b"[1]")  # the producer still works
        assert (bare.record.offset, bare.record.key, bare.record.value, bare.reason) == (
            9,
            None,
            b"",
            "not-an-object",
        )
        assert not any(name == "trace" for name, _ in bare.record.headers)
        assert not bare.holds_original
        assert (letter.reason, letter.record.offset, letter.record.key, letter.record.value) == (
            "not-json",
            7,
            b"C-1",
            b"",
        )
        assert (VALUE_OMITTED, b"1") in letter.record.headers
        # Redriving it would publish an empty record: the original is still at its position in the topic.
        assert not letter.holds_original
    finally:
        producer.close()
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            admin.delete_topics([dead_letter_topic(topic)])
        finally:
            admin.close()


def test_only_a_letter_holding_its_original_can_be_redriven() -> None:
    def stored(reason: str, headers: list[tuple[str, bytes]]) -> StoredDeadLetter:
        record = IncomingRecord("t", 0, 1, None, b"{}", headers)
        return StoredDeadLetter(0, 0, record, reason, "", "")

    assert stored("not-json", []).holds_original
    assert not stored("unreadable", []).holds_original
    assert not stored("not-json", [(VALUE_OMITTED, b"1")]).holds_original


def test_a_dead_letter_limit_lowered_while_the_consumer_runs_is_read_again(
    writer: ProjectionWriter, producer: KafkaProducer, kafka_topic: str
) -> None:
    # The consumer's dead-letter producer read the topic's limit at start. Lowered since, the broker refused
    # a letter the producer let through, which kafka-python's idempotent producer takes as fatal: every
    # letter after it failed, on every retry, until the consumer was restarted.
    bootstrap = KafkaSettings().bootstrap_list
    letters_topic = dead_letter_topic(kafka_topic)
    ensure_topic(bootstrap, letters_topic, partitions=1, configs={"max.message.bytes": "1000000"})
    kafka = KafkaSettings(topic=kafka_topic, group_id=f"g-{uuid.uuid4().hex[:8]}")
    with consumer_thread(writer, kafka) as health:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            lowered = ConfigResource(ConfigResourceType.TOPIC, letters_topic, {"max.message.bytes": "4000"})
            admin.alter_configs([lowered])
        finally:
            admin.close()
        # The broker applies a topic's new configuration shortly after it answers.
        wait_until(
            lambda: topic_max_bytes(bootstrap, letters_topic, at_most=10**7) == 4000, what="the new limit"
        )
        producer.send(kafka_topic, key=b"C-1", value=b"x" * 5000, partition=0)  # not JSON, and too large
        producer.send(kafka_topic, key=b"C-1", value=b"[1]", partition=0)
        producer.flush(timeout=30)
        wait_until(lambda: health.invalid == 2, what="both records dead-lettered")
    large, small = read_dead_letters(bootstrap, kafka_topic)
    assert (large.reason, large.record.value, large.record.offset) == ("not-json", b"", 0)
    assert (VALUE_OMITTED, b"1") in large.record.headers
    assert (small.reason, small.record.value, small.record.offset) == ("not-an-object", b"[1]", 1)


def test_letters_the_broker_acknowledged_are_not_sent_again_when_another_fails(kafka_topic: str) -> None:
    bootstrap = KafkaSettings().bootstrap_list
    ensure_topic(bootstrap, dead_letter_topic(kafka_topic), partitions=1)
    record = IncomingRecord(kafka_topic, 0, 0, b"C-1", b"[0]", [])
    first, second = DeadLetter(record, "not-an-object", ""), DeadLetter(record, "not-an-object", "again")
    # Its detail alone is larger than the first producer takes: refused before it is sent.
    heavy = DeadLetter(IncomingRecord(kafka_topic, 0, 1, b"C-1", b"[1]", []), "invalid", "x" * MAX_DETAIL)
    letters = [first, heavy, second]
    acknowledged: list[DeadLetter] = []
    small = create_producer(bootstrap, max_request_size=700)
    try:
        with pytest.raises(KafkaError):
            send_dead_letters(small, letters, on_sent=acknowledged.append)
    finally:
        small.close()
    assert acknowledged == [first]
    assert letters == [heavy, second]

    producer = create_producer(bootstrap)
    try:
        send_dead_letters(producer, letters, on_sent=acknowledged.append)
    finally:
        producer.close()
    assert (acknowledged, letters) == ([first, heavy, second], [])
    stored = list(read_dead_letters(bootstrap, kafka_topic))
    assert [(letter.record.offset, letter.detail) for letter in stored] == [
        (0, ""),
        (1, "x" * MAX_DETAIL),
        (0, "again"),
    ]


def test_a_batch_of_letters_waits_for_its_acknowledgements_once_not_once_per_letter(
    kafka_topic: str,
) -> None:
    # The dead-letter topic deleted while the producer still holds its metadata: no letter is acknowledged.
    # Each letter's own wait (its `timeout_s`) added up, and a batch (and a SIGTERM behind it) waited minutes.
    bootstrap = KafkaSettings().bootstrap_list
    letters = [
        DeadLetter(IncomingRecord(kafka_topic, 0, offset, b"C-1", b"[0]", []), "not-an-object", "")
        for offset in range(7)
    ]
    producer = create_producer(bootstrap)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        send_dead_letters(producer, [letters.pop(0)])  # the producer now knows the topic
        admin.delete_topics([dead_letter_topic(kafka_topic)])
        wait_until(lambda: dead_letter_topic(kafka_topic) not in admin.list_topics(), what="the topic gone")
        started = time.monotonic()
        with pytest.raises(KafkaTimeoutError):
            send_dead_letters(producer, letters, timeout_s=1.5)
        waited = time.monotonic() - started
        assert len(letters) == 6  # none acknowledged: all are still to send
        # Six letters of 1.5 s each waited 9 s; the batch's one deadline, 1.5 s.
        assert waited < 4.5
    finally:
        # Made again as the fixture made it (3 partitions), the topic takes what the producer still holds,
        # and the producer closes cleanly.
        ensure_topic(bootstrap, dead_letter_topic(kafka_topic), partitions=3)
        producer.close(timeout=30)
        admin.close()


def test_two_letters_at_one_offset_of_a_dead_letter_topic_made_again_are_told_apart() -> None:
    # Emptied by deleting it, the topic counts its offsets from 0 again: the new letter there looked
    # redriven already, and was never redriven.
    record = IncomingRecord("citizen.interactions", 0, 7, b"k", b"v", [])
    before, after = (
        StoredDeadLetter(0, 0, record, "unresolved-identity", "", moment)
        for moment in ("2026-10-01T00:00:00+00:00", "2026-11-30T00:00:00+00:00")
    )
    assert before.position != after.position


def test_a_letter_older_than_the_age_cap_is_not_redriven(
    producer: KafkaProducer, kafka_topic: str, key_prefix: str
) -> None:
    # Its event may outlive its citizen's erasure mark, and bring back what it teaches.
    old = "2020-01-01T00:00:00+00:00"
    headers = [
        ("dlq.reason", b"unresolved-identity"),
        ("dlq.detail", b"not linked yet"),
        ("dlq.topic", kafka_topic.encode()),
        ("dlq.partition", b"0"),
        ("dlq.offset", b"3"),
        ("dlq.time", old.encode()),
    ]
    producer.send(dead_letter_topic(kafka_topic), key=b"C-OLD", value=b"{}", headers=headers).get(timeout=10)
    env = {"CITIZEN_CONTEXT_KAFKA_TOPIC": kafka_topic, "CITIZEN_CONTEXT_REDIS_KEY_PREFIX": key_prefix}
    # The listing says so too: it showed such a letter "pending", which no redrive would send.
    listing = CliRunner().invoke(main, ["dlq", "list"], env=env)
    assert listing.exit_code == 0, listing.output
    assert f"  kept      from {kafka_topic}[0]@3  unresolved-identity: not linked yet" in listing.output
    assert "1 record in " in listing.output
    assert ", 0 pending, 1 kept (no redrive sends them" in listing.output
    result = CliRunner().invoke(main, ["dlq", "redrive"], env=env)
    assert result.exit_code == 0, result.output
    assert f"not redriven: {kafka_topic}[0]@3 (unresolved-identity): older than the timeline's age cap" in (
        result.output
    )
    assert "redrove 0 records" in result.output
    assert topic_records(kafka_topic) == []


def test_a_redriven_record_is_told_apart_from_another_at_the_same_place() -> None:
    # A topic deleted and made again counts its offsets from 0: a new record there is not the one redriven.
    origin = "citizen.interactions[0]@7"
    assert landing(origin, b"k", b"v") == landing(origin, b"k", b"v")
    assert landing(origin, b"k", b"v") != landing(origin, b"k", b"other")
    assert landing(origin, b"kv", b"") != landing(origin, b"k", b"v")
    assert landing(origin, None, b"v").startswith(f"{origin} ")
