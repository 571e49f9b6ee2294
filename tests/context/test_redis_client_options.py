"""The project's Redis client options, against a Redis of the test's own that stops answering."""

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from pydantic import RedisDsn

from context.settings import RedisSettings, redis_client_options
from ops.servers import RedisServer
from ops.settings import ServicesSettings
from tests.conftest import free_port


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A Redis of this test's own (its URL and PID): the test freezes it, which the shared one must not be."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    server = RedisServer(ServicesSettings(data_dir=tmp_path), RedisSettings(url=RedisDsn(url)))
    server.up()
    pid = server.status().pid
    assert pid is not None
    try:
        yield url, pid
    finally:
        os.kill(pid, signal.SIGCONT)
        server.down(only=pid)


async def _incr_async(url: str, options: dict[str, Any]) -> None:
    client = aioredis.Redis.from_url(url, **options)
    try:
        await client.incr("counter")
    finally:
        await client.aclose()


def _incr(url: str, options: dict[str, Any], *, asyncio_client: bool) -> None:
    if asyncio_client:
        asyncio.run(_incr_async(url, options))
    else:
        redis.Redis.from_url(url, **options).incr("counter")


@pytest.mark.parametrize("asyncio_client", [False, True], ids=["sync", "asyncio"])
def test_a_command_redis_did_not_answer_in_time_is_not_sent_again_without_retry_timeouts(
    own_redis: tuple[str, int], asyncio_client: bool
) -> None:
    # redis-py adds the errors to retry on to its retry's own, which include timeouts: with Redis frozen,
    # the INCR was sent again on three more connections, each waiting the whole timeout (20 s in the API,
    # for a readiness probe too), where it may already have run.
    url, pid = own_redis
    options = redis_client_options(asyncio=asyncio_client, retry_timeouts=False, reply_timeout_s=0.5)
    watching = redis.Redis.from_url(url, **redis_client_options())
    connections = int(watching.info("stats")["total_connections_received"])
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(redis.TimeoutError):
            _incr(url, options, asyncio_client=asyncio_client)
    finally:
        os.kill(pid, signal.SIGCONT)
    time.sleep(0.5)  # the connections made meanwhile are accepted once Redis runs again
    tried_on = int(watching.info("stats")["total_connections_received"]) - connections
    watching.close()
    assert tried_on == 1
