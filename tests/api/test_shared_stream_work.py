"""Work shared by a process's streams: presence kept alive by one sweep, one summary read per change."""

import asyncio
import time

import pytest
import redis
import redis.asyncio as aioredis

from api.presence import PresenceKeeper
from api.stream_session import SharedSummaries
from api.streaming import ChangeHub, PresenceChanged
from context.keys import presence_key
from context.settings import RedisSettings, TimelineSettings
from context.store import CitizenEraser, ContextReader, PresenceStore, ProjectionWriter
from tests.factories import make_event, writes_for


def keeper_for(client: "aioredis.Redis", prefix: str) -> tuple[PresenceKeeper, PresenceStore, ChangeHub]:
    store = PresenceStore(client, prefix=prefix)
    hub = ChangeHub(client, channel=f"{prefix}:changes", queue_size=8)
    hub.connected.set()  # as when the hub's subscription is live (its task is not needed here)
    return PresenceKeeper(store, hub, interval_s=10), store, hub


async def redis_clock(client: "aioredis.Redis") -> float:
    seconds, microseconds = await client.time()
    return seconds + microseconds / 1_000_000


async def test_keep_alive_extends_present_entries_only(
    async_redis: "aioredis.Redis", redis_settings: RedisSettings
) -> None:
    prefix = redis_settings.key_prefix
    store = PresenceStore(async_redis, prefix=prefix)
    await store.join("C-1", viewer_id="agent-a", connection_id="c1", ttl_s=30)
    # agent-b's entry expired long ago (a score is when its entry expires).
    await async_redis.zadd(presence_key(prefix, "C-1"), {"agent-b\tc2": 1})
    now = await redis_clock(async_redis)
    viewers = await store.keep_alive({"C-1": [("agent-a", "c1"), ("agent-gone", "c9")], "C-2": []}, ttl_s=60)
    # agent-b's entry had expired and is swept; agent-gone had left and is not written back.
    assert viewers == {"C-1": [("agent-a", "c1")], "C-2": []}
    score = await async_redis.zscore(presence_key(prefix, "C-1"), "agent-a\tc1")
    assert score is not None
    assert now + 60 <= score <= await redis_clock(async_redis) + 60
    assert await async_redis.ttl(presence_key(prefix, "C-1")) > 55


async def test_entries_are_timed_by_redis_not_by_a_replicas_clock(
    async_redis: "aioredis.Redis", redis_settings: RedisSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = redis_settings.key_prefix
    store = PresenceStore(async_redis, prefix=prefix)
    await store.join("C-1", viewer_id="agent-a", connection_id="c1", ttl_s=30)
    # Another replica, whose clock runs an hour ahead, has a stream of the same citizen open.
    ahead = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: ahead)
    other = PresenceStore(async_redis, prefix=prefix)
    await other.join("C-1", viewer_id="agent-b", connection_id="c2", ttl_s=30)
    both = [("agent-a", "c1"), ("agent-b", "c2")]
    viewers = await other.keep_alive({"C-1": [("agent-b", "c2")]}, ttl_s=30)
    assert sorted(viewers["C-1"]) == both
    assert sorted(await other.viewers("C-1")) == both
    # Its entry lasts as long as anyone's, not an hour longer.
    score = await async_redis.zscore(presence_key(prefix, "C-1"), "agent-b\tc2")
    assert score is not None
    assert score <= await redis_clock(async_redis) + 30


async def test_a_sweep_tells_streams_when_viewers_change(
    async_redis: "aioredis.Redis", redis_settings: RedisSettings
) -> None:
    keeper, store, hub = keeper_for(async_redis, redis_settings.key_prefix)
    await store.join("C-1", viewer_id="agent-a", connection_id="c1", ttl_s=keeper.ttl_s)
    with hub.subscribe("C-1") as subscription, keeper.keeping("C-1", viewer_id="agent-a", connection_id="c1"):
        await keeper.sweep()
        assert await subscription.get(0) is None  # the first sweep only records what the stream sent
        # Another replica's viewer arrives, then its entry expires without a goodbye.
        await store.refresh("C-1", viewer_id="agent-b", connection_id="c2", ttl_s=30)
        await keeper.sweep()
        assert isinstance(await subscription.get(0), PresenceChanged)
        await async_redis.zadd(presence_key(redis_settings.key_prefix, "C-1"), {"agent-b\tc2": 1})
        await keeper.sweep()
        assert isinstance(await subscription.get(0), PresenceChanged)
        await keeper.sweep()
        assert await subscription.get(0) is None
    assert keeper.ttl_s == 30


async def test_a_lost_entry_of_an_open_stream_is_written_again(
    async_redis: "aioredis.Redis", redis_settings: RedisSettings
) -> None:
    keeper, store, _hub = keeper_for(async_redis, redis_settings.key_prefix)
    with keeper.keeping("C-1", viewer_id="agent-a", connection_id="c1"):
        # As after Redis was away longer than an entry lives: the stream is open, its entry is gone.
        await keeper.sweep()
        assert await store.viewers("C-1") == [("agent-a", "c1")]
    await store.leave("C-1", viewer_id="agent-a", connection_id="c1")
    await keeper.sweep()
    assert await store.viewers("C-1") == []


async def test_no_sweep_while_the_hub_is_disconnected(
    async_redis: "aioredis.Redis", redis_settings: RedisSettings
) -> None:
    keeper, store, hub = keeper_for(async_redis, redis_settings.key_prefix)
    hub.connected.clear()
    with keeper.keeping("C-1", viewer_id="agent-a", connection_id="c1"):
        await asyncio.wait_for(keeper.sweep(), timeout=5)
        assert await store.viewers("C-1") == []


async def test_streams_of_one_citizen_share_one_summary_read(
    async_redis: "aioredis.Redis", redis_client: "redis.Redis", key_prefix: str
) -> None:
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    writer.apply_batch(writes_for(make_event("C-S", minutes_ago=1)))
    reader = ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings())
    context = await reader.context("C-S")
    shared = SharedSummaries(reader)
    first = asyncio.ensure_future(shared.after("C-S", epoch=context.epoch, version=context.version))
    second = asyncio.ensure_future(shared.after("C-S", epoch=context.epoch, version=context.version))
    first.cancel()  # one stream goes away: the other still gets the shared read
    assert await second == await reader.summary("C-S", epoch=context.epoch)
    assert first.cancelled()
    # Nothing is kept once read: a later change reads again.
    assert await shared.after("C-S", epoch=context.epoch, version=context.version) == await second


async def test_the_hub_tells_the_process_of_every_erasure_watched_or_not(
    async_redis: "aioredis.Redis", redis_settings: RedisSettings
) -> None:
    prefix = redis_settings.key_prefix
    erased: list[str] = []
    told = asyncio.Event()

    def on_erased(citizen_id: str) -> None:
        erased.append(citizen_id)
        told.set()

    hub = ChangeHub(async_redis, channel=f"{prefix}:changes", queue_size=8, forget_citizen=on_erased)
    task = asyncio.create_task(hub.run())
    try:
        await asyncio.wait_for(hub.connected.wait(), timeout=10)
        await CitizenEraser(async_redis, prefix=prefix).erase("C-77")  # nobody watches C-77
        await asyncio.wait_for(told.wait(), timeout=10)
    finally:
        task.cancel()
    assert erased == ["C-77"]
