"""A record the Kafka client cannot read (a header name that is not UTF-8, which other clients publish),
against the real broker. Before, kafka-python's next poll never returned: the consumer, and every consumer
after it, hung there. Now the partition is read again from there by a reader that takes such names, so the
record and the rest of its batch are judged as any other: the consumer applies the good ones and
dead-letters the bad one with its reason, and a rebuild does the same."""

import threading
import uuid
from collections.abc import Sequence
from typing import Any, cast

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from context.keys import CitizenKeys
from context.store import ProjectionWriter
from events import unreadable as unreadable_module
from events.codec import encode_structured
from events.deadletter import NAMES_REPLACED, read_dead_letters
from events.rebuild import RebuildReport, rebuild
from events.records import KafkaRecord
from events.settings import KafkaSettings
from events.unreadable import UNREADABLE_DETAIL, reread
from tests.conftest import wait_until
from tests.events.test_consumer import BOOTSTRAP, consumer_thread
from tests.factories import ERASURES, make_event


class _NotUtf8(str):
    """A header name kafka-python writes as bytes that are not UTF-8, as other clients can."""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"\xff\xfe"


def publish_in_one_batch(topic: str, citizen: str) -> None:
    """Two events on partition 0 with a record kafka-python cannot read at offset 1 between them, all three
    in one batch, as a producer that lingers sends them: kafka-python parses a batch from its start."""
    producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=500)
    try:
        first, second = (encode_structured(make_event(citizen, minutes_ago=m))[0] for m in (2, 1))
        sent = [
            producer.send(topic, value=first, partition=0),
            producer.send(topic, value=b"{}", partition=0, headers=[(_NotUtf8("x"), b"v")]),
            producer.send(topic, value=second, partition=0),
        ]
        producer.flush(timeout=30)
        assert [future.get(timeout=30).offset for future in sent] == [0, 1, 2]
    finally:
        producer.close()


def committed_offset(kafka: KafkaSettings) -> int | None:
    reader = KafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=kafka.group_id, enable_auto_commit=False)
    try:
        return cast(int | None, reader.committed(TopicPartition(kafka.topic, 0)))
    finally:
        reader.close()


def consumed_in_one_batch(writer: ProjectionWriter, kafka_topic: str) -> str:
    """The consumer over `publish_in_one_batch`'s records until it has applied both events, dead-lettered
    the record between them, and committed every offset; the citizen's id."""
    citizen = f"C-{uuid.uuid4().hex[:8]}"
    publish_in_one_batch(kafka_topic, citizen)
    kafka = KafkaSettings(topic=kafka_topic, group_id=f"g-{uuid.uuid4().hex[:8]}")
    with consumer_thread(writer, kafka) as health:
        wait_until(lambda: (health.applied, health.invalid) == (2, 1), what="both events and the letter")
        wait_until(lambda: committed_offset(kafka) == 3, what="every offset committed")
    return citizen


def test_the_consumer_reads_past_an_unreadable_header_and_judges_the_record_as_any_other(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str
) -> None:
    citizen = consumed_in_one_batch(writer, kafka_topic)
    # The record itself is read: its dead letter holds it, with the reason its content gives.
    (letter,) = read_dead_letters(BOOTSTRAP, kafka_topic)
    assert (letter.reason, letter.record.offset, letter.record.value) == ("invalid", 1, b"{}")
    # The name that was not UTF-8 goes on with its bytes replaced (kafka-python sends only UTF-8 names), and
    # the letter says so: redriven, it would not be the record it was.
    assert ("\ufffd\ufffd", b"v") in letter.record.headers
    assert (NAMES_REPLACED, b"1") in letter.record.headers
    assert not letter.holds_original
    assert writer.client.zcard(CitizenKeys(key_prefix, writer.current_epoch(), citizen).timeline) == 2


def test_a_record_even_the_second_reader_cannot_read_is_dead_lettered_by_its_position(
    writer: ProjectionWriter, kafka_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A corrupt batch cannot be published through a broker, which checks every batch it takes: the second
    # reading is made to come back empty, as it would for one.
    def reads_nothing(*_args: object, **_kwargs: object) -> Sequence[KafkaRecord]:
        return []

    monkeypatch.setattr(unreadable_module, "reread", reads_nothing)
    citizen = f"C-{uuid.uuid4().hex[:8]}"
    publish_in_one_batch(kafka_topic, citizen)
    kafka = KafkaSettings(topic=kafka_topic, group_id=f"g-{uuid.uuid4().hex[:8]}")
    with consumer_thread(writer, kafka) as health:
        # The first event is applied; the record at offset 1 and, in the same batch, the one after it are
        # given up one at a time, by position: the client parses the batch from its start.
        wait_until(lambda: health.invalid == 2, what="the letters")
        wait_until(lambda: committed_offset(kafka) == 3, what="every offset committed")
    assert health.applied == 1
    # Without a key, the letters may go to different partitions of the dead-letter topic: by offset.
    letters = sorted(read_dead_letters(BOOTSTRAP, kafka_topic), key=lambda letter: letter.record.offset)
    assert [(letter.reason, letter.record.offset) for letter in letters] == [
        ("unreadable", 1),
        ("unreadable", 2),
    ]
    assert {letter.detail for letter in letters} == {UNREADABLE_DETAIL}
    assert not any(letter.holds_original for letter in letters)


def test_a_rebuild_reads_past_an_unreadable_header_too(writer: ProjectionWriter, kafka_topic: str) -> None:
    citizen = f"C-{uuid.uuid4().hex[:8]}"
    publish_in_one_batch(kafka_topic, citizen)
    reports: list[RebuildReport] = []
    # On a thread of its own, a daemon: a rebuild stuck in kafka-python (a regression) fails this test
    # rather than hanging the whole run.
    thread = threading.Thread(
        target=lambda: reports.append(
            rebuild(
                kafka=KafkaSettings(topic=kafka_topic), writer=writer, default_region="GB", erasures=ERASURES
            )
        ),
        daemon=True,
    )
    thread.start()
    thread.join(timeout=120)
    assert reports, "the rebuild did not finish"
    # The bad record is read and skipped for what it holds (the consumer dead-letters it), the others applied.
    assert (reports[0].records, reports[0].applied, reports[0].skipped) == (3, 2, 1)


def test_a_second_reading_kafka_did_not_answer_gives_nothing_up(
    writer: ProjectionWriter, kafka_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The second reader could not tell (Kafka did not answer in time): the records are met and read again
    # on the next poll, none given up as unreadable.
    answers: list[Sequence[KafkaRecord] | None] = []

    def first_unanswered(*args: Any, **kwargs: Any) -> Sequence[KafkaRecord] | None:
        answers.append(None if not answers else reread(*args, **kwargs))
        return answers[-1]

    monkeypatch.setattr(unreadable_module, "reread", first_unanswered)
    consumed_in_one_batch(writer, kafka_topic)
    assert answers[0] is None
    assert len(answers) >= 2
    assert [letter.reason for letter in read_dead_letters(BOOTSTRAP, kafka_topic)] == ["invalid"]
