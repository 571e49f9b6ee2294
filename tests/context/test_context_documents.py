"""The reader's kept documents and its snapshot, against the real Redis: exact, never stale."""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import redis
import redis.asyncio as aioredis

from context.document_cache import MAX_AGE
from context.keys import CitizenKeys
from context.settings import TimelineSettings
from context.store import ContextReader, ProjectionWriter
from context.timeline import time_score
from models.context import CitizenContext
from tests.factories import make_event, writes_for

NOW = datetime.now(UTC)


def writer_for(client: "redis.Redis", prefix: str) -> ProjectionWriter:
    return ProjectionWriter(client, prefix=prefix, timeline=TimelineSettings())


async def test_a_kept_document_is_served_only_while_the_snapshot_and_its_summary_hold(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    writer = writer_for(redis_client, key_prefix)
    epoch = writer.current_epoch()
    writer.apply_batch(writes_for(make_event("C-12", minutes_ago=10, now=NOW)), now=NOW)
    reader = ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings())
    first = await reader.context_json("C-12", now=NOW)
    assert await reader.context_json("C-12", now=NOW + timedelta(minutes=1)) is first
    # A week on, the contact leaves the 7-day window: the summary changed with time alone.
    week_on = await reader.context_json("C-12", now=NOW + timedelta(days=7, minutes=1))
    assert week_on is not first
    assert week_on.head.summary != first.head.summary
    assert week_on.summary_digest != first.summary_digest
    # Erased and written again: the same version 1, with another event, is never the kept document.
    writer.erase("C-12", epoch=epoch, erased_at=time_score(NOW - timedelta(minutes=7)), publish=False)
    other = make_event("C-12", minutes_ago=5, now=NOW)
    writer.apply_batch(writes_for(other), now=NOW)
    again = await reader.context_json("C-12", now=NOW + timedelta(minutes=1))
    assert again.head.version == first.head.version == 1
    assert [e["id"] for e in json.loads(again.body)["timeline"]] == [other.id]
    context = await reader.context("C-12", now=NOW + timedelta(minutes=1))
    assert CitizenContext.model_validate_json(again.body) == context
    # An erasure announced to the process drops the document at once.
    reader.forget_citizen("C-12")
    assert await reader.context_json("C-12", now=NOW + timedelta(minutes=1)) is not again


async def test_an_unchanged_context_costs_only_its_stamp_and_a_shorter_timeline_is_read_in_full(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    writer = writer_for(redis_client, key_prefix)
    events = [make_event("C-16", minutes_ago=m, now=NOW) for m in (3, 2, 1)]
    writer.apply_batch(writes_for(*events), now=NOW)
    reader = ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings())
    first = await reader.context_json("C-16", now=NOW)
    # Redis answers a read of a kept, unchanged context with its version and stamp alone.
    replies: list[list[Any]] = []
    snapshot_of = reader._snapshot_of

    async def recorded(
        citizen_id: str, *, limit: int | None, now: datetime, held: Any = None
    ) -> tuple[str, list[Any]]:
        epoch, reply = await snapshot_of(citizen_id, limit=limit, now=now, held=held)
        replies.append(reply)
        return epoch, reply

    reader._snapshot_of = recorded  # type: ignore[method-assign]
    assert await reader.context_json("C-16", now=NOW) is first
    assert [len(reply) for reply in replies] == [2]
    # A kept document past its age sends no stamp: one full snapshot, not an unchanged answer and then one.
    replies.clear()
    aged = await reader.context_json("C-16", now=NOW + MAX_AGE)
    assert aged is not first
    assert [len(reply) for reply in replies] == [5]
    first = await reader.context_json("C-16", now=NOW)
    # The oldest event goes without a new version, as when a late event falling off a full timeline takes
    # events past the age cap with it (apply_events.lua): the kept document is not served.
    keys = CitizenKeys(key_prefix, writer.current_epoch(), "C-16")
    oldest = cast(list[str], redis_client.zrange(keys.timeline, 0, 0))[0]
    redis_client.zrem(keys.timeline, oldest)
    redis_client.hdel(keys.events, oldest)
    redis_client.hdel(keys.facts, oldest)
    shorter = await reader.context_json("C-16", now=NOW)
    assert shorter.head.version == first.head.version
    assert [e["id"] for e in json.loads(shorter.body)["timeline"]] == [events[2].id, events[1].id]
    assert CitizenContext.model_validate_json(shorter.body) == await reader.context("C-16", now=NOW)


async def test_an_event_the_timeline_names_but_no_longer_holds_is_left_out(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    writer = writer_for(redis_client, key_prefix)
    events = [make_event("C-13", minutes_ago=m, now=NOW) for m in (3, 2, 1)]
    writer.apply_batch(writes_for(*events), now=NOW)
    keys = CitizenKeys(key_prefix, writer.current_epoch(), "C-13")
    middle = cast(list[str], redis_client.zrevrange(keys.timeline, 1, 1))[0]
    redis_client.hdel(keys.events, middle)
    reader = ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings())
    encoded = await reader.context_json("C-13", now=NOW)
    assert [e["id"] for e in json.loads(encoded.body)["timeline"]] == [events[2].id, events[0].id]
    assert [e.id for e in (await reader.context("C-13", now=NOW)).timeline] == [events[2].id, events[0].id]


async def test_kept_documents_go_after_their_maximum_age_and_on_a_lost_subscription(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    writer = writer_for(redis_client, key_prefix)
    writer.apply_batch(writes_for(make_event("C-14", minutes_ago=10, now=NOW)), now=NOW)
    reader = ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings())
    first = await reader.context_json("C-14", now=NOW)
    # Past the maximum age it is built again, even with nothing changed.
    assert await reader.context_json("C-14", now=NOW + MAX_AGE) is not first
    # Unread, it is still removed from memory by the periodic sweep.
    kept = await reader.context_json("C-14", now=NOW)
    assert await reader.context_json("C-14", now=NOW + timedelta(seconds=1)) is kept
    reader.drop_old_documents(NOW + MAX_AGE)
    assert await reader.context_json("C-14", now=NOW + timedelta(seconds=1)) is not kept
    # What the hub calls when its subscription was lost (erasures may have gone unannounced): all go.
    kept = await reader.context_json("C-14", now=NOW)
    reader.forget_epoch()
    assert await reader.context_json("C-14", now=NOW) is not kept


async def test_a_document_read_across_an_erasure_announcement_is_not_kept(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    writer = writer_for(redis_client, key_prefix)
    writer.apply_batch(writes_for(make_event("C-15", minutes_ago=10, now=NOW)), now=NOW)
    reader = ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings())
    started = asyncio.Event()
    release = asyncio.Event()
    # The read is held in its await, as a slow Redis would hold it.
    snapshot_of = reader._snapshot_of

    async def held_back(
        citizen_id: str, *, limit: int | None, now: datetime, held: Any = None
    ) -> tuple[str, list[Any]]:
        reply = await snapshot_of(citizen_id, limit=limit, now=now, held=held)
        started.set()
        await release.wait()
        return reply

    reader._snapshot_of = held_back  # type: ignore[method-assign]
    read = asyncio.create_task(reader.context_json("C-15", now=NOW))
    await started.wait()
    reader.forget_citizen("C-15")  # the erasure's announcement arrives while the snapshot is in flight
    release.set()
    served = await read
    reader._snapshot_of = snapshot_of  # type: ignore[method-assign]
    assert await reader.context_json("C-15", now=NOW) is not served
