"""Auto-pipelining against the real Redis: each caller gets its own reply, in order, or its own error."""

import asyncio

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from context import batching
from context.batching import CommandBatcher
from context.settings import RedisSettings


async def test_commands_issued_together_each_get_their_reply_in_order(
    async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    batcher = CommandBatcher(async_redis)
    counter = f"{key_prefix}:counter"
    replies = await asyncio.gather(*(batcher.execute("INCR", counter) for _ in range(1000)))
    assert replies == list(range(1, 1001))  # one pipeline after another, each in the order issued
    assert await batcher.execute("GET", counter) == "1000"


async def test_a_failing_command_fails_only_its_caller(
    async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    batcher = CommandBatcher(async_redis)
    await async_redis.set(f"{key_prefix}:text", "not a list")
    results = await asyncio.gather(
        batcher.execute("SET", f"{key_prefix}:a", "1"),
        batcher.execute("LPUSH", f"{key_prefix}:text", "x"),  # WRONGTYPE
        batcher.execute("GET", f"{key_prefix}:a"),
        return_exceptions=True,
    )
    assert results[0] is True
    assert results[2] == "1"
    assert isinstance(results[1], redis.exceptions.ResponseError)


async def test_every_kind_of_argument_reaches_redis_as_redis_py_would_send_it(
    async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    batcher = CommandBatcher(async_redis)
    key = f"{key_prefix}:kinds"
    values: list[str | bytes | int | float] = ["Zoë 🙂", b"raw\x00bytes", 42, -7, 2**70, 0.1, 1e20]
    buffers = [bytearray(b"from a bytearray"), memoryview(b"from a memoryview")]
    assert await batcher.execute("RPUSH", key, *values, *buffers) == len(values) + len(buffers)
    # What redis-py's own encoding of each value gives back.
    assert await async_redis.lrange(key, 0, -1) == [
        *[await async_redis.echo(value) for value in values],
        *[await async_redis.echo(bytes(buffer)) for buffer in buffers],
    ]
    # A command of two words, as redis-py takes it.
    assert await batcher.execute("CONFIG GET", "appendonly") == await async_redis.config_get("appendonly")


async def test_an_argument_redis_cannot_take_fails_its_caller_alone_and_names_no_value(
    async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    batcher = CommandBatcher(async_redis)
    results = await asyncio.gather(
        batcher.execute("SET", f"{key_prefix}:a", "1"),
        batcher.execute("SET", f"{key_prefix}:b", None),
        batcher.execute("SET", f"{key_prefix}:c", True),
        batcher.execute("GET", f"{key_prefix}:a"),
        return_exceptions=True,
    )
    assert results[0] is True
    assert results[3] == "1"
    for refused in results[1:3]:
        assert isinstance(refused, redis.exceptions.DataError)
        assert str(refused).startswith("SET:")
        assert key_prefix not in str(refused)
    assert await async_redis.exists(f"{key_prefix}:b", f"{key_prefix}:c") == 0


async def test_a_caller_that_goes_away_leaves_the_batch_intact(
    async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    batcher = CommandBatcher(async_redis)
    gone = asyncio.ensure_future(batcher.execute("SET", f"{key_prefix}:gone", "1"))
    kept = asyncio.ensure_future(batcher.execute("INCR", f"{key_prefix}:kept"))
    await asyncio.sleep(0)
    gone.cancel()
    assert await kept == 1
    assert await batcher.execute("INCR", f"{key_prefix}:kept") == 2
    assert await async_redis.get(f"{key_prefix}:gone") is None  # nothing is sent for a caller gone


async def test_a_script_redis_no_longer_holds_is_loaded_again(
    async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    batcher = CommandBatcher(async_redis)
    script = async_redis.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert await batcher.run_script(script, keys=[f"{key_prefix}:n"], args=[2]) == 2
    await async_redis.script_flush()  # as after a Redis restart
    assert await batcher.run_script(script, keys=[f"{key_prefix}:n"], args=[3]) == 5


async def test_without_redis_every_caller_gets_the_connection_error() -> None:
    client = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    batcher = CommandBatcher(client)
    try:
        results = await asyncio.gather(
            *(batcher.execute("GET", "k") for _ in range(3)), return_exceptions=True
        )
    finally:
        await client.aclose()
    assert all(isinstance(result, redis.exceptions.ConnectionError) for result in results)


@pytest.mark.parametrize("count", [1, 2])
async def test_a_lone_command_goes_at_once(
    async_redis: "aioredis.Redis", key_prefix: str, count: int
) -> None:
    batcher = CommandBatcher(async_redis)
    for n in range(1, count + 1):
        assert await asyncio.wait_for(batcher.execute("INCR", f"{key_prefix}:lone"), timeout=5) == n


async def test_past_the_waiting_limit_a_caller_is_refused_at_once(
    async_redis: "aioredis.Redis", key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batching, "MAX_WAITING", 2)
    batcher = CommandBatcher(async_redis)
    results = await asyncio.gather(
        *(batcher.execute("INCR", f"{key_prefix}:n") for _ in range(3)), return_exceptions=True
    )
    assert results[:2] == [1, 2]
    assert isinstance(results[2], redis.exceptions.ConnectionError)


async def test_a_lost_connection_is_replaced_without_failing_the_next_command(
    async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    batcher = CommandBatcher(async_redis)
    assert await batcher.execute("INCR", f"{key_prefix}:n") == 1
    own_id = await batcher.execute("CLIENT", "ID")
    assert await async_redis.client_kill_filter(_id=own_id) == 1  # as a Redis restart would
    assert await batcher.execute("INCR", f"{key_prefix}:n") == 2
    assert await batcher.execute("CLIENT", "ID") != own_id  # a new connection


async def test_a_batch_that_outlasts_the_socket_timeout_fails_and_the_next_goes_on_a_new_connection(
    redis_settings: RedisSettings, key_prefix: str
) -> None:
    client = aioredis.Redis.from_url(str(redis_settings.url), decode_responses=True, socket_timeout=0.2)
    batcher = CommandBatcher(client)
    try:
        assert await batcher.execute("INCR", f"{key_prefix}:t") == 1
        with pytest.raises(redis.exceptions.TimeoutError):
            await batcher.execute("BLPOP", f"{key_prefix}:empty", 2)  # Redis answers only after 2 s
        assert await batcher.execute("INCR", f"{key_prefix}:t") == 2  # on a new connection
    finally:
        await client.aclose()
