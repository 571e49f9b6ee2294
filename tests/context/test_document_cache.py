"""The kept context documents: served again only for an equal basis, within their interval, within budget."""

from datetime import UTC, datetime, timedelta

from context.document_cache import ENTRY_OVERHEAD_BYTES, MAX_AGE, DocumentCache

T0 = datetime(2026, 5, 1, 12, tzinfo=UTC)
BASIS = ("epoch-1", [3, ["preferred_language", '"cy"'], ["fact"], ["event-2", "event-1"]])


# The tests of what a basis and an interval allow keep entries for longer than the maximum age.
LONG = timedelta(days=1000)


def test_an_equal_basis_within_the_interval_is_served_again() -> None:
    cache: DocumentCache[str] = DocumentCache(max_age=LONG)
    cache.put("C-1", BASIS, "document", size=10, since=T0, until=T0 + timedelta(hours=1))
    # Equal, not the same object: a reply read again from Redis.
    again = ("epoch-1", [3, ["preferred_language", '"cy"'], ["fact"], ["event-2", "event-1"]])
    assert cache.get("C-1", again, now=T0 + timedelta(minutes=59)) == "document"


def test_anything_else_is_built_again() -> None:
    cache: DocumentCache[str] = DocumentCache(max_age=LONG)
    cache.put("C-1", BASIS, "document", size=10, since=T0, until=T0 + timedelta(hours=1))
    within = T0 + timedelta(minutes=1)
    assert cache.get("C-2", BASIS, now=within) is None  # another citizen
    assert cache.get("C-1", ("epoch-2", BASIS[1]), now=within) is None  # another generation
    # The same version with other data (a citizen erased, or expired, and written again starts over).
    assert cache.get("C-1", ("epoch-1", [3, [], ["fact"], ["event-2", "event-1"]]), now=within) is None
    assert cache.get("C-1", ("epoch-1", [3, BASIS[1][1], ["fact"], ["event-3"]]), now=within) is None
    # Outside the interval over which its summary holds, before it as after it.
    assert cache.get("C-1", BASIS, now=T0 + timedelta(hours=1)) is None
    assert cache.get("C-1", BASIS, now=T0 - timedelta(seconds=1)) is None


def test_a_summary_that_never_changes_with_time_holds_from_then_on() -> None:
    cache: DocumentCache[str] = DocumentCache(max_age=LONG)
    cache.put("C-1", BASIS, "document", size=10, since=T0, until=None)
    assert cache.get("C-1", BASIS, now=T0 + timedelta(days=400)) == "document"


def test_the_least_recently_served_go_first_when_over_budget_and_forget_drops() -> None:
    # Room for three entries of 10 bytes each, with what every entry costs besides.
    cache: DocumentCache[str] = DocumentCache(max_bytes=3 * (10 + ENTRY_OVERHEAD_BYTES), max_age=LONG)
    for citizen in ("C-1", "C-2", "C-3"):
        cache.put(citizen, BASIS, citizen, size=10, since=T0, until=None)
    assert cache.get("C-1", BASIS, now=T0) == "C-1"  # now the most recently served
    cache.put("C-4", BASIS, "C-4", size=10, since=T0, until=None)
    assert [cache.get(c, BASIS, now=T0) for c in ("C-1", "C-2", "C-3", "C-4")] == ["C-1", None, "C-3", "C-4"]
    cache.put(
        "C-5", BASIS, "too big", size=3 * (10 + ENTRY_OVERHEAD_BYTES), since=T0, until=None
    )  # never kept
    assert cache.get("C-5", BASIS, now=T0) is None
    cache.put("C-3", BASIS, "replaced", size=10, since=T0, until=None)
    cache.forget("C-1")
    assert len(cache) == 2
    assert cache.get("C-3", BASIS, now=T0) == "replaced"


def test_an_entry_is_served_and_kept_no_longer_than_the_maximum_age() -> None:
    cache: DocumentCache[str] = DocumentCache()
    cache.put("C-1", BASIS, "document", size=10, since=T0, until=None)
    cache.put("C-2", BASIS, "document", size=10, since=T0 + timedelta(minutes=1), until=None)
    assert cache.get("C-1", BASIS, now=T0 + MAX_AGE - timedelta(seconds=1)) == "document"
    assert cache.get("C-1", BASIS, now=T0 + MAX_AGE) is None
    assert len(cache) == 1  # dropped, not only refused
    # Unread entries are removed by the sweep once they are as old; younger ones stay.
    cache.put("C-1", BASIS, "document", size=10, since=T0, until=None)
    cache.drop_older_than(T0 + MAX_AGE)
    assert len(cache) == 1
    assert cache.get("C-2", BASIS, now=T0 + MAX_AGE) == "document"
    cache.clear()
    assert len(cache) == 0
