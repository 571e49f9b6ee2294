"""A `citizen.erased` is applied only from the API's own source: from any other publisher on the topic it is
dead-lettered as `reserved` by the consumer, and skipped by a rebuild, against the real Kafka and Redis."""

import uuid

import pytest
from kafka import KafkaProducer

import events.rebuild
from context.keys import CitizenKeys
from context.store import ProjectionWriter
from events.codec import encode_structured
from events.deadletter import read_dead_letters
from events.rebuild import rebuild
from events.settings import KafkaSettings
from models.events import CloudEvent
from models.taxonomy import ERASURE_SOURCE, ERASURE_TYPE
from tests.conftest import wait_until
from tests.events.test_consumer import BOOTSTRAP, consumer_thread
from tests.factories import make_event
from tests.logs import capture_module_logs


def erasure(citizen_id: str, *, source: str) -> CloudEvent:
    data = {"channel": "system", "summary": "Erased."}
    return make_event(citizen_id, type_=ERASURE_TYPE, source=source, data=data)


def publish_a_forged_and_a_genuine_erasure(topic: str, *, kept: str, erased: str) -> None:
    """Each citizen's call on partition 0, then an erasure of `kept` from another source than the API's and
    an erasure of `erased` from the API's own."""
    events = [
        make_event(kept, minutes_ago=2),
        make_event(erased, minutes_ago=2),
        erasure(kept, source="/telephony/contact-centre"),
        erasure(erased, source=ERASURE_SOURCE),
    ]
    producer = KafkaProducer(bootstrap_servers=BOOTSTRAP)
    try:
        for event in events:
            producer.send(topic, value=encode_structured(event)[0], partition=0).get(timeout=30)
    finally:
        producer.close()


def timeline_length(writer: ProjectionWriter, prefix: str, citizen_id: str) -> int:
    return int(writer.client.zcard(CitizenKeys(prefix, writer.current_epoch(), citizen_id).timeline))


def test_the_consumer_dead_letters_an_erasure_from_another_source(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str
) -> None:
    kept, erased = (f"C-{uuid.uuid4().hex[:8]}" for _ in range(2))
    publish_a_forged_and_a_genuine_erasure(kafka_topic, kept=kept, erased=erased)
    kafka = KafkaSettings(topic=kafka_topic, group_id=f"g-{uuid.uuid4().hex[:8]}")
    with consumer_thread(writer, kafka) as health:
        wait_until(lambda: (health.applied, health.invalid) == (3, 1), what="three applied, one dead letter")
    (letter,) = read_dead_letters(BOOTSTRAP, kafka_topic)
    assert (letter.reason, letter.record.offset) == ("reserved", 2)
    assert ERASURE_SOURCE in letter.detail
    assert timeline_length(writer, key_prefix, kept) == 1
    assert timeline_length(writer, key_prefix, erased) == 0


def test_a_rebuild_skips_an_erasure_from_another_source(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept, erased = (f"C-{uuid.uuid4().hex[:8]}" for _ in range(2))
    publish_a_forged_and_a_genuine_erasure(kafka_topic, kept=kept, erased=erased)
    logs = capture_module_logs(monkeypatch, events.rebuild)
    report = rebuild(kafka=KafkaSettings(topic=kafka_topic), writer=writer, default_region="GB", grace_s=0)
    assert (report.records, report.applied, report.skipped) == (4, 3, 1)
    # Logged by its place and reason (a record an earlier contract took would be in no dead letter).
    [skipped] = [entry for entry in logs.entries if entry["event"] == "rebuild skipped a record"]
    assert (skipped["topic"], skipped["offset"], skipped["reason"]) == (kafka_topic, 2, "reserved")
    assert timeline_length(writer, key_prefix, kept) == 1
    assert timeline_length(writer, key_prefix, erased) == 0
