"""The timeline rules, as pure functions."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from context.timeline import age_cutoff, order_timeline, time_score
from tests.factories import make_event

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_time_score_keeps_microseconds_and_order() -> None:
    earlier = datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    later = earlier + timedelta(microseconds=1)
    assert time_score(later) - time_score(earlier) == 1
    assert time_score(datetime(1970, 1, 1, tzinfo=UTC)) == 0


def test_time_score_ignores_the_offset_a_publisher_wrote() -> None:
    in_paris = datetime.fromisoformat("2026-06-01T14:00:00+02:00")
    in_utc = datetime.fromisoformat("2026-06-01T12:00:00+00:00")
    assert time_score(in_paris) == time_score(in_utc)


def test_age_cutoff_is_now_minus_max_age() -> None:
    assert age_cutoff(now=NOW, max_age=timedelta(days=1)) == time_score(NOW - timedelta(days=1))


def test_order_is_newest_first_whatever_the_arrival_order() -> None:
    old, middle, new = (make_event(minutes_ago=m, now=NOW) for m in (30, 20, 10))
    assert order_timeline([middle, new, old]) == [new, middle, old]


def test_duplicates_by_source_and_id_are_kept_once() -> None:
    first = make_event(event_id="e-1", now=NOW)
    again = make_event(event_id="e-1", now=NOW, minutes_ago=5)
    other_source = make_event(event_id="e-1", source="/payments", now=NOW)
    assert order_timeline([first, again, other_source]) == order_timeline([first, other_source])
    assert len(order_timeline([first, again, other_source])) == 2


@given(st.permutations(list(range(6))))
def test_order_does_not_depend_on_arrival(order: list[int]) -> None:
    events = [make_event(event_id=f"e-{i}", minutes_ago=i % 3, now=NOW) for i in range(6)]
    assert order_timeline([events[i] for i in order]) == order_timeline(events)
