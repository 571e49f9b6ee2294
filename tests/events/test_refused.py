"""Events Redis refuses to apply, whatever the retries: dead-lettered, the rest of their batch applied.

A citizen's key holding another type than the apply script writes (written by something other than the
product) used to fail the whole batch on every retry, holding back every later event of its partitions.
"""

import uuid
from typing import cast

import pytest
import redis
import redis.asyncio as aioredis

from context.identity import IdentifierKind
from context.keys import CitizenKeys, changes_channel, erasure_mark_key, identifier_key
from context.store import REFUSALS, ApplyResult, ProjectionWriter
from events.codec import encode_structured
from events.deadletter import read_dead_letters
from events.pipeline import REFUSED, PreparedBatch, prepare_batch, refused_letters
from events.rebuild import Replayer
from events.records import IncomingRecord
from events.settings import KafkaSettings
from models.events import CloudEvent
from tests.conftest import wait_until
from tests.events.test_consumer import BOOTSTRAP, consumer_thread, produce_events
from tests.factories import ERASURES, make_event


def citizen() -> str:
    return f"C-{uuid.uuid4().hex[:8]}"


def spoil(
    writer: ProjectionWriter, citizen_id: str, *, prefix: str, epoch: str, key: str = "timeline"
) -> None:
    """Give one of the citizen's keys another type than the apply script writes there."""
    writer.client.set(getattr(CitizenKeys(prefix, epoch, citizen_id), key), "not what the product writes")


def prepared(writer: ProjectionWriter, events: list[CloudEvent]) -> PreparedBatch:
    records = [
        IncomingRecord("topic", 0, offset, None, encode_structured(event)[0], [])
        for offset, event in enumerate(events)
    ]
    return prepare_batch(records, writer=writer, epoch="", default_region="GB", erasures=ERASURES)


def timeline_of(writer: ProjectionWriter, citizen_id: str, *, prefix: str) -> list[str]:
    key = CitizenKeys(prefix, writer.current_epoch(), citizen_id).timeline
    return cast(list[str], writer.client.zrange(key, 0, -1))


def test_the_events_redis_refuses_are_said_and_the_others_applied(
    writer: ProjectionWriter, key_prefix: str
) -> None:
    first, spoilt, last = citizen(), citizen(), citizen()
    events = [make_event(first), make_event(spoilt), make_event(last)]
    spoil(writer, spoilt, prefix=key_prefix, epoch=writer.current_epoch())
    batch = prepared(writer, events)

    results = writer.apply_batch(batch.writes)

    assert [result.refused for result in results] == ["", "WRONGTYPE", ""]
    assert [result.applied for result in results] == [True, False, True]
    (letter,) = refused_letters(batch, results)
    assert (letter.record.offset, letter.reason, letter.detail) == (1, REFUSED, REFUSALS["WRONGTYPE"])
    assert timeline_of(writer, first, prefix=key_prefix) == [events[0].dedup_key]
    assert timeline_of(writer, last, prefix=key_prefix) == [events[2].dedup_key]


def test_an_event_refused_part_way_is_applied_once_the_cause_is_mended(
    writer: ProjectionWriter, key_prefix: str
) -> None:
    # Its events hash is written after the event joins the timeline, which marks it applied: left there,
    # the event would be taken for a redelivery once mended, and never applied.
    spoilt = citizen()
    event = make_event(spoilt)
    epoch = writer.current_epoch()
    spoil(writer, spoilt, prefix=key_prefix, epoch=epoch, key="events")
    batch = prepared(writer, [event])

    (refused,) = writer.apply_batch(batch.writes)
    assert refused.refused == "WRONGTYPE"
    assert timeline_of(writer, spoilt, prefix=key_prefix) == []

    writer.client.delete(CitizenKeys(key_prefix, epoch, spoilt).events)
    (applied,) = writer.apply_batch(batch.writes)
    assert (applied.applied, applied.refused) == (True, "")
    assert timeline_of(writer, spoilt, prefix=key_prefix) == [event.dedup_key]


# Lua reads the last three as numbers, which HINCRBY refuses: logged first, the change stayed behind.
@pytest.mark.parametrize("version", ["many", "1.5", "0x10", " 7"])
def test_a_value_the_product_does_not_write_is_a_refusal_of_its_own(
    writer: ProjectionWriter, key_prefix: str, version: str
) -> None:
    spoilt = citizen()
    keys = CitizenKeys(key_prefix, writer.current_epoch(), spoilt)
    writer.client.hset(keys.meta, "version", version)

    (result,) = writer.apply_batch(prepared(writer, [make_event(spoilt)]).writes)

    assert (result.applied, result.refused) == (False, "value")
    assert writer.client.llen(keys.changes) == 0
    assert writer.client.hget(keys.meta, "version") == version


def test_a_redelivery_to_a_version_the_product_does_not_write_keeps_the_replies_in_step(
    writer: ProjectionWriter, key_prefix: str
) -> None:
    # Read as no version at all, it used to leave a gap in the script's reply: every later event's result
    # shifted by one, and the consumer failed on the batch for ever.
    spoilt, other = citizen(), citizen()
    applied_before = make_event(spoilt)
    writer.apply_batch(prepared(writer, [applied_before]).writes)
    writer.client.hset(CitizenKeys(key_prefix, writer.current_epoch(), spoilt).meta, "version", "many")

    results = writer.apply_batch(prepared(writer, [applied_before, make_event(other)]).writes)

    assert [(result.applied, result.refused) for result in results] == [(False, "value"), (True, "")]


async def test_an_event_refused_at_the_end_leaves_no_change_behind(
    writer: ProjectionWriter, key_prefix: str, async_redis: "aioredis.Redis"
) -> None:
    # The identifiers set is read at the first change of a keep-alive period, after the timeline's writes:
    # refused there, the event had already counted a version, logged its change and published it.
    spoilt = citizen()
    keys = CitizenKeys(key_prefix, writer.current_epoch(), spoilt)
    spoil(writer, spoilt, prefix=key_prefix, epoch=writer.current_epoch(), key="identifiers")
    async with async_redis.pubsub() as pubsub:
        await pubsub.subscribe(changes_channel(key_prefix))
        await pubsub.get_message(timeout=1)  # the subscription's confirmation
        (result,) = writer.apply_batch(prepared(writer, [make_event(spoilt)]).writes)
        published = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)

    assert (result.applied, result.refused) == (False, "WRONGTYPE")
    assert published is None
    assert writer.client.hget(keys.meta, "version") is None
    assert writer.client.llen(keys.changes) == 0
    assert timeline_of(writer, spoilt, prefix=key_prefix) == []
    # What it wrote (its events hash entry, say) expires as the citizen's keys do.
    written = [key for key in (keys.events, keys.facts, keys.identifiers) if writer.client.exists(key)]
    assert written
    assert all(writer.client.ttl(key) > 0 for key in written)


def test_redis_out_of_memory_is_no_refusal_the_call_fails_to_be_tried_again(
    writer: ProjectionWriter, key_prefix: str
) -> None:
    event = make_event(citizen())
    batch = prepared(writer, [event])
    limit = str(writer.client.config_get("maxmemory")["maxmemory"])
    writer.client.config_set("maxmemory", 1)
    try:
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            writer.apply_batch(batch.writes)
    finally:
        writer.client.config_set("maxmemory", limit)
    assert timeline_of(writer, event.citizen_id, prefix=key_prefix) == []
    (result,) = writer.apply_batch(batch.writes)
    assert result.applied


def test_a_refusal_that_names_no_known_kind_is_told_as_a_script_failure() -> None:
    record = IncomingRecord("topic", 0, 4, None, b"", [])
    write = PreparedBatch(sources=[record])
    (letter,) = refused_letters(write, [ApplyResult(applied=False, version=0, refused="other")])
    assert letter.detail == REFUSALS["script"]


def test_the_consumer_dead_letters_an_event_redis_refuses_and_goes_on(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str
) -> None:
    first, spoilt, last = citizen(), citizen(), citizen()
    events = [make_event(first), make_event(spoilt), make_event(last)]
    spoil(writer, spoilt, prefix=key_prefix, epoch=writer.current_epoch())
    produce_events(kafka_topic, events)
    kafka = KafkaSettings(topic=kafka_topic, group_id=f"g-{uuid.uuid4().hex[:8]}")

    with consumer_thread(writer, kafka) as health:
        wait_until(lambda: health.invalid == 1, what="the refused record dead-lettered")

    (letter,) = read_dead_letters(BOOTSTRAP, kafka_topic)
    assert (letter.record.offset, letter.reason) == (1, REFUSED)
    assert letter.record.value == encode_structured(events[1])[0]
    assert timeline_of(writer, first, prefix=key_prefix) == [events[0].dedup_key]
    assert timeline_of(writer, last, prefix=key_prefix) == [events[2].dedup_key]


def test_a_rebuild_skips_an_event_redis_refuses_and_applies_the_rest(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str
) -> None:
    first, spoilt, last = citizen(), citizen(), citizen()
    events = [make_event(first), make_event(spoilt), make_event(last)]
    produce_events(kafka_topic, events)
    epoch = f"rebuild-{uuid.uuid4().hex[:8]}"
    spoil(writer, spoilt, prefix=key_prefix, epoch=epoch)
    replayer = Replayer(
        KafkaSettings(topic=kafka_topic), writer, epoch=epoch, default_region="GB", erasures=ERASURES
    )
    try:
        assert replayer.catch_up(lambda _count: None) == 3
    finally:
        replayer.close()

    assert (replayer.applied, replayer.skipped) == (2, 1)
    for citizen_id, event in ((first, events[0]), (last, events[2])):
        key = CitizenKeys(key_prefix, epoch, citizen_id).timeline
        assert writer.client.zrange(key, 0, -1) == [event.dedup_key]


def test_foreign_values_read_while_resolving_are_taken_for_nothing_not_retried_for_ever(
    writer: ProjectionWriter, key_prefix: str, kafka_topic: str
) -> None:
    # An index entry or an erasure mark holding what the product never writes failed the batch's resolving
    # on every retry (WRONGTYPE), or stopped the consumer (a mark that is no number).
    epoch = writer.current_epoch()
    phone = (IdentifierKind.phone, "+447700900432")
    writer.client.set(identifier_key(key_prefix, epoch, *phone), "not what the product writes")
    writer.client.hset(erasure_mark_key(key_prefix, "C-HASHED"), "mark", "1")
    writer.client.set(erasure_mark_key(key_prefix, "C-WORDED"), "yesterday")
    assert writer.resolve([phone], epoch=epoch) == {}
    assert writer.erasure_mark("C-HASHED") is None
    assert writer.erasure_mark("C-WORDED") is None

    # Through the consumer: the event named only by that number is dead-lettered, the next one applied.
    caller = make_event("C-unused").model_copy(update={"subject": None, "citizenphone": "07700 900432"})
    after = make_event(citizen())
    produce_events(kafka_topic, [caller, after])
    kafka = KafkaSettings(topic=kafka_topic, group_id=f"g-{uuid.uuid4().hex[:8]}")
    with consumer_thread(writer, kafka) as health:
        wait_until(lambda: health.applied == 1 and health.invalid == 1, what="one applied, one dead-lettered")
    reasons = [letter.reason for letter in read_dead_letters(BOOTSTRAP, kafka_topic)]
    assert reasons == ["unresolved-identity"]
