"""Generations held unserved (a rebuild's, and the one it retires), against the real Redis: every erasure
reaches them, so a rebuild that stops before its switch leaves nothing of an erased citizen behind."""

import time
from datetime import UTC, datetime
from typing import cast

import redis
import redis.asyncio as aioredis

from context.identity import IdentifierKind
from context.keys import CitizenKeys, generation_pattern, unserved_generations_key
from context.settings import TimelineSettings
from context.store import HOLD_RENEWAL_S, CitizenEraser, ProjectionWriter, unserved_horizon
from models.events import CloudEvent
from models.taxonomy import ERASURE_TYPE
from tests.factories import example_data, make_event, writes_for

NOW = datetime.now(UTC)
PHONE = (IdentifierKind.phone, "+447700900654")
UNFINISHED = "20260101T000000-unfinished"


def with_phone(citizen_id: str, *, minutes_ago: float) -> CloudEvent:
    data = example_data("profile.updated", phone="07700 900654", email=None)
    return make_event(citizen_id, type_="profile.updated", data=data, minutes_ago=minutes_ago, now=NOW)


def held_keys(client: "redis.Redis", prefix: str, epoch: str, citizen_id: str) -> list[str]:
    return [key for key in CitizenKeys(prefix, epoch, citizen_id).all() if client.exists(key)]


def writer_with_unfinished_generation(
    client: "redis.Redis", prefix: str, citizen_id: str
) -> ProjectionWriter:
    """The citizen held in the served generation and in one a rebuild left unfinished."""
    writer = ProjectionWriter(client, prefix=prefix, timeline=TimelineSettings())
    writer.apply_batch(writes_for(with_phone(citizen_id, minutes_ago=30)))
    writer.hold_unserved(UNFINISHED)
    writer.apply_batch(writes_for(with_phone(citizen_id, minutes_ago=30)), epoch=UNFINISHED, publish=False)
    assert held_keys(client, prefix, UNFINISHED, citizen_id)
    assert writer.resolve([PHONE], epoch=UNFINISHED)
    return writer


def test_the_consumers_erasure_reaches_a_generation_held_unserved(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    writer = writer_with_unfinished_generation(redis_client, key_prefix, "C-HELD-1")
    served = writer.current_epoch()

    erasure = make_event("C-HELD-1", type_=ERASURE_TYPE, data={}, minutes_ago=1, now=NOW)
    writer.apply_batch(writes_for(erasure))

    for epoch in (served, UNFINISHED):
        assert held_keys(redis_client, key_prefix, epoch, "C-HELD-1") == []
        assert writer.resolve([PHONE], epoch=epoch) == {}


async def test_the_apis_erasure_reaches_a_generation_held_unserved(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    writer = writer_with_unfinished_generation(redis_client, key_prefix, "C-HELD-2")
    served = writer.current_epoch()
    held = [len(held_keys(redis_client, key_prefix, epoch, "C-HELD-2")) for epoch in (served, UNFINISHED)]

    removed = await CitizenEraser(async_redis, prefix=key_prefix).erase("C-HELD-2")

    for epoch in (served, UNFINISHED):
        assert held_keys(redis_client, key_prefix, epoch, "C-HELD-2") == []
        assert writer.resolve([PHONE], epoch=epoch) == {}
    assert removed == sum(held)  # the keys of both generations are counted


def test_a_rebuilds_replayed_erasure_stays_in_its_own_generation(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    # The served generation holds the citizen's contacts since an old erasure: a rebuild replaying that
    # erasure into its own generation must not remove them from the served one.
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    served = writer.current_epoch()
    old_erasure = make_event("C-HELD-3", type_=ERASURE_TYPE, data={}, minutes_ago=60, now=NOW)
    writer.apply_batch(writes_for(old_erasure))
    writer.apply_batch(writes_for(make_event("C-HELD-3", minutes_ago=5, now=NOW)))
    writer.hold_unserved(UNFINISHED)

    writer.apply_batch(writes_for(old_erasure), epoch=UNFINISHED, publish=False)

    assert held_keys(redis_client, key_prefix, served, "C-HELD-3")


def test_a_hold_outlasts_every_key_written_to_its_generation(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    timeline = TimelineSettings(inactivity_expiry_days=2)
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=timeline)
    writer.hold_unserved(UNFINISHED)
    writer.apply_batch(
        writes_for(with_phone("C-HELD-4", minutes_ago=3), make_event("C-HELD-4", minutes_ago=2, now=NOW)),
        epoch=UNFINISHED,
        publish=False,
    )

    keys = list(redis_client.scan_iter(match=generation_pattern(key_prefix, UNFINISHED), count=1000))
    expiries = [redis_client.expiretime(key) for key in keys]
    held_until = redis_client.zscore(unserved_generations_key(key_prefix), UNFINISHED)
    assert len(keys) >= 6
    assert min(expiries) > 0
    assert held_until is not None
    assert max(expiries) <= held_until
    # ... with room for the writes until its next renewal is due, and no more than that.
    assert abs(held_until - unserved_horizon(time.time() + HOLD_RENEWAL_S, timeline)) <= 2


def test_a_hold_whose_generation_has_expired_is_neither_reached_nor_kept(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    key = unserved_generations_key(key_prefix)
    redis_client.zadd(key, {"20250101T000000-expired": int(time.time()) - 1})
    writer.hold_unserved(UNFINISHED)

    assert writer.unserved_generations() == [UNFINISHED]
    assert cast(list[str], redis_client.zrange(key, 0, -1)) == [UNFINISHED]

    writer.release_unserved(UNFINISHED)
    assert writer.unserved_generations() == []


def test_a_hold_renewed_never_moves_back(redis_client: "redis.Redis", key_prefix: str) -> None:
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    key = unserved_generations_key(key_prefix)
    later = unserved_horizon(time.time(), TimelineSettings()) + 10_000
    redis_client.zadd(key, {UNFINISHED: later})

    writer.hold_unserved(UNFINISHED)

    assert redis_client.zscore(key, UNFINISHED) == later


def test_an_erasure_given_a_retired_generation_reaches_the_one_served(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    # The consumer's batch read the generation before a rebuild switched, then released, the new one.
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    retired = writer.current_epoch()
    writer.apply_batch(writes_for(with_phone("C-HELD-5", minutes_ago=30)), epoch=UNFINISHED, publish=False)
    writer.switch_epoch(UNFINISHED)

    writer.erase_everywhere("C-HELD-5", epoch=retired)

    assert held_keys(redis_client, key_prefix, UNFINISHED, "C-HELD-5") == []
    assert writer.resolve([PHONE], epoch=UNFINISHED) == {}


def test_a_batch_resolved_in_a_retired_generation_goes_to_the_one_served(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    # Written to the retired generation after its drop (a retry, say), its keys would be out of every
    # erasure's reach until they expire.
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    retired = writer.current_epoch()
    writer.switch_epoch(UNFINISHED)

    (result,) = writer.apply_batch(
        writes_for(with_phone("C-HELD-6", minutes_ago=3)), epoch=retired, served=True
    )

    assert result.applied
    assert held_keys(redis_client, key_prefix, retired, "C-HELD-6") == []
    assert held_keys(redis_client, key_prefix, UNFINISHED, "C-HELD-6")


def test_a_rebuilds_batch_goes_to_its_own_generation_unchecked(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    writer.current_epoch()
    writer.apply_batch(writes_for(with_phone("C-HELD-7", minutes_ago=3)), epoch=UNFINISHED, publish=False)
    assert held_keys(redis_client, key_prefix, UNFINISHED, "C-HELD-7")
