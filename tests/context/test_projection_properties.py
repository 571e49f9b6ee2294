"""The Redis write path (one Lua script per event) agrees with the pure rules, whatever the arrival order."""

import asyncio
import itertools
import uuid
from datetime import timedelta

import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from context.profile import merge_profile, profile_fields
from context.settings import TimelineSettings
from context.store import ContextReader, ProjectionWriter
from context.summary import fact_of, summarise
from context.timeline import retained, time_score
from models.events import CloudEvent
from tests.context.test_summary import NOW, histories
from tests.factories import example_data, make_event, writes_for


def apply_in_batches(writer: ProjectionWriter, events: list[CloudEvent], cuts: list[int]) -> None:
    bounds = sorted({0, len(events), *(c % (len(events) + 1) for c in cuts)})
    for start, end in itertools.pairwise(bounds):
        writer.apply_batch(writes_for(*events[start:end]), now=NOW)


def read(redis_url: str, prefix: str, citizen: str, limit: int) -> object:
    async def go() -> object:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            reader = ContextReader(client, prefix=prefix, timeline=TimelineSettings())
            return await reader.context(citizen, limit=limit, now=NOW)
        finally:
            await client.aclose()

    return asyncio.run(go())


# Each example writes a citizen of its own, so sharing the test's Redis client and prefix is safe.
SHARED_FIXTURES = [HealthCheck.function_scoped_fixture]


@settings(max_examples=60, suppress_health_check=SHARED_FIXTURES)
@given(
    histories(),
    st.integers(min_value=1, max_value=30),
    st.randoms(),
    st.lists(st.integers(0, 40), max_size=4),
)
def test_timeline_and_summary_equal_the_from_scratch_rules(
    redis_client: "redis.Redis",
    key_prefix: str,
    events: list[CloudEvent],
    cap: int,
    rnd: object,
    cuts: list[int],
) -> None:
    citizen = f"C-{uuid.uuid4().hex[:8]}"
    events = [e.model_copy(update={"subject": citizen}) for e in events]
    arrival = list(events)
    rnd.shuffle(arrival)  # type: ignore[attr-defined]
    writer = ProjectionWriter(
        redis_client, prefix=key_prefix, timeline=TimelineSettings(max_events=cap, max_age_days=90)
    )
    apply_in_batches(writer, arrival, cuts)
    context = read(_url(redis_client), key_prefix, citizen, cap)
    expected = retained(events, now=NOW, max_events=cap, max_age=timedelta(days=90))
    assert context.timeline == expected  # type: ignore[attr-defined]
    assert context.summary == summarise([f for e in expected if (f := fact_of(e))], now=NOW)  # type: ignore[attr-defined]


def _url(client: "redis.Redis") -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"


profile_values = st.fixed_dictionaries(
    {},
    optional={
        "preferred_language": st.sampled_from(["cy", "en", "pl", "pa"]),
        "communication_needs": st.lists(
            st.sampled_from(["bsl-interpreter", "large-print", "easy-read"]), max_size=2
        ),
        "vulnerability_flags": st.lists(st.sampled_from(["bereavement", "financial-hardship"]), max_size=2),
    },
)


@settings(max_examples=40, suppress_health_check=SHARED_FIXTURES)
@given(st.lists(st.tuples(profile_values, st.integers(0, 5)), min_size=1, max_size=8), st.randoms())
def test_profile_updates_converge_whatever_the_arrival_order(
    redis_client: "redis.Redis", key_prefix: str, updates: list[tuple[dict[str, object], int]], rnd: object
) -> None:
    citizen = f"C-{uuid.uuid4().hex[:8]}"
    events = [
        make_event(
            citizen,
            event_id=f"p-{n}",
            minutes_ago=minutes,
            type_="profile.updated",
            now=NOW,
            data={"channel": "system", "summary": "Profile changed", **values},
        )
        for n, (values, minutes) in enumerate(updates)
    ]
    arrival = list(events)
    rnd.shuffle(arrival)  # type: ignore[attr-defined]
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    writer.apply_batch(writes_for(*arrival), now=NOW)
    context = read(_url(redis_client), key_prefix, citizen, 50)
    expected = merge_profile([((time_score(e.time), e.dedup_key), profile_fields(e)) for e in events])
    assert context.profile == expected  # type: ignore[attr-defined]


def test_a_profile_update_sets_only_the_fields_it_names(redis_client: "redis.Redis", key_prefix: str) -> None:
    first = make_event(
        "C-P", type_="profile.updated", minutes_ago=10, now=NOW, data=example_data("profile.updated")
    )
    later = make_event(
        "C-P",
        type_="profile.updated",
        minutes_ago=1,
        now=NOW,
        data={"channel": "system", "summary": "Now prefers English", "preferred_language": "en"},
    )
    ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings()).apply_batch(
        writes_for(later, first), now=NOW
    )
    profile = read(_url(redis_client), key_prefix, "C-P", 50).profile  # type: ignore[attr-defined]
    assert profile.preferred_language == "en"
    assert profile.communication_needs == ["bsl-interpreter"]
    assert profile.vulnerability_flags == ["bereavement"]
