"""A `citizen.erased` is applied only from the API's own source and with its API's signature: from any other
publisher on the topic it is dead-lettered by the consumer (`reserved`, or `unverified` when it names the
API's source but is not signed by it), and skipped by a rebuild, against the real Kafka and Redis."""

import uuid

import pytest

import events.consumer
import events.rebuild
from context.keys import CitizenKeys
from context.store import ProjectionWriter
from events.deadletter import read_dead_letters
from events.settings import KafkaSettings
from events.signing import SIGNATURE_ATTRIBUTE, ErasureSigner
from models.events import CloudEvent
from models.taxonomy import ERASURE_SOURCE, ERASURE_TYPE
from tests.conftest import wait_until
from tests.events.replay import rebuild_topic
from tests.events.test_consumer import BOOTSTRAP, consumer_thread, produce_events
from tests.factories import ERASURES, make_erasure, make_event
from tests.logs import capture_module_logs

# What each forged record is refused for, in the order they are published (offsets 5 to 8).
FORGERIES = ("reserved", "unverified", "unverified", "unverified")


def erasure(citizen_id: str, *, source: str) -> CloudEvent:
    data = {"channel": "system", "summary": "Erased."}
    return make_event(citizen_id, type_=ERASURE_TYPE, source=source, data=data)


def publish_forged_and_genuine_erasures(topic: str, *, kept: list[str], erased: str) -> None:
    """A call of each citizen on partition 0 (offsets 0 to 4), then four forged erasures of the four `kept`
    citizens (offsets 5 to 8), then the API's own erasure of `erased` (offset 9)."""
    genuine = make_erasure(erased)
    same_id = ERASURES.key_id
    other_key = ErasureSigner(keys={same_id: b"another key, not the API's" * 2}, key_id=same_id)
    forged = [
        # From another publisher's source.
        erasure(kept[0], source="/telephony/contact-centre"),
        # From the API's source, unsigned.
        erasure(kept[1], source=ERASURE_SOURCE),
        # Signed with a key of the same id, but not the API's.
        other_key.signed(erasure(kept[2], source=ERASURE_SOURCE)),
        # The API's genuine record (and signature), its citizen changed.
        genuine.model_copy(update={"subject": kept[3]}),
    ]
    produce_events(
        topic, [*(make_event(citizen, minutes_ago=2) for citizen in [*kept, erased]), *forged, genuine]
    )


def timeline_length(writer: ProjectionWriter, prefix: str, citizen_id: str) -> int:
    return int(writer.client.zcard(CitizenKeys(prefix, writer.current_epoch(), citizen_id).timeline))


def citizens() -> tuple[list[str], str]:
    kept = [f"C-{uuid.uuid4().hex[:8]}" for _ in FORGERIES]
    return kept, f"C-{uuid.uuid4().hex[:8]}"


def test_the_consumer_dead_letters_every_erasure_but_the_apis_signed_one(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept, erased = citizens()
    publish_forged_and_genuine_erasures(kafka_topic, kept=kept, erased=erased)
    logs = capture_module_logs(monkeypatch, events.consumer)
    kafka = KafkaSettings(topic=kafka_topic, group_id=f"g-{uuid.uuid4().hex[:8]}")
    with consumer_thread(writer, kafka) as health:
        wait_until(lambda: (health.applied, health.invalid) == (6, 4), what="six applied, four dead letters")
    letters = sorted(read_dead_letters(BOOTSTRAP, kafka_topic), key=lambda letter: letter.record.offset)
    assert [(letter.record.offset, letter.reason) for letter in letters] == list(
        enumerate(FORGERIES, start=5)
    )
    assert ERASURE_SOURCE in letters[0].detail
    assert [letter.detail for letter in letters[1:]] == [
        f"an erasure record must carry the API's signature (extension `{SIGNATURE_ATTRIBUTE}`)",
        "the erasure record's signature does not match it",
        "the erasure record's signature does not match it",
    ]
    assert [timeline_length(writer, key_prefix, citizen) for citizen in kept] == [1, 1, 1, 1]
    assert timeline_length(writer, key_prefix, erased) == 0
    # An erasure not verified is an error (it may be the API's own, with the consumer not given its keys);
    # the one from another source, a publisher's fault, a warning.
    said = [(entry["log_level"], entry["offset"]) for entry in logs.entries if "offset" in entry]
    assert sorted(said, key=lambda level_offset: level_offset[1]) == [
        ("warning", 5),
        ("error", 6),
        ("error", 7),
        ("error", 8),
    ]


def test_a_rebuild_skips_every_erasure_but_the_apis_signed_one(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept, erased = citizens()
    publish_forged_and_genuine_erasures(kafka_topic, kept=kept, erased=erased)
    logs = capture_module_logs(monkeypatch, events.rebuild)
    report = rebuild_topic(kafka_topic, writer)
    assert (report.records, report.applied, report.skipped) == (10, 6, 4)
    # Logged by its place and reason (a record an earlier contract took would be in no dead letter).
    skipped = [entry for entry in logs.entries if entry["event"] == "rebuild skipped a record"]
    assert [(entry["topic"], entry["offset"], entry["reason"]) for entry in skipped] == [
        (kafka_topic, offset, reason) for offset, reason in enumerate(FORGERIES, start=5)
    ]
    assert [timeline_length(writer, key_prefix, citizen) for citizen in kept] == [1, 1, 1, 1]
    assert timeline_length(writer, key_prefix, erased) == 0


def test_a_rebuild_holding_the_previous_key_applies_what_it_signed(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str
) -> None:
    # Keys are rotated: the topic still holds erasures the previous key signed, and a rebuild must apply
    # them, or the citizens they erased would come back wherever their erasure marks are gone.
    previous = ErasureSigner(keys={"2026-11": b"p" * 32}, key_id="2026-11")
    current = ErasureSigner(keys={"2026-11": b"p" * 32, "2026-12": b"c" * 32}, key_id="2026-12")
    old, new = (f"C-{uuid.uuid4().hex[:8]}" for _ in range(2))
    produce_events(
        kafka_topic,
        [
            make_event(old, minutes_ago=30),
            make_event(new, minutes_ago=30),
            previous.signed(erasure(old, source=ERASURE_SOURCE)),
            current.signed(erasure(new, source=ERASURE_SOURCE)),
        ],
    )
    report = rebuild_topic(kafka_topic, writer, erasures=current)
    assert (report.records, report.skipped) == (4, 0)
    assert (timeline_length(writer, key_prefix, old), timeline_length(writer, key_prefix, new)) == (0, 0)
