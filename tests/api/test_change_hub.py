"""The change hub's one subscription: kept while quiet (its pings are answered), replaced when Redis goes
silent, and every stream re-synced then."""

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from api.streaming import ChangeHub, Resync
from context.settings import RedisSettings
from models.context import ContextChange

# Long enough that a loaded machine's stall of a few hundred milliseconds is not taken for silence.
PROBE_S = 0.5


class _Counted:
    def __init__(self) -> None:
        self.resyncs = 0

    def __call__(self) -> None:
        self.resyncs += 1


@pytest.fixture
async def running_hub(
    async_redis: "aioredis.Redis", redis_settings: RedisSettings
) -> AsyncIterator[tuple[ChangeHub, _Counted, str]]:
    """A hub listening on its own channel, with its re-syncs counted."""
    counted = _Counted()
    channel = f"{redis_settings.key_prefix}:changes"
    hub = ChangeHub(async_redis, channel=channel, queue_size=8, probe_s=PROBE_S, on_resync_all=counted)
    task = asyncio.create_task(hub.run())
    await asyncio.wait_for(hub.connected.wait(), timeout=10)
    yield hub, counted, channel
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_quiet_subscription_is_kept_because_its_pings_are_answered(
    running_hub: tuple[ChangeHub, _Counted, str], async_redis: "aioredis.Redis"
) -> None:
    hub, counted, channel = running_hub
    assert counted.resyncs == 1  # the first subscription re-syncs whatever opened before it
    # Nothing published for ten probe intervals: a hub deaf to its pings' answers gives up after three.
    await asyncio.sleep(10 * PROBE_S)
    assert counted.resyncs == 1
    assert hub.connected.is_set()
    # And it still delivers.
    with hub.subscribe("C-QUIET") as subscription:
        await async_redis.publish(channel, '{"citizen_id":"C-QUIET","epoch":"e1","version":1}')
        item = await asyncio.wait_for(subscription.next(), timeout=5)
    assert isinstance(item, ContextChange)
    assert item.version == 1


async def test_a_subscription_redis_stops_answering_is_replaced_and_streams_resync(
    running_hub: tuple[ChangeHub, _Counted, str], redis_settings: RedisSettings
) -> None:
    hub, counted, _channel = running_hub
    with hub.subscribe("C-SILENT") as subscription:
        # Redis holds every client's commands (the pings too) for longer than three probe intervals.
        pauser = aioredis.Redis.from_url(str(redis_settings.url))
        try:
            await pauser.client_pause(int(6 * PROBE_S * 1000), all=True)
        finally:
            await pauser.aclose()
        for _ in range(100):
            if counted.resyncs >= 2 and hub.connected.is_set():
                break
            await asyncio.sleep(PROBE_S / 2)
        assert counted.resyncs >= 2
        assert hub.connected.is_set()
        # The stream was told to re-sync (its changes published meanwhile may be lost).
        item = await asyncio.wait_for(subscription.next(), timeout=5)
    assert isinstance(item, Resync)
    assert item.reason == "redis"


async def test_a_cancelled_hub_always_stops(
    async_redis: "aioredis.Redis", redis_settings: RedisSettings
) -> None:
    # Cancelled while it reads under a very short probe, the cancel often lands as a read's timeout fires,
    # where redis-py lost it: the hub went on listening, and a shutdown waiting for it never ended.
    channel = f"{redis_settings.key_prefix}:changes"
    delays = random.Random(7)  # noqa: S311 (test timing, not crypto)
    for _attempt in range(100):
        hub = ChangeHub(async_redis, channel=channel, queue_size=8, probe_s=0.001)
        task = asyncio.create_task(hub.run())
        await asyncio.wait_for(hub.connected.wait(), timeout=10)
        await asyncio.sleep(delays.random() * 0.02)
        task.cancel()
        done, _pending = await asyncio.wait({task}, timeout=10)
        assert done == {task}
        assert task.cancelled()


async def test_an_unreadable_change_resyncs_only_the_streams_of_the_citizen_it_names(
    running_hub: tuple[ChangeHub, _Counted, str], async_redis: "aioredis.Redis"
) -> None:
    # Every stream of the process re-synced for one such message (a snapshot each), and the reader's
    # kept documents were all dropped.
    hub, counted, channel = running_hub
    with hub.subscribe("C-BAD") as named, hub.subscribe("C-OTHER") as other:
        await async_redis.publish(channel, '{"citizen_id":"C-BAD","epoch":"e1","version":"not a version"}')
        await async_redis.publish(channel, "not JSON at all")
        await async_redis.publish(channel, "[1, 2]")
        await async_redis.publish(channel, '{"citizen_id":"C-OTHER","epoch":"e1","version":1}')
        first = await asyncio.wait_for(named.next(), timeout=5)
        change = await asyncio.wait_for(other.next(), timeout=5)
        assert await named.get(0.2) is None
    assert first == Resync("unreadable")
    assert isinstance(change, ContextChange)  # C-OTHER's next item is its change, no re-sync before it
    assert counted.resyncs == 1  # only the first subscription's
