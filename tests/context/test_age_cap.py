"""The age cap on reads, against the real Redis: an event past it is no longer served, although the write
path removes it only with the citizen's next change (a citizen who has gone quiet still holds it)."""

from datetime import UTC, datetime, timedelta

import redis
import redis.asyncio as aioredis

from context.settings import TimelineSettings
from context.store import ContextReader, ProjectionWriter
from context.summary import ContactFact, within_age_cap
from tests.factories import example_data, make_event, writes_for

NOW = datetime.now(UTC)
MAX_AGE = timedelta(days=TimelineSettings().max_age_days)
OLD_AGE = MAX_AGE - timedelta(days=10)  # within the cap when written at NOW, past it ten days later
PASSES_AT = NOW + timedelta(days=10)  # when the old event passes the cap


def written(client: "redis.Redis", prefix: str, citizen: str) -> tuple[str, str]:
    """An old case opened and a recent call, written at NOW (both within the cap then); their keys."""
    old = make_event(
        citizen, type_="case.opened", now=NOW - OLD_AGE, data=example_data("case.opened", case_ref="HB-1")
    )
    recent = make_event(citizen, minutes_ago=60, now=NOW)
    ProjectionWriter(client, prefix=prefix, timeline=TimelineSettings()).apply_batch(
        writes_for(old, recent), now=NOW
    )
    return old.dedup_key, recent.dedup_key


async def test_an_event_past_the_age_cap_leaves_the_context_and_its_summary(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    old, recent = written(redis_client, key_prefix, "C-AGE-1")
    reader = ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings())
    just_before = await reader.context("C-AGE-1", now=PASSES_AT - timedelta(seconds=1))
    assert [event.dedup_key for event in just_before.timeline] == [recent, old]
    before = await reader.context_json("C-AGE-1", now=PASSES_AT - timedelta(seconds=1))
    assert '"HB-1"' in before.body
    assert [case.case_ref for case in before.head.summary.open_cases] == ["HB-1"]
    # Two seconds later, the document read before (kept for minutes otherwise) is not served again.
    after = await reader.context_json("C-AGE-1", now=PASSES_AT + timedelta(seconds=1))
    assert after is not before
    assert after.head.summary.open_cases == []
    assert '"HB-1"' not in after.body
    context = await reader.context("C-AGE-1", now=PASSES_AT + timedelta(seconds=1))
    assert [event.dedup_key for event in context.timeline] == [recent]
    assert context.summary.open_cases == []


async def test_pages_leave_out_what_is_past_the_cap_and_an_export_gives_everything_held(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    old, recent = written(redis_client, key_prefix, "C-AGE-2")
    reader = ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings())
    epoch = await reader.current_epoch()
    later = PASSES_AT + timedelta(seconds=1)
    page = await reader.timeline_slice("C-AGE-2", epoch=epoch, below=None, count=10, now=later)
    assert [event.dedup_key for _position, event in page] == [recent]
    earlier = await reader.timeline_slice("C-AGE-2", epoch=epoch, below=None, count=10, now=NOW)
    assert [event.dedup_key for _position, event in earlier] == [recent, old]
    # An export is a copy of what is held: the event stays there until the write path removes it.
    assert [event.dedup_key for event in await reader.whole_timeline("C-AGE-2", epoch=epoch)] == [recent, old]


def test_facts_past_the_cap_are_left_out_and_the_first_to_pass_it_says_when() -> None:
    facts = [
        ContactFact(key="call:1", channel="phone", time=NOW - timedelta(days=days)) for days in (100, 60, 5)
    ]
    kept, passes_at = within_age_cap(facts, now=NOW, max_age=timedelta(days=90))
    assert kept == facts[1:]
    assert passes_at == NOW + timedelta(days=30)
    assert within_age_cap([], now=NOW, max_age=timedelta(days=90)) == ([], None)


async def test_an_erasure_or_a_new_generation_leaves_no_summary_in_memory(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    written(redis_client, key_prefix, "C-AGE-3")
    reader = ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings())
    # Summaries are kept by the digest of their facts: an erased citizen's (open cases, payments) would
    # sit in memory, unreachable, until pushed out by others.
    await reader.context("C-AGE-3", now=NOW)
    assert reader.kept_summaries == 1
    reader.forget_citizen("C-AGE-3")
    assert reader.kept_summaries == 0
    await reader.context("C-AGE-3", now=NOW)
    assert reader.kept_summaries == 1
    reader.forget_epoch()
    assert reader.kept_summaries == 0
