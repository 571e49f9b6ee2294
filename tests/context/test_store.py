"""The atomic, idempotent write path and the consistent reads, against the real Redis."""

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import redis
import redis.asyncio as aioredis

import context
from context.identity import IdentifierKind, normalise, recent_numbers
from context.keys import CitizenKeys, epoch_key, identifier_key
from context.service import EventWrite
from context.settings import TimelineSettings
from context.store import (
    EVENTS_PER_CALL,
    MAX_GENERATION_SWITCHES,
    CitizenEraser,
    ContextReader,
    GenerationSwitching,
    IndexEntry,
    ProjectionWriter,
    change_of,
    keep_alive_period,
    published_change,
)
from context.streamed import Command
from context.timeline import order_timeline, time_score
from models.context import CitizenContext, Profile
from models.taxonomy import ERASURE_TYPE
from tests.factories import example_data, make_event, writes_for

NOW = datetime.now(UTC)


def writer_for(client: "redis.Redis", prefix: str, **limits: float) -> ProjectionWriter:
    return ProjectionWriter(client, prefix=prefix, timeline=TimelineSettings.model_validate(limits))


async def test_events_are_served_newest_first_whatever_the_arrival_order(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    writer = writer_for(redis_client, key_prefix)
    events = [make_event("C-1", minutes_ago=m, now=NOW) for m in (5, 50, 1, 20)]
    results = writer.apply_batch(writes_for(*events))
    assert [r.version for r in results] == [1, 2, 3, 4]
    context = await ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings()).context("C-1")
    assert context.version == 4
    assert context.timeline == order_timeline(events)


async def test_applying_the_same_event_twice_changes_nothing(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    writer = writer_for(redis_client, key_prefix)
    event = make_event("C-2", now=NOW)
    first = writer.apply_batch(writes_for(event))
    epoch = writer.current_epoch()
    keys = CitizenKeys(key_prefix, epoch, "C-2")
    before = {key: redis_client.dump(key) for key in keys.all()}
    again = writer.apply_batch(writes_for(event, event))
    assert [r.applied for r in first + again] == [True, False, False]
    assert [r.version for r in again] == [1, 1]
    assert {key: redis_client.dump(key) for key in keys.all()} == before


async def test_count_cap_drops_the_oldest_and_a_too_old_late_event_is_no_change(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    writer = writer_for(redis_client, key_prefix, max_events=3)
    events = [make_event("C-3", minutes_ago=m, now=NOW) for m in (40, 30, 20, 10)]
    writer.apply_batch(writes_for(*events))
    late = make_event("C-3", minutes_ago=90, now=NOW)
    [result] = writer.apply_batch(writes_for(late))
    assert not result.applied
    context = await ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings()).context("C-3")
    assert context.timeline == order_timeline(events)[:3]
    assert context.version == 4


async def test_age_cap_drops_events_older_than_max_age(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    writer = writer_for(redis_client, key_prefix, max_age_days=1)
    recent = make_event("C-4", minutes_ago=60, now=NOW)
    too_old = make_event("C-4", minutes_ago=60 * 30, now=NOW)
    results = writer.apply_batch(writes_for(recent, too_old), now=NOW)
    assert [r.applied for r in results] == [True, False]
    # Time passes: yesterday's event now falls outside the window when the next one arrives.
    later = NOW + timedelta(hours=24)
    writer.apply_batch(writes_for(make_event("C-4", now=later)), now=later)
    context = await ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings()).context("C-4")
    assert recent not in context.timeline
    assert len(context.timeline) == 1


def test_a_citizens_keys_expire_after_inactivity(redis_client: "redis.Redis", key_prefix: str) -> None:
    writer = writer_for(redis_client, key_prefix, inactivity_expiry_days=2)
    writer.apply_batch(
        writes_for(make_event("C-5", now=NOW), make_event("C-5", type_="profile.updated", now=NOW))
    )
    keys = CitizenKeys(key_prefix, writer.current_epoch(), "C-5")
    assert redis_client.exists(*keys.all()) == len(keys.all())
    expiry, period = 2 * 86400, keep_alive_period(2 * 86400)
    for key in keys.all():
        # Never sooner than the expiry after the latest event, at most one keep-alive period later. The
        # identifiers set outlives the index entries it lists, which outlive the citizen's keys.
        if key == keys.identifiers:
            assert expiry + period < redis_client.ttl(key) <= 2 * expiry + period
        else:
            assert expiry - 5 <= redis_client.ttl(key) <= expiry + period


def test_keys_created_later_in_a_period_expire_with_the_others(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    writer = writer_for(redis_client, key_prefix, inactivity_expiry_days=2)
    # A letter has no summary fact and sets no profile field: the facts and profile hashes come later.
    writer.apply_batch(writes_for(make_event("C-5b", type_="letter.sent", minutes_ago=2, now=NOW)), now=NOW)
    keys = CitizenKeys(key_prefix, writer.current_epoch(), "C-5b")
    assert redis_client.exists(keys.facts, keys.profile, keys.profile_stamps) == 0
    writer.apply_batch(writes_for(make_event("C-5b", minutes_ago=1, now=NOW)), now=NOW)
    writer.apply_batch(writes_for(make_event("C-5b", type_="profile.updated", now=NOW)), now=NOW)
    citizen_keys = [key for key in keys.all() if key != keys.identifiers]
    assert redis_client.exists(*citizen_keys) == len(citizen_keys)
    expire_times = {redis_client.expiretime(key) for key in citizen_keys}
    assert len(expire_times) == 1
    assert expire_times.pop() >= int(NOW.timestamp()) + 2 * 86400


def test_expiries_are_moved_on_once_per_period(redis_client: "redis.Redis", key_prefix: str) -> None:
    writer = writer_for(redis_client, key_prefix, inactivity_expiry_days=2)
    expiry, period = 2 * 86400, keep_alive_period(2 * 86400)
    writer.apply_batch(writes_for(make_event("C-5c", minutes_ago=1, now=NOW)), now=NOW)
    keys = CitizenKeys(key_prefix, writer.current_epoch(), "C-5c")
    redis_client.expire(keys.timeline, 100)  # someone shortened it (or time passed)
    writer.apply_batch(writes_for(make_event("C-5c", now=NOW)), now=NOW)
    assert redis_client.ttl(keys.timeline) <= 100  # same period: nothing moved
    later = NOW + timedelta(seconds=period)
    writer.apply_batch(writes_for(make_event("C-5c", now=later)), now=later)
    # The next period's first change moves every key to its end plus the expiry.
    end_of_period = (int(later.timestamp()) // period + 1) * period
    assert redis_client.expiretime(keys.timeline) == end_of_period + expiry
    assert redis_client.expiretime(keys.meta) == end_of_period + expiry


async def test_changes_since_returns_exactly_the_missed_changes(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    writer = writer_for(redis_client, key_prefix, change_log_length=3)
    events = [make_event("C-6", minutes_ago=10 - m, now=NOW) for m in range(5)]
    writer.apply_batch(writes_for(*events))
    reader = ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings())
    epoch = await reader.current_epoch()
    missed = await reader.changes_since("C-6", epoch=epoch, version=3)
    assert missed is not None
    assert [c.version for c in missed] == [4, 5]
    assert [c.event for c in missed] == events[3:]
    assert await reader.changes_since("C-6", epoch=epoch, version=5) == []
    # Version 1's successors are no longer all held (only the last 3 are): the caller must re-sync.
    assert await reader.changes_since("C-6", epoch=epoch, version=1) is None


async def test_a_resumed_change_carries_its_event_and_the_profile_it_set(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    writer = writer_for(redis_client, key_prefix)
    event = make_event("C-6b", minutes_ago=2, now=NOW)
    profile = make_event("C-6b", type_="profile.updated", now=NOW)
    writer.apply_batch(writes_for(event, profile))
    reader = ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings())
    epoch = await reader.current_epoch()
    missed = await reader.changes_since("C-6b", epoch=epoch, version=0)
    context = await reader.context("C-6b")
    assert missed is not None
    assert [(c.citizen_id, c.epoch, c.version) for c in missed] == [("C-6b", epoch, 1), ("C-6b", epoch, 2)]
    assert (missed[0].event, missed[0].profile) == (event, None)
    assert missed[1].profile == context.profile != missed[0].profile


async def test_the_change_log_keeps_no_earlier_profile_value(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    # A flag set by an update past the age cap (which joins no timeline), then withdrawn: the log kept each
    # profile as it stood, so the withdrawn flag stayed in Redis, in no timeline and out of the export.
    writer = writer_for(redis_client, key_prefix)
    flagged = {"vulnerability_flags": ["domestic-abuse"], "preferred_language": "pl"}
    cleared = {"vulnerability_flags": [], "preferred_language": "en"}
    updates = [
        make_event(
            "C-6e",
            type_="profile.updated",
            minutes_ago=minutes_ago,
            now=NOW,
            data={"channel": "system", "summary": "Profile updated", **fields},
        )
        for minutes_ago, fields in ((200 * 24 * 60, flagged), (1, cleared))
    ]
    writer.apply_batch(writes_for(*updates))
    epoch = writer.current_epoch()
    log = cast(list[str], redis_client.lrange(CitizenKeys(key_prefix, epoch, "C-6e").changes, 0, -1))
    assert len(log) == 2
    assert not [entry for entry in log if "domestic-abuse" in entry or '"pl"' in entry or '"en"' in entry]
    # One line feed each: an API of the earlier form (which read two, the profile between them) takes the
    # log for one it cannot resume from, and sends a snapshot, rather than failing on a mark it cannot read.
    assert [entry.count("\n") for entry in log] == [1, 1]
    # A stream that resumes replays both changes, each with the profile as it stands now.
    reader = ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings())
    missed = await reader.changes_since("C-6e", epoch=epoch, version=0)
    context = await reader.context("C-6e")
    assert missed is not None
    assert [(c.version, c.event) for c in missed] == [(1, None), (2, updates[1])]
    assert [c.profile for c in missed] == [context.profile, context.profile]
    assert (context.profile.preferred_language, context.profile.vulnerability_flags) == ("en", [])


async def test_changes_whose_event_left_the_timeline_cannot_be_resumed(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    writer = writer_for(redis_client, key_prefix, max_events=2)
    events = [make_event("C-6c", minutes_ago=10 - m, now=NOW) for m in range(3)]
    writer.apply_batch(writes_for(*events))
    reader = ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings())
    epoch = await reader.current_epoch()
    # Change 1's event was dropped by the count cap: replaying it is impossible, the stream re-syncs.
    assert await reader.changes_since("C-6c", epoch=epoch, version=0) is None
    missed = await reader.changes_since("C-6c", epoch=epoch, version=1)
    assert missed is not None
    assert [c.event for c in missed] == events[1:]


async def test_a_change_log_of_whole_changes_is_not_resumed_from(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    writer = writer_for(redis_client, key_prefix)
    writer.apply_batch(writes_for(make_event("C-6d", now=NOW)))
    epoch = writer.current_epoch()
    # A log written by an earlier version of the write path (each change as its whole JSON).
    redis_client.lpush(CitizenKeys(key_prefix, epoch, "C-6d").changes, '{"citizen_id":"C-6d","version":0}')
    reader = ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings())
    assert await reader.changes_since("C-6d", epoch=epoch, version=0) is None
    # Also as published (the change, a line feed, then the event).
    changes = CitizenKeys(key_prefix, epoch, "C-6d").changes
    redis_client.delete(changes)
    redis_client.rpush(changes, '{"citizen_id":"C-6d","version":1}\n{"id":"e-1"}')
    assert await reader.changes_since("C-6d", epoch=epoch, version=0) is None


async def test_a_change_log_of_the_earlier_form_is_resumed_from_with_the_profile_as_it_stands(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    # Written before this form: each change's profile as it stood, between two line feeds.
    writer = writer_for(redis_client, key_prefix)
    event = make_event("C-6f", minutes_ago=2, now=NOW)
    update = make_event(
        "C-6f",
        type_="profile.updated",
        minutes_ago=1,
        now=NOW,
        data={"channel": "system", "summary": "Profile updated", "preferred_language": "cy"},
    )
    writer.apply_batch(writes_for(event, update))
    epoch = writer.current_epoch()
    changes = CitizenKeys(key_prefix, epoch, "C-6f").changes
    redis_client.delete(changes)
    redis_client.rpush(
        changes, f"1\n\n{event.dedup_key}", f'2\n{{"preferred_language":"pl"}}\n{update.dedup_key}'
    )
    reader = ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings())
    missed = await reader.changes_since("C-6f", epoch=epoch, version=0)
    assert missed is not None
    assert [(c.version, c.event) for c in missed] == [(1, event), (2, update)]
    assert missed[0].profile is None
    assert missed[1].profile is not None
    assert missed[1].profile.preferred_language == "cy"  # as it stands, not as the entry kept it


async def test_every_change_is_published_with_its_version(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    reader = ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings())
    async with async_redis.pubsub() as pubsub:
        await pubsub.subscribe(reader.channel)
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        event = make_event("C-7", now=NOW)
        writer_for(redis_client, key_prefix).apply_batch(writes_for(event, event))
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
        assert message is not None
        change = change_of(*published_change(message["data"]))
        assert (change.citizen_id, change.version, change.event, change.profile) == ("C-7", 1, event, None)
        assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.3) is None


async def test_a_profile_change_is_published_with_the_whole_profile(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    reader = ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings())
    said = {"channel": "phone", "summary": "Profile"}
    language = make_event(
        "C-7p", type_="profile.updated", minutes_ago=2, now=NOW, data={**said, "preferred_language": "cy"}
    )
    needs = make_event(
        "C-7p",
        type_="profile.updated",
        minutes_ago=1,
        now=NOW,
        data={**said, "communication_needs": ["bsl-interpreter"]},
    )
    writer = writer_for(redis_client, key_prefix)
    writer.apply_batch(writes_for(language))
    async with async_redis.pubsub() as pubsub:
        await pubsub.subscribe(reader.channel)
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        writer.apply_batch(writes_for(needs))
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
    assert message is not None
    change = change_of(*published_change(message["data"]))
    assert change.event == needs
    # The whole profile, the field set before included, not only what this event changed.
    assert change.profile == Profile(preferred_language="cy", communication_needs=["bsl-interpreter"])
    assert change.profile == (await reader.context("C-7p")).profile


async def test_unknown_citizen_is_empty_at_version_zero(
    async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    context = await ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings()).context(
        "C-none"
    )
    assert (context.version, context.timeline) == (0, [])


def test_identifier_entries_are_kept_alive_with_their_citizen_once_per_period(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    writer = writer_for(redis_client, key_prefix, inactivity_expiry_days=2)
    expiry, period = 2 * 86400, keep_alive_period(2 * 86400)
    profile = make_event("C-8", type_="profile.updated", now=NOW)
    writer.apply_batch(writes_for(profile), now=NOW)
    epoch = writer.current_epoch()
    entries = [
        identifier_key(key_prefix, epoch, kind, value) for kind, value in writes_for(profile)[0].identifiers
    ]
    assert entries
    # Someone shortened them (or time passed): the next event of the next period extends them again.
    for entry in entries:
        redis_client.expire(entry, 100)
    writer.apply_batch(writes_for(make_event("C-8", now=NOW)), now=NOW)
    assert all(redis_client.ttl(entry) <= 100 for entry in entries)  # same period: no extra work
    later = NOW + timedelta(seconds=period)
    writer.apply_batch(writes_for(make_event("C-8", now=later)), now=later)
    citizen_expires = redis_client.expiretime(CitizenKeys(key_prefix, epoch, "C-8").timeline)
    assert citizen_expires >= int(later.timestamp()) + expiry
    for entry in entries:
        # One period longer than the citizen's own keys: never shorter.
        assert redis_client.expiretime(entry) == citizen_expires + period


def test_a_keep_alive_a_failure_cut_short_is_asked_for_again_by_the_batch_tried_again(
    redis_client: "redis.Redis", key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The apply script marked the period's keep-alive done as it handed the entries back: a batch that
    # failed before extending them (Redis lost in between), tried again, found nothing due, and the entries
    # kept the expiry of the citizen's last active period, long before the citizen's own keys.
    writer = writer_for(redis_client, key_prefix, inactivity_expiry_days=2)
    period = keep_alive_period(2 * 86400)
    profile = make_event("C-8k", type_="profile.updated", now=NOW)
    writer.apply_batch(writes_for(profile), now=NOW)
    epoch = writer.current_epoch()
    entries = [
        identifier_key(key_prefix, epoch, kind, value) for kind, value in writes_for(profile)[0].identifiers
    ]
    later = NOW + timedelta(seconds=3 * period)  # inactive for two periods in between
    event = make_event("C-8k", now=later)
    extend = writer._keep_alive

    def lost(*args: Any, **kwargs: Any) -> None:
        raise redis.ConnectionError("lost between the apply script and the keep-alive")

    monkeypatch.setattr(writer, "_keep_alive", lost)
    with pytest.raises(redis.ConnectionError):
        writer.apply_batch(writes_for(event), now=later)
    monkeypatch.setattr(writer, "_keep_alive", extend)
    (again,) = writer.apply_batch(writes_for(event), now=later)  # the consumer's retry

    assert not again.applied  # a duplicate now, which asks for the keep-alive all the same
    citizen_expires = redis_client.expiretime(CitizenKeys(key_prefix, epoch, "C-8k").timeline)
    assert [redis_client.expiretime(entry) for entry in entries] == [citizen_expires + period] * len(entries)
    # Done for the period: the same batch tried once more asks for nothing.
    for entry in entries:
        redis_client.expire(entry, 100)
    writer.apply_batch(writes_for(event), now=later)
    assert all(redis_client.ttl(entry) <= 100 for entry in entries)


def test_an_event_that_changes_nothing_extends_no_entry_past_the_identifiers_set(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    # A redelivered duplicate, or an event older than the age cap, in a later period moves neither the
    # citizen's keys nor their identifiers set on: extending the entries then would let them outlive the
    # set, through which an erasure finds them, and keep the number pointing at an erased citizen.
    writer = writer_for(redis_client, key_prefix, inactivity_expiry_days=2, max_age_days=30)
    period = keep_alive_period(2 * 86400)
    profile, call = make_event("C-8d", type_="profile.updated", now=NOW), make_event("C-8d", now=NOW)
    writer.apply_batch(writes_for(profile, call), now=NOW)
    epoch = writer.current_epoch()
    entries = [
        identifier_key(key_prefix, epoch, kind, value) for kind, value in writes_for(profile)[0].identifiers
    ]
    expiries = [redis_client.expiretime(entry) for entry in entries]
    later = NOW + timedelta(seconds=3 * period)
    too_old = make_event("C-8d", minutes_ago=31 * 24 * 60, now=later)

    # (A duplicate that teaches, as a profile update does, extends its entries and the set together.)
    results = writer.apply_batch(writes_for(call, too_old), now=later)

    assert [result.applied for result in results] == [False, False]
    assert [redis_client.expiretime(entry) for entry in entries] == expiries
    identifiers_set = redis_client.expiretime(CitizenKeys(key_prefix, epoch, "C-8d").identifiers)
    assert max(expiries) <= identifiers_set


def test_a_citizen_without_identifiers_has_the_keep_alive_marked_done_by_the_apply_script(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    writer = writer_for(redis_client, key_prefix, inactivity_expiry_days=2)
    period = keep_alive_period(2 * 86400)
    writer.apply_batch(writes_for(make_event("C-8n", now=NOW)), now=NOW)
    meta = CitizenKeys(key_prefix, writer.current_epoch(), "C-8n").meta
    assert redis_client.hget(meta, "entries-kept") == str(int(NOW.timestamp()) // period)


def test_an_entry_taken_over_by_another_citizen_is_kept_alive_only_by_its_owner(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    # D's set still lists the number C took over. Extended by D's keep-alive, or by D teaching it again
    # with an earlier time, the entry naming C outlived C's own set, through which C's erasure finds it.
    writer = writer_for(redis_client, key_prefix, inactivity_expiry_days=2)
    period = keep_alive_period(2 * 86400)
    data = example_data("profile.updated", phone="07700 900777", email=None)
    earlier = make_event("D-9", type_="profile.updated", data=data, minutes_ago=10, now=NOW)
    writer.apply_batch(writes_for(earlier), now=NOW)
    writer.apply_batch(
        writes_for(make_event("C-9", type_="profile.updated", data=data, minutes_ago=5, now=NOW)), now=NOW
    )
    entry = identifier_key(key_prefix, writer.current_epoch(), IdentifierKind.phone, "+447700900777")
    assert redis_client.hget(entry, "citizen") == "C-9"
    redis_client.expire(entry, 100)

    later = NOW + timedelta(seconds=period)
    writer.apply_batch(writes_for(make_event("D-9", now=later)), now=later)  # D's keep-alive
    resent = earlier.model_copy(update={"id": "resent"})
    writer.apply_batch(writes_for(resent), now=later)  # D teaches it again, with its earlier time

    assert redis_client.hget(entry, "citizen") == "C-9"
    assert redis_client.ttl(entry) <= 100
    writer.apply_batch(writes_for(make_event("C-9", now=later)), now=later)  # C's own keep-alive
    assert redis_client.ttl(entry) > 100


def test_an_index_entry_holding_what_no_script_wrote_fails_no_keep_alive(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    writer = writer_for(redis_client, key_prefix, inactivity_expiry_days=2)
    period = keep_alive_period(2 * 86400)
    writer.apply_batch(writes_for(make_event("C-10", type_="profile.updated", now=NOW)), now=NOW)
    entry = identifier_key(key_prefix, writer.current_epoch(), IdentifierKind.phone, "+447700900123")
    redis_client.delete(entry)
    redis_client.set(entry, "someone else's")
    later = NOW + timedelta(seconds=period)
    (result,) = writer.apply_batch(writes_for(make_event("C-10", now=later)), now=later)  # its keep-alive
    assert result.applied
    assert redis_client.get(entry) == "someone else's"


def test_every_taught_identifier_is_listed_for_erasure_whatever_else_its_event_changes(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    writer = writer_for(redis_client, key_prefix, max_age_days=30)
    profile = make_event("C-8b", type_="profile.updated", now=NOW)
    # Too old for the timeline, and no profile field: the event changes nothing but the index.
    old_case = make_event("C-8b", type_="case.opened", minutes_ago=40 * 24 * 60, now=NOW)
    writes = writes_for(profile, old_case)
    results = writer.apply_batch(writes, now=NOW)
    assert [r.applied for r in results] == [True, False]
    epoch = writer.current_epoch()
    taught = {identifier for write in writes for identifier in write.identifiers}
    assert {kind for kind, _value in taught} == set(IdentifierKind)
    identifiers = CitizenKeys(key_prefix, epoch, "C-8b").identifiers
    assert redis_client.smembers(identifiers) == {f"{kind}:{value}" for kind, value in taught}
    for kind, value in taught:
        # The set outlives the index entries it lists, so an erasure finds every one of them.
        assert redis_client.expiretime(identifiers) > redis_client.expiretime(
            identifier_key(key_prefix, epoch, kind, value)
        )
    writer.apply_batch(writes_for(make_event("C-8b", type_=ERASURE_TYPE, data={}, now=NOW)), now=NOW)
    entries = [identifier_key(key_prefix, epoch, kind, value) for kind, value in taught]
    assert redis_client.exists(*entries) == 0


def test_a_redelivery_lists_what_it_teaches_again(redis_client: "redis.Redis", key_prefix: str) -> None:
    writer = writer_for(redis_client, key_prefix)
    profile = make_event("C-8c", type_="profile.updated", now=NOW)
    writer.apply_batch(writes_for(profile), now=NOW)
    identifiers = CitizenKeys(key_prefix, writer.current_epoch(), "C-8c").identifiers
    listed = redis_client.smembers(identifiers)
    assert listed == {f"{kind}:{value}" for kind, value in writes_for(profile)[0].identifiers}
    redis_client.delete(identifiers)  # lost, say: a redelivery changes nothing else, and lists them again
    assert [r.applied for r in writer.apply_batch(writes_for(profile), now=NOW)] == [False]
    assert redis_client.smembers(identifiers) == listed


async def test_the_encoded_context_is_the_context(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    writer = writer_for(redis_client, key_prefix)
    events = [make_event("C-9", minutes_ago=m, now=NOW) for m in (3, 1, 2)]
    writer.apply_batch(writes_for(*events, make_event("C-9", type_="profile.updated", now=NOW)))
    reader = ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings())
    encoded = await reader.context_json("C-9", now=NOW)
    context = await reader.context("C-9", now=NOW)
    assert CitizenContext.model_validate_json(encoded.body) == context
    assert encoded.head == context.model_copy(update={"timeline": []})


async def test_a_reader_finds_a_new_generation_at_once_though_it_keeps_the_epoch(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    """The epoch is kept for a second, but a citizen the kept generation no longer holds is read again."""
    writer = writer_for(redis_client, key_prefix)
    old = writer.current_epoch()
    writer.apply_batch(writes_for(make_event("C-1", minutes_ago=5, now=NOW)), epoch=old)
    reader = ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings())
    assert (await reader.context("C-1")).epoch == old
    new = "20990101T000000-rebuilt"
    writer.apply_batch(writes_for(*(make_event("C-1", minutes_ago=m, now=NOW) for m in (5, 6))), epoch=new)
    writer.switch_epoch(new)
    writer.drop_generation(old)
    context = await reader.context("C-1")
    assert (context.epoch, context.version) == (new, 2)
    # A generation switched while the old one still holds the citizen is seen once told (or a second on).
    newer = "20990102T000000-rebuilt"
    writer.apply_batch(writes_for(make_event("C-1", minutes_ago=5, now=NOW)), epoch=newer)
    writer.switch_epoch(newer)
    assert (await reader.context("C-1")).epoch == new
    reader.forget_epoch()
    assert (await reader.context("C-1")).epoch == newer


@pytest.mark.parametrize("newer_first", [True, False])
def test_an_identifier_stays_with_the_citizen_of_the_later_event_whatever_the_order_applied(
    redis_client: "redis.Redis", key_prefix: str, newer_first: bool
) -> None:
    data = example_data("profile.updated", phone="07700 900777", email=None)
    older = make_event("C-old", type_="profile.updated", minutes_ago=60, now=NOW, data=data)
    newer = make_event("C-new", type_="profile.updated", minutes_ago=5, now=NOW, data=data)
    writer = writer_for(redis_client, key_prefix)
    for event in (newer, older) if newer_first else (older, newer):
        writer.apply_batch(writes_for(event))
    epoch = writer.current_epoch()
    phone = (IdentifierKind.phone, "+447700900777")
    assert writer.resolve([phone], epoch=epoch) == {
        phone: IndexEntry("C-new", (time_score(newer.time), newer.dedup_key))
    }
    # Either way the entry lives on, and both citizens list it for an erasure.
    assert redis_client.ttl(identifier_key(key_prefix, epoch, *phone)) > 0
    for citizen in ("C-old", "C-new"):
        assert redis_client.smembers(CitizenKeys(key_prefix, epoch, citizen).identifiers) == {
            "phone:+447700900777"
        }


class _SwitchingWriter(ProjectionWriter):
    """A writer whose batches meet a rebuild's switch at a chosen point: the switch is sent on the batch's
    own connection, between two of its script calls, so it lands there in Redis's order of commands."""

    def __init__(self, client: "redis.Redis", prefix: str, *, after_calls: int, switches: int) -> None:
        super().__init__(client, prefix=prefix, timeline=TimelineSettings())
        self._prefix_name, self._after_calls, self._switches = prefix, after_calls, switches
        self.switched_to: list[str] = []

    def _write_commands(self, writes: list[EventWrite], **options: Any) -> Iterator[list[Command]]:
        for index, group in enumerate(super()._write_commands(writes, **options)):
            if index == self._after_calls and len(self.switched_to) < self._switches:
                self.switched_to.append(f"20990101T{len(self.switched_to):06d}-rebuilt")
                yield [["SET", epoch_key(self._prefix_name), self.switched_to[-1]]]
            yield group


async def test_a_writer_follows_a_generation_switched_between_two_calls_of_its_batch(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    """A live writer takes the served generation as last read; a rebuild's switch must not strand its
    batch in the old generation, even when calls of the batch ran before the switch."""
    live = _SwitchingWriter(redis_client, key_prefix, after_calls=1, switches=1)
    old = live.current_epoch()
    later = [make_event(f"C-{n % 3}", minutes_ago=n, now=NOW) for n in range(EVENTS_PER_CALL + 5)]
    results = live.apply_batch(writes_for(*later))
    assert len(results) == len(later)
    assert all(result.applied for result in results)
    [new] = live.switched_to
    reader = ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings())
    for citizen in ("C-0", "C-1", "C-2"):
        context = await reader.context(citizen)
        assert context.epoch == new
        assert {e.id for e in context.timeline} == {e.id for e in later if e.subject == citizen}
    # The first call ran before the switch, into the old generation; the rest did not.
    first_call = {e.citizen_id for e in later[:EVENTS_PER_CALL]}
    assert all(redis_client.exists(CitizenKeys(key_prefix, old, c).timeline) == 1 for c in first_call)
    held_before = sum(redis_client.zcard(CitizenKeys(key_prefix, old, c).timeline) for c in first_call)
    assert held_before == EVENTS_PER_CALL


def test_a_generation_that_keeps_switching_fails_the_batch(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    live = _SwitchingWriter(redis_client, key_prefix, after_calls=0, switches=MAX_GENERATION_SWITCHES + 1)
    live.current_epoch()
    with pytest.raises(GenerationSwitching):
        live.apply_batch(writes_for(make_event("C-1", now=NOW)))
    assert len(live.switched_to) == MAX_GENERATION_SWITCHES + 1


async def test_a_batch_longer_than_one_script_call_applies_like_one_event_at_a_time(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    # Interleaved citizens across several calls of the apply script, and repeats within one call.
    events = [make_event(f"C-{n % 3}", minutes_ago=n, now=NOW) for n in range(2 * EVENTS_PER_CALL + 5)]
    batched = writer_for(redis_client, f"{key_prefix}-batched")
    results = batched.apply_batch(writes_for(*events, events[0], events[EVENTS_PER_CALL]))
    single = writer_for(redis_client, f"{key_prefix}-single")
    one_by_one = [r for event in events for r in single.apply_batch(writes_for(event))]
    assert results[: len(events)] == one_by_one
    assert [r.applied for r in results[len(events) :]] == [False, False]
    for citizen in ("C-0", "C-1", "C-2"):
        contexts = [
            await ContextReader(async_redis, prefix=prefix, timeline=TimelineSettings()).context(citizen)
            for prefix in (f"{key_prefix}-batched", f"{key_prefix}-single")
        ]
        # The two prefixes hold two generations: everything but the generation's name is the same.
        assert contexts[0].model_copy(update={"epoch": ""}) == contexts[1].model_copy(update={"epoch": ""})
        assert contexts[0].version == len([e for e in events if e.subject == citizen])


def test_the_apply_script_derives_the_keys_the_project_names() -> None:
    # apply_events.lua builds a citizen's keys from its base; they must be exactly context/keys.py's.
    script = (Path(context.__file__).parent / "apply_events.lua").read_text()
    suffixes = re.search(r"local SUFFIXES = \{(.*?)\}", script, re.DOTALL)
    assert suffixes is not None
    keys = CitizenKeys("p", "e", "C-1")
    assert [keys.base + s for s in re.findall(r"'([^']*)'", suffixes.group(1))] == keys.all()


def test_a_batch_of_many_erasures_is_applied_in_order(redis_client: "redis.Redis", key_prefix: str) -> None:
    # Each erasure cuts the batch; far more of them than Python's recursion limit must still go through.
    writer = writer_for(redis_client, key_prefix)
    events = []
    for n in range(1_200):
        events += [
            make_event(f"C-{n}", minutes_ago=5, now=NOW),
            make_event(f"C-{n}", type_=ERASURE_TYPE, data={}, minutes_ago=1, now=NOW),
        ]
    events.append(make_event("C-0", minutes_ago=0.5, now=NOW))  # after its erasure: kept
    results = writer.apply_batch(writes_for(*events))
    assert [r.version for r in results] == [1, 0] * 1_200 + [1]
    epoch = writer.current_epoch()
    assert redis_client.exists(CitizenKeys(key_prefix, epoch, "C-1").timeline) == 0
    assert redis_client.zcard(CitizenKeys(key_prefix, epoch, "C-0").timeline) == 1


async def test_a_batch_sent_now_is_applied_when_its_results_are_read(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    writer = writer_for(redis_client, key_prefix)
    events = [make_event("C-5", minutes_ago=m, now=NOW) for m in (3, 2, 1)]
    sent = writer.send_batch(writes_for(*events))
    results = sent.results()
    assert [(r.applied, r.version) for r in results] == [(True, 1), (True, 2), (True, 3)]
    context = await ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings()).context("C-5")
    assert context.timeline == order_timeline(events)


def test_a_sent_batch_with_an_erasure_is_applied_before_it_returns(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    writer = writer_for(redis_client, key_prefix)
    kept = make_event("C-7", minutes_ago=1, now=NOW)
    erased = [
        make_event("C-6", minutes_ago=5, now=NOW),
        make_event("C-6", type_=ERASURE_TYPE, data={}, minutes_ago=2, now=NOW),
    ]
    sent = writer.send_batch(writes_for(*erased, kept))
    # The erasure waited for the write before it, and the writes after it were applied with it.
    epoch = writer.current_epoch()
    assert redis_client.exists(CitizenKeys(key_prefix, epoch, "C-6").timeline) == 0
    assert redis_client.zcard(CitizenKeys(key_prefix, epoch, "C-7").timeline) == 1
    assert [r.version for r in sent.results()] == [1, 0, 1]


async def test_an_erasure_leaves_no_recent_phone_number_in_memory(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str
) -> None:
    # context/identity.py keeps recent numbers' normalised forms; nothing of an erased citizen stays, whether
    # the consumer (a citizen.erased event) or the API (a citizen's request) erases.
    writer = writer_for(redis_client, key_prefix)
    normalise(IdentifierKind.phone, "07700 900123", default_region="GB")
    assert recent_numbers() > 0
    writer.erase("C-8", epoch=writer.current_epoch(), publish=False)
    assert recent_numbers() == 0
    normalise(IdentifierKind.phone, "07700 900123", default_region="GB")
    assert recent_numbers() > 0
    await CitizenEraser(async_redis, prefix=key_prefix).erase("C-8")
    assert recent_numbers() == 0
    # Every other API replica, on the erasure's announcement (api/streaming.py, the change hub).
    normalise(IdentifierKind.phone, "07700 900123", default_region="GB")
    assert recent_numbers() > 0
    reader = ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings())
    reader.forget_citizen("C-8")
    assert recent_numbers() == 0
    # And when its subscription was lost: announcements made meanwhile never reached it.
    normalise(IdentifierKind.phone, "07700 900123", default_region="GB")
    reader.forget_epoch()
    assert recent_numbers() == 0
