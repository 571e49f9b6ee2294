"""Events Redis refuses to apply, whatever the retries: dead-lettered apart from the rest of their batch.

A citizen's key holding another type than the apply script writes (written by something other than the
product) used to fail the whole batch on every retry, holding back every later event of its partitions.
"""

import uuid
from typing import cast

import pytest
import redis
from kafka import KafkaProducer

from context.keys import CitizenKeys
from context.store import (
    ErasureOutpaced,
    GenerationSwitching,
    ProjectionWriter,
    refusal_detail,
    refused_for_its_data,
)
from events.codec import encode_structured
from events.deadletter import read_dead_letters
from events.pipeline import REFUSED, PreparedBatch, apply_refusals_apart, prepare_batch
from events.producer import create_producer
from events.rebuild import Replayer
from events.records import IncomingRecord
from events.settings import KafkaSettings
from models.events import CloudEvent
from tests.conftest import wait_until
from tests.events.test_consumer import BOOTSTRAP, consumer_thread
from tests.factories import make_event

SCRIPT_AT = "script: 4b10e8cff91607628cea036cc13ee4c651956706, on @user_script:60."


@pytest.mark.parametrize(
    "error",
    [
        # As redis-py raises them from Redis 7's replies (the "ERR " code is taken off the message).
        redis.ResponseError(f"WRONGTYPE Operation against a key holding the wrong kind of value {SCRIPT_AT}"),
        redis.ResponseError(f"user_script:60: attempt to perform arithmetic on a nil value {SCRIPT_AT}"),
        redis.ResponseError(f"hash value is not an integer {SCRIPT_AT}"),
    ],
)
def test_what_the_script_meets_in_the_events_keys_or_arguments_is_a_refusal(
    error: redis.ResponseError,
) -> None:
    assert refused_for_its_data(error)


@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
        redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
        redis.exceptions.NoScriptError("No matching script."),
        redis.ResponseError(f"MISCONF Redis is configured to save RDB snapshots, but... {SCRIPT_AT}"),
        redis.ResponseError("BUSY Redis is busy running a script."),
        # Outside a script: nothing says which write it was.
        redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        GenerationSwitching(f"the served generation changed {SCRIPT_AT}"),
        ErasureOutpaced("C-1"),
    ],
)
def test_the_state_of_redis_is_no_refusal_and_is_waited_out(error: redis.ResponseError) -> None:
    assert not refused_for_its_data(error)


def test_a_refusals_detail_names_its_kind_never_the_message() -> None:
    wrong_type = redis.ResponseError(f"WRONGTYPE Operation against a key {SCRIPT_AT}")
    failed = redis.ResponseError(f"user_script:60: attempt to compare nil with number {SCRIPT_AT}")
    assert "WRONGTYPE" in refusal_detail(wrong_type)
    assert "script failed" in refusal_detail(failed)
    assert all("user_script" not in refusal_detail(error) for error in (wrong_type, failed))


def citizen() -> str:
    return f"C-{uuid.uuid4().hex[:8]}"


def spoil(writer: ProjectionWriter, citizen_id: str, *, prefix: str, epoch: str) -> None:
    """Give the citizen's timeline key another type than the apply script writes there."""
    writer.client.set(CitizenKeys(prefix, epoch, citizen_id).timeline, "not a sorted set")


def prepared(writer: ProjectionWriter, events: list[CloudEvent]) -> PreparedBatch:
    records = [
        IncomingRecord("topic", 0, offset, None, encode_structured(event)[0], [])
        for offset, event in enumerate(events)
    ]
    return prepare_batch(records, writer=writer, epoch="", default_region="GB")


def timeline_of(writer: ProjectionWriter, citizen_id: str, *, prefix: str) -> list[str]:
    key = CitizenKeys(prefix, writer.current_epoch(), citizen_id).timeline
    return cast(list[str], writer.client.zrange(key, 0, -1))


def test_only_the_refused_event_leaves_the_batch_the_others_are_applied(
    writer: ProjectionWriter, key_prefix: str
) -> None:
    first, spoilt, last = citizen(), citizen(), citizen()
    events = [make_event(first), make_event(spoilt), make_event(last)]
    spoil(writer, spoilt, prefix=key_prefix, epoch=writer.current_epoch())
    batch = prepared(writer, events)
    with pytest.raises(redis.ResponseError) as refusal:
        writer.apply_batch(batch.writes)
    assert refused_for_its_data(refusal.value)

    results = apply_refusals_apart(writer, batch, refusal.value, epoch=None)

    # The refused call had applied the first event before it failed (a script's writes stay).
    assert [result.applied for result in results] == [False, True]
    assert [write.citizen_id for write in batch.writes] == [first, last]
    assert [record.offset for record in batch.sources] == [0, 2]
    (letter,) = batch.dead_letters
    assert (letter.record.offset, letter.reason) == (1, REFUSED)
    assert "WRONGTYPE" in letter.detail
    assert timeline_of(writer, first, prefix=key_prefix) == [events[0].dedup_key]
    assert timeline_of(writer, last, prefix=key_prefix) == [events[2].dedup_key]


def test_a_batch_whose_every_event_is_refused_is_left_whole_to_be_waited_out(
    writer: ProjectionWriter, key_prefix: str
) -> None:
    spoilt = [citizen(), citizen()]
    for citizen_id in spoilt:
        spoil(writer, citizen_id, prefix=key_prefix, epoch=writer.current_epoch())
    batch = prepared(writer, [make_event(citizen_id) for citizen_id in spoilt])
    refusal = redis.ResponseError(f"WRONGTYPE Operation against a key {SCRIPT_AT}")

    with pytest.raises(redis.ResponseError) as raised:
        apply_refusals_apart(writer, batch, refusal, epoch=None)

    assert raised.value is refusal
    assert [write.citizen_id for write in batch.writes] == spoilt
    assert batch.dead_letters == []


def produce(topic: str, events: list[CloudEvent]) -> None:
    producer: KafkaProducer = create_producer(BOOTSTRAP)
    try:
        for event in events:
            producer.send(topic, value=encode_structured(event)[0], partition=0)
        producer.flush(timeout=30)
    finally:
        producer.close()


def test_the_consumer_dead_letters_an_event_redis_refuses_and_goes_on(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str
) -> None:
    first, spoilt, last = citizen(), citizen(), citizen()
    events = [make_event(first), make_event(spoilt), make_event(last)]
    spoil(writer, spoilt, prefix=key_prefix, epoch=writer.current_epoch())
    produce(kafka_topic, events)
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
    produce(kafka_topic, events)
    epoch = f"rebuild-{uuid.uuid4().hex[:8]}"
    spoil(writer, spoilt, prefix=key_prefix, epoch=epoch)
    replayer = Replayer(KafkaSettings(topic=kafka_topic), writer, epoch=epoch, default_region="GB")
    try:
        assert replayer.catch_up(lambda _count: None) == 3
    finally:
        replayer.close()

    assert replayer.skipped == 1
    for citizen_id, event in ((first, events[0]), (last, events[2])):
        key = CitizenKeys(key_prefix, epoch, citizen_id).timeline
        assert writer.client.zrange(key, 0, -1) == [event.dedup_key]
