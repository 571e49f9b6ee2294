"""The figures' stack: each figure starts with Redis's append-only file freshly rewritten, and leaves only
its processes' logs behind."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bench.stack import DATABASE_FILE, FigureStack, rewrite_append_only_file
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


def test_a_closed_figure_leaves_its_logs_and_nothing_else(tmp_path: Path) -> None:
    stack = FigureStack.create("closing", tmp_path, partitions=1)
    kept = FigureStack.create("kept", tmp_path, partitions=1)
    for figure in (stack, kept):
        # What an API process leaves: its SQLite database with the journal files beside it, and its log.
        for name in (DATABASE_FILE, f"{DATABASE_FILE}-wal", f"{DATABASE_FILE}-shm", "api.log"):
            (figure.work_dir / name).write_text("x")
    client = redis.Redis.from_url(str(stack.redis.url))
    key = f"{stack.redis.key_prefix}:something"
    client.set(key, "1")
    try:
        stack.close()
        assert sorted(path.name for path in stack.work_dir.iterdir()) == ["api.log"]
        assert client.exists(key) == 0
        # The ingest figure keeps its data for the rebuild figure, which replays it.
        kept.close(keep_data=True)
        assert len(list(kept.work_dir.glob(f"{DATABASE_FILE}*"))) == 3
    finally:
        client.delete(key)
        client.close()
        kept.close()
