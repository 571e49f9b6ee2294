"""A record the Kafka client cannot read (a header name that is not UTF-8, which other clients publish):
the consumer dead-letters it by its position and reads on, and a rebuild skips it, against the real broker.
Before, kafka-python's next poll never returned: the consumer, and every consumer after it, hung there."""

import threading
import uuid
from typing import cast

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from context.keys import CitizenKeys
from context.store import ProjectionWriter
from events.codec import encode_structured
from events.deadletter import read_dead_letters
from events.rebuild import RebuildReport, rebuild
from events.settings import KafkaSettings
from events.unreadable import UNREADABLE_DETAIL
from tests.conftest import wait_until
from tests.events.test_consumer import BOOTSTRAP, consumer_thread
from tests.factories import make_event


class _NotUtf8(str):
    """A header name kafka-python writes as bytes that are not UTF-8, as other clients can."""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"\xff\xfe"


def publish_with_an_unreadable_record_between(topic: str, citizen: str) -> None:
    """Two events on partition 0 with a record kafka-python cannot read at offset 1 between them."""
    producer = KafkaProducer(bootstrap_servers=BOOTSTRAP)
    try:
        first, second = (encode_structured(make_event(citizen, minutes_ago=m))[0] for m in (2, 1))
        producer.send(topic, value=first, partition=0).get(timeout=30)
        producer.send(topic, value=b"{}", partition=0, headers=[(_NotUtf8("x"), b"v")]).get(timeout=30)
        producer.send(topic, value=second, partition=0).get(timeout=30)
    finally:
        producer.close()


def test_the_consumer_dead_letters_an_unreadable_record_and_reads_on(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str
) -> None:
    citizen = f"C-{uuid.uuid4().hex[:8]}"
    publish_with_an_unreadable_record_between(kafka_topic, citizen)
    kafka = KafkaSettings(topic=kafka_topic, group_id=f"g-{uuid.uuid4().hex[:8]}")
    reader = KafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=kafka.group_id, enable_auto_commit=False)
    try:
        with consumer_thread(writer, kafka) as health:
            wait_until(lambda: (health.applied, health.invalid) == (2, 1), what="both events and the letter")
            wait_until(
                lambda: cast(int | None, reader.committed(TopicPartition(kafka_topic, 0))) == 3,
                what="every offset committed, the unreadable record's too",
            )
    finally:
        reader.close()
    (letter,) = read_dead_letters(BOOTSTRAP, kafka_topic)
    assert (letter.reason, letter.detail) == ("unreadable", UNREADABLE_DETAIL)
    assert (letter.record.partition, letter.record.offset) == (0, 1)
    assert (letter.record.key, letter.record.value) == (None, b"")
    assert writer.client.zcard(CitizenKeys(key_prefix, writer.current_epoch(), citizen).timeline) == 2


def test_a_rebuild_skips_an_unreadable_record(writer: ProjectionWriter, kafka_topic: str) -> None:
    citizen = f"C-{uuid.uuid4().hex[:8]}"
    publish_with_an_unreadable_record_between(kafka_topic, citizen)
    reports: list[RebuildReport] = []
    # On a thread of its own, a daemon: a rebuild stuck in kafka-python (a regression) fails this test
    # rather than hanging the whole run.
    thread = threading.Thread(
        target=lambda: reports.append(
            rebuild(kafka=KafkaSettings(topic=kafka_topic), writer=writer, default_region="GB")
        ),
        daemon=True,
    )
    thread.start()
    thread.join(timeout=120)
    assert reports, "the rebuild did not finish"
    assert (reports[0].records, reports[0].applied, reports[0].skipped) == (3, 2, 1)
