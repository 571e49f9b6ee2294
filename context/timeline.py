"""Timeline rules as pure functions: how events are ordered and which ones are kept."""

from datetime import datetime, timedelta

from models.events import CloudEvent


def time_score(moment: datetime) -> int:
    """A sortable score for a moment: microseconds since the Unix epoch (exact in a double until 2255)."""
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def age_cutoff(*, now: datetime, max_age: timedelta) -> int:
    """The score below which an event is too old to keep."""
    return time_score(now - max_age)


def order_timeline(events: list[CloudEvent]) -> list[CloudEvent]:
    """Newest first, deduplicated by (source, id): the order the projection serves.

    Ties in time are broken by the event key, descending, exactly as Redis orders a sorted set's
    equal scores, so this function and the store always agree.
    """
    unique = {event.dedup_key: event for event in reversed(events)}
    return sorted(unique.values(), key=lambda e: (time_score(e.time), e.dedup_key), reverse=True)


def retained(
    events: list[CloudEvent], *, now: datetime, max_events: int, max_age: timedelta
) -> list[CloudEvent]:
    """From scratch: the timeline that a set of events gives, newest first, within the count and age caps.

    The write path reaches the same result one event at a time (context/apply_events.lua); the tests
    hold the two to each other.
    """
    cutoff = age_cutoff(now=now, max_age=max_age)
    return [event for event in order_timeline(events) if time_score(event.time) >= cutoff][:max_events]
