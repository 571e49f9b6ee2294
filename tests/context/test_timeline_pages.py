"""Timeline pages against the real Redis: a cursor whose event fell off the timeline meanwhile."""

from datetime import UTC, datetime, timedelta

import redis
import redis.asyncio as aioredis

from context.keys import CitizenKeys
from context.settings import TimelineSettings
from context.store import ContextReader, ProjectionWriter
from tests.factories import make_event, writes_for

NOW = datetime.now(UTC)


async def test_a_cursor_that_fell_off_continues_below_it_in_the_timelines_own_order(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    # Events of one moment are ordered by key byte by byte, as the sorted set holds them. A collation
    # (en_US.UTF-8 puts "B" after "a") skipped the event below the cursor, or served one above it twice.
    moment = NOW - timedelta(hours=1)
    same_time = [
        make_event("C-PAGE", now=moment).model_copy(update={"id": i}) for i in ("evt-a", "evt-B", "evt-c")
    ]
    older = make_event("C-PAGE", now=moment - timedelta(hours=1))
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    writer.apply_batch(writes_for(*same_time, older), now=NOW)
    reader = ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings())
    epoch = await reader.current_epoch()

    first = await reader.timeline_slice("C-PAGE", epoch=epoch, below=None, count=2, now=NOW)
    assert [event.id for _position, event in first] == ["evt-c", "evt-a"]
    cursor = first[-1][0]
    redis_client.zrem(CitizenKeys(key_prefix, epoch, "C-PAGE").timeline, cursor.key)  # it falls off
    rest = await reader.timeline_slice("C-PAGE", epoch=epoch, below=cursor, count=10, now=NOW)

    assert [event.id for _position, event in rest] == ["evt-B", older.id]
