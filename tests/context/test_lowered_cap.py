"""A timeline written under a higher count cap, then the cap lowered, against the real Redis: the next
event trims thousands of events at once, within what one Lua call can pass to Redis."""

import pytest
import redis
from pydantic import ValidationError

from context.keys import CitizenKeys
from context.settings import TimelineSettings
from context.store import ProjectionWriter
from tests.factories import make_event, writes_for


def test_the_first_event_after_the_cap_is_lowered_trims_thousands_at_once(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    # Written before the cap had its upper bound (or by hand): more than any cap allowed now.
    held = TimelineSettings.model_construct(**{**TimelineSettings().model_dump(), "max_events": 10_000})
    before = ProjectionWriter(redis_client, prefix=key_prefix, timeline=held)
    events = [make_event("C-CAP", minutes_ago=10_000 - n, event_id=f"e-{n}") for n in range(10_000)]
    for start in range(0, len(events), 1000):
        before.apply_batch(writes_for(*events[start : start + 1000]))
    epoch = before.current_epoch()
    timeline = CitizenKeys(key_prefix, epoch, "C-CAP").timeline
    assert redis_client.zcard(timeline) == 10_000
    after = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings(max_events=200))
    # 9,801 events go at once: one unpack() of them all was past Lua's stack, an error on every retry.
    (result,) = after.apply_batch(writes_for(make_event("C-CAP", event_id="e-new")))
    assert result.applied
    assert redis_client.zcard(timeline) == 200
    assert redis_client.hlen(CitizenKeys(key_prefix, epoch, "C-CAP").events) == 200


def test_caps_past_what_one_lua_call_can_pass_are_refused() -> None:
    with pytest.raises(ValidationError):
        TimelineSettings(max_events=5001)
    with pytest.raises(ValidationError):
        TimelineSettings(change_log_length=5001)
