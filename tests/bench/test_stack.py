"""The figures' stack: each figure starts with Redis's append-only file freshly rewritten."""

from collections.abc import Iterator

import pytest
import redis

from bench.stack import rewrite_append_only_file
from context.settings import RedisSettings


@pytest.fixture
def server_client() -> Iterator["redis.Redis"]:
    """A client of the test Redis itself (the rewrite is the server's, not a key prefix's)."""
    client = redis.Redis.from_url(str(RedisSettings().url), decode_responses=True)
    yield client
    client.close()


def test_the_append_only_file_is_rewritten_and_done_before_a_figure_starts(
    server_client: "redis.Redis",
) -> None:
    before = server_client.info("persistence")["aof_rewrites"]
    assert rewrite_append_only_file(server_client)
    after = server_client.info("persistence")
    assert after["aof_rewrites"] == before + 1
    assert (after["aof_rewrite_in_progress"], after["aof_rewrite_scheduled"]) == (0, 0)
    assert after["aof_last_bgrewrite_status"] == "ok"


def test_a_rewrite_already_under_way_is_waited_for_rather_than_an_error(server_client: "redis.Redis") -> None:
    before = server_client.info("persistence")["aof_rewrites"]
    server_client.bgrewriteaof()
    # Redis refuses a second BGREWRITEAOF while this one runs ("already in progress"); whether it still runs
    # or has just ended, the figure waits for it and goes on.
    assert rewrite_append_only_file(server_client)
    after = server_client.info("persistence")
    assert after["aof_rewrites"] >= before + 1
    assert after["aof_rewrite_in_progress"] == 0
