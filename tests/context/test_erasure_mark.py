"""The erasure mark, against the real Redis: an erased citizen's earlier events never bring them back,
whatever brings those events after the erasure (another partition, a redrive, a rebuild's replay)."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
import redis
import redis.asyncio as aioredis

from context.identity import IdentifierKind, normalise, recent_numbers
from context.keys import CitizenKeys, erasure_mark_key, identifier_key
from context.settings import TimelineSettings
from context.store import CitizenEraser, ProjectionWriter, erasure_mark_expiry
from context.timeline import time_score
from models.events import CloudEvent
from models.taxonomy import ERASURE_TYPE
from tests.factories import example_data, make_event, writes_for

NOW = datetime.now(UTC)
PHONE = (IdentifierKind.phone, "+447700900321")


def profile(citizen_id: str, *, minutes_ago: float) -> CloudEvent:
    data = example_data("profile.updated", phone="07700 900321", email=None)
    return make_event(citizen_id, type_="profile.updated", data=data, minutes_ago=minutes_ago, now=NOW)


def erasure_record(citizen_id: str) -> CloudEvent:
    """A citizen's `citizen.erased` record, timed ten minutes ago."""
    return make_event(citizen_id, type_=ERASURE_TYPE, data={}, minutes_ago=10, now=NOW)


def erased_by_the_api(writer: ProjectionWriter, citizen_id: str) -> CloudEvent:
    """The citizen's erasure record, once the API's own step has erased them in the served generation."""
    erasure = erasure_record(citizen_id)
    writer.erase(citizen_id, epoch=writer.current_epoch(), erased_at=time_score(erasure.time))
    return erasure


def test_an_earlier_event_applied_after_the_erasure_changes_nothing_not_even_what_it_teaches(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    erasure = erasure_record("C-MARK-1")
    writer.apply_batch(writes_for(make_event("C-MARK-1", minutes_ago=30, now=NOW), erasure))
    epoch = writer.current_epoch()

    # Read later from another partition, or redriven: both happened before the erasure.
    late = [make_event("C-MARK-1", minutes_ago=20, now=NOW), profile("C-MARK-1", minutes_ago=15)]
    results = writer.apply_batch(writes_for(*late))

    assert [result.applied for result in results] == [False, False]
    keys = CitizenKeys(key_prefix, epoch, "C-MARK-1")
    assert [key for key in keys.all() if redis_client.exists(key)] == []
    assert writer.resolve([PHONE], epoch=epoch) == {}


def test_a_rebuild_replaying_the_citizens_earlier_events_into_a_new_generation_applies_none(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    # The erasure landed while a rebuild was still replaying the citizen's earlier events.
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    writer.erase("C-MARK-2", epoch=writer.current_epoch(), erased_at=time_score(NOW - timedelta(minutes=1)))
    results = writer.apply_batch(writes_for(profile("C-MARK-2", minutes_ago=5)), epoch="rebuilding")

    assert [result.applied for result in results] == [False]
    keys = CitizenKeys(key_prefix, "rebuilding", "C-MARK-2")
    assert [key for key in keys.all() if redis_client.exists(key)] == []


def test_a_citizen_who_comes_back_after_the_erasure_is_applied_again(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    writer.erase("C-MARK-3", epoch=writer.current_epoch(), erased_at=time_score(NOW - timedelta(minutes=10)))
    (result,) = writer.apply_batch(writes_for(make_event("C-MARK-3", minutes_ago=5, now=NOW)))
    assert (result.applied, result.version) == (True, 1)


def test_an_earlier_erasure_replayed_keeps_the_later_mark_and_its_expiry(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    timeline = TimelineSettings()
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=timeline)
    later, earlier = time_score(NOW - timedelta(minutes=1)), time_score(NOW - timedelta(days=3))
    writer.erase("C-MARK-4", epoch=writer.current_epoch(), erased_at=later)
    writer.erase("C-MARK-4", epoch=writer.current_epoch(), erased_at=earlier)  # a rebuild replays it

    mark = erasure_mark_key(key_prefix, "C-MARK-4")
    assert int(cast(str, redis_client.get(mark))) == later
    assert redis_client.expiretime(mark) == erasure_mark_expiry(later, timeline)


def test_a_mark_lasts_the_age_cap_and_the_inactivity_expiry_after_the_erasure() -> None:
    timeline = TimelineSettings(max_age_days=90, inactivity_expiry_days=30)
    erased_at = time_score(datetime(2026, 1, 1, tzinfo=UTC))
    expected = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=120)
    assert erasure_mark_expiry(erased_at, timeline) == int(expected.timestamp())


async def test_the_apis_erasure_marks_the_citizen_as_of_its_time(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    writer.apply_batch(writes_for(make_event("C-MARK-5", minutes_ago=30, now=NOW)))
    at = NOW - timedelta(minutes=2)

    assert await CitizenEraser(async_redis, prefix=key_prefix).erase("C-MARK-5", at=at) > 0

    assert int(cast(str, redis_client.get(erasure_mark_key(key_prefix, "C-MARK-5")))) == time_score(at)
    (result,) = writer.apply_batch(writes_for(make_event("C-MARK-5", minutes_ago=3, now=NOW)))
    assert not result.applied


def test_an_event_held_from_a_clock_ahead_moves_the_mark_on_to_its_time(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    # The decoder accepts events up to a day ahead of its clock; replayed after an erasure timed before
    # them, they came back.
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    ahead = make_event("C-MARK-6", minutes_ago=-60, now=NOW)
    writer.apply_batch(writes_for(ahead))
    writer.erase("C-MARK-6", epoch=writer.current_epoch(), erased_at=time_score(NOW))

    assert int(cast(str, redis_client.get(erasure_mark_key(key_prefix, "C-MARK-6")))) == time_score(
        ahead.time
    )
    (replayed,) = writer.apply_batch(writes_for(ahead), epoch="rebuilding")
    assert not replayed.applied


def test_an_erasure_read_back_from_the_topic_keeps_the_contacts_made_since(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    # The API erased the citizen when it recorded the erasure. A contact they made since, from another
    # partition, was applied before the consumer read the erasure's record back: erasing again removed it
    # and moved the mark on to it, so that no rebuild would ever apply it again.
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    erasure = erasure_record("C-MARK-7")
    writer.apply_batch(writes_for(make_event("C-MARK-7", minutes_ago=30, now=NOW)))
    erased_at = time_score(erasure.time)
    writer.erase_everywhere("C-MARK-7", epoch=writer.current_epoch(), erased_at=erased_at)
    since = make_event("C-MARK-7", minutes_ago=5, now=NOW)
    writer.apply_batch(writes_for(since))

    writer.apply_batch(writes_for(erasure))  # the consumer reads the record back
    writer.apply_batch(writes_for(erasure, since), epoch="rebuilding", publish=False)  # and a rebuild

    mark = erasure_mark_key(key_prefix, "C-MARK-7")
    assert int(cast(str, redis_client.get(mark))) == erased_at
    for epoch in (writer.current_epoch(), "rebuilding"):
        timeline = CitizenKeys(key_prefix, epoch, "C-MARK-7").timeline
        assert redis_client.zrange(timeline, 0, -1) == [since.dedup_key], epoch


def test_an_erasure_the_api_recorded_but_did_not_carry_out_is_carried_out_by_its_record(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    # The API recorded the erasure in Kafka, then failed before erasing Redis: the record does it.
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    writer.erase("C-MARK-8", epoch=writer.current_epoch(), erased_at=time_score(NOW - timedelta(days=3)))
    writer.apply_batch(writes_for(make_event("C-MARK-8", minutes_ago=30, now=NOW)))
    erasure = erasure_record("C-MARK-8")

    writer.apply_batch(writes_for(erasure))

    keys = CitizenKeys(key_prefix, writer.current_epoch(), "C-MARK-8")
    assert [key for key in keys.all() if redis_client.exists(key)] == []
    mark = erasure_mark_key(key_prefix, "C-MARK-8")
    assert int(cast(str, redis_client.get(mark))) == time_score(erasure.time)


# Marks last 120 days here: the age cap (90) and the inactivity expiry (30).
MARKS_LAST_120_DAYS = TimelineSettings(max_age_days=90, inactivity_expiry_days=30)


def erasure_days_ago(citizen_id: str, days: float) -> CloudEvent:
    return make_event(citizen_id, type_=ERASURE_TYPE, data={}, minutes_ago=days * 24 * 60, now=NOW)


def replaying(redis_client: "redis.Redis", key_prefix: str, *, publish: bool) -> tuple[ProjectionWriter, str]:
    """A writer whose marks last 120 days, and the generation it writes as the consumer (the served one,
    `publish`) or as a rebuild (one of its own)."""
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=MARKS_LAST_120_DAYS)
    return writer, writer.current_epoch() if publish else "rebuilding"


@pytest.mark.parametrize("publish", [True, False], ids=["consumer", "rebuild"])
def test_an_erasure_older_than_its_mark_would_last_keeps_the_contacts_made_since(
    redis_client: "redis.Redis", key_prefix: str, publish: bool
) -> None:
    # A genuine record replayed (published again, or kept past the age cap) after its mark expired: all it
    # covered has aged out, so erasing would only remove what the citizen did since.
    writer, epoch = replaying(redis_client, key_prefix, publish=publish)
    since = make_event("C-MARK-OLD", minutes_ago=5, now=NOW)
    writer.apply_batch(writes_for(since), epoch=epoch, publish=publish)
    old = erasure_days_ago("C-MARK-OLD", 121)

    writer.apply_batch(writes_for(old), epoch=epoch, publish=publish)

    timeline_key = CitizenKeys(key_prefix, epoch, "C-MARK-OLD").timeline
    assert redis_client.zrange(timeline_key, 0, -1) == [since.dedup_key]
    assert redis_client.get(erasure_mark_key(key_prefix, "C-MARK-OLD")) is None


@pytest.mark.parametrize("publish", [True, False], ids=["consumer", "rebuild"])
def test_an_erasure_older_than_its_mark_would_last_still_erases_what_outlives_the_age_cap(
    redis_client: "redis.Redis", key_prefix: str, publish: bool
) -> None:
    # A topic kept longer than the age cap, replayed: the citizen's profile and identifiers from before the
    # erasure outlive the cap (a person's needs do not expire with the event), so its record erases them.
    writer, epoch = replaying(redis_client, key_prefix, publish=publish)
    old_profile = profile("C-MARK-OLDER", minutes_ago=125 * 24 * 60)
    old = erasure_days_ago("C-MARK-OLDER", 121)
    writer.apply_batch(writes_for(old_profile), epoch=epoch, publish=publish)
    assert writer.resolve([PHONE], epoch=epoch)[PHONE].citizen == "C-MARK-OLDER"  # held, over the cap

    writer.apply_batch(writes_for(old), epoch=epoch, publish=publish)

    keys = CitizenKeys(key_prefix, epoch, "C-MARK-OLDER")
    assert [key for key in keys.all() if redis_client.exists(key)] == []
    assert writer.resolve([PHONE], epoch=epoch) == {}


def test_an_erasure_still_within_its_marks_lifetime_is_carried_out_by_its_record(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    # The same record a day younger: its mark would still last, so the record erases (as when the API
    # recorded it but did not carry it out).
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=MARKS_LAST_120_DAYS)
    writer.apply_batch(writes_for(make_event("C-MARK-YOUNG", minutes_ago=5, now=NOW)))
    record = erasure_days_ago("C-MARK-YOUNG", 119)

    writer.apply_batch(writes_for(record))

    keys = CitizenKeys(key_prefix, writer.current_epoch(), "C-MARK-YOUNG")
    assert [key for key in keys.all() if redis_client.exists(key)] == []


def test_a_rebuild_that_replays_the_record_first_leaves_the_served_generation_to_the_consumer(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    # The API recorded the erasure, then failed before erasing Redis; a rebuild replayed the record before
    # the consumer read it. The rebuild's erasure of its own generation set the mark: the consumer must
    # still erase the served generation, which holds the citizen's earlier events.
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    writer.apply_batch(
        writes_for(profile("C-MARK-9", minutes_ago=30), make_event("C-MARK-9", minutes_ago=20))
    )
    served = writer.current_epoch()
    erasure = erasure_record("C-MARK-9")

    writer.apply_batch(writes_for(erasure), epoch="rebuilding", publish=False)
    assert redis_client.get(erasure_mark_key(key_prefix, "C-MARK-9")) is not None
    writer.apply_batch(writes_for(erasure))

    keys = CitizenKeys(key_prefix, served, "C-MARK-9")
    assert [key for key in keys.all() if redis_client.exists(key)] == []
    assert writer.resolve([PHONE], epoch=served) == {}


def long_ago(event: CloudEvent) -> CloudEvent:
    """`event`, timed before the age cap: it joins no timeline, but what it teaches and sets is kept."""
    return event.model_copy(update={"time": NOW - timedelta(days=TimelineSettings().max_age_days + 5)})


@pytest.mark.parametrize(
    "earlier",
    [
        pytest.param(lambda: profile("C-MARK-10", minutes_ago=30), id="timeline"),
        pytest.param(
            lambda: long_ago(
                make_event(
                    "C-MARK-10",
                    type_="profile.updated",
                    data=example_data("profile.updated", phone=None, email=None),
                )
            ),
            id="profile-field",
        ),
        pytest.param(
            lambda: long_ago(make_event("C-MARK-10").model_copy(update={"citizenphone": "07700 900321"})),
            id="index-entry",
        ),
    ],
)
def test_a_generation_an_erasure_failed_to_reach_is_erased_by_its_record(
    redis_client: "redis.Redis", key_prefix: str, earlier: Callable[[], CloudEvent]
) -> None:
    # The served generation was erased (so marked), then the erasure failed before the generation a rebuild
    # holds unserved: the record, read back, erases there whatever an earlier event left (an event of the
    # timeline, a profile field, an index entry), and keeps the served generation's contact since.
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    writer.hold_unserved("held")
    writer.apply_batch(writes_for(earlier()), epoch="held")
    erasure = erased_by_the_api(writer, "C-MARK-10")
    since = make_event("C-MARK-10", minutes_ago=5, now=NOW)
    writer.apply_batch(writes_for(since))
    held = CitizenKeys(key_prefix, "held", "C-MARK-10")
    assert [key for key in held.all() if redis_client.exists(key)] != []

    writer.apply_batch(writes_for(erasure))

    assert [key for key in held.all() if redis_client.exists(key)] == []
    assert writer.resolve([PHONE], epoch="held") == {}
    served = CitizenKeys(key_prefix, writer.current_epoch(), "C-MARK-10")
    assert redis_client.zrange(served.timeline, 0, -1) == [since.dedup_key]
    mark = int(cast(str, redis_client.get(erasure_mark_key(key_prefix, "C-MARK-10"))))
    assert mark == time_score(erasure.time)


def test_an_erasure_read_back_empties_the_recent_numbers_even_when_nothing_is_left_to_erase(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    # context/identity.py keeps recent numbers' normalised forms; the consumer's copy must go too.
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    erasure = erased_by_the_api(writer, "C-MARK-11")
    normalise(IdentifierKind.phone, "07700 900321", default_region="GB")
    assert recent_numbers() > 0

    writer.apply_batch(writes_for(erasure))

    assert recent_numbers() == 0


@pytest.mark.parametrize("entry_now", ["taken-over-before-the-mark", "expired"])
def test_an_identifier_the_set_lists_from_before_the_mark_counts_whatever_its_entry_says_now(
    redis_client: "redis.Redis", key_prefix: str, entry_now: str
) -> None:
    # The erasure failed before a held generation, where the set still lists the citizen's number, whose
    # entry someone else has taken over (before the erasure) or which has expired: the set is theirs, and
    # goes with the rest.
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    writer.hold_unserved("held")
    named = make_event("C-MARK-12").model_copy(update={"citizenphone": "07700 900321"})
    writer.apply_batch(writes_for(long_ago(named)), epoch="held")
    entry = identifier_key(key_prefix, "held", IdentifierKind.phone, "+447700900321")
    if entry_now == "expired":
        redis_client.delete(entry)
    else:
        writer.apply_batch(writes_for(profile("D-MARK-12", minutes_ago=12)), epoch="held")
    erasure = erased_by_the_api(writer, "C-MARK-12")
    held = CitizenKeys(key_prefix, "held", "C-MARK-12")
    assert redis_client.smembers(held.identifiers) == {"phone:+447700900321"}

    writer.apply_batch(writes_for(erasure))

    assert not redis_client.exists(held.identifiers)


def test_a_number_the_citizen_gave_since_the_erasure_that_someone_else_holds_keeps_their_contacts(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    # After the erasure, the citizen gave a household number that another citizen then took over: their
    # set lists it, its entry names the other. The record read back must not take that for data from
    # before the erasure, and remove the contacts they made since.
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    erasure = erased_by_the_api(writer, "C-MARK-14")
    since = profile("C-MARK-14", minutes_ago=5)
    writer.apply_batch(writes_for(since, profile("D-MARK-14", minutes_ago=3)))

    writer.apply_batch(writes_for(erasure))

    keys = CitizenKeys(key_prefix, writer.current_epoch(), "C-MARK-14")
    assert redis_client.zrange(keys.timeline, 0, -1) == [since.dedup_key]


def test_a_generation_erased_by_the_record_leaves_no_other_keeping_what_it_lost(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    # The served generation was erased, a held one not; a contact since reached both. Erasing the held
    # one moves the mark on to that contact: the served one must not keep it either, or the switch to the
    # held one would lose it there only, and the two would disagree.
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    writer.hold_unserved("held")
    writer.apply_batch(writes_for(make_event("C-MARK-13", minutes_ago=30, now=NOW)), epoch="held")
    erasure = erased_by_the_api(writer, "C-MARK-13")
    since = make_event("C-MARK-13", minutes_ago=5, now=NOW)
    writer.apply_batch(writes_for(since))
    writer.apply_batch(writes_for(since), epoch="held")

    writer.apply_batch(writes_for(erasure))

    for epoch in (writer.current_epoch(), "held"):
        keys = CitizenKeys(key_prefix, epoch, "C-MARK-13")
        assert [key for key in keys.all() if redis_client.exists(key)] == [], epoch
