"""A batch's records become writes and dead letters; identity resolution against the real Redis (and a
rebuild's, against the real Kafka too)."""

import json
from datetime import UTC, datetime, timedelta

import pytest
import redis
import redis.asyncio as aioredis

from context.identity import IdentifierKind
from context.keys import CitizenKeys, identifier_key
from context.settings import TimelineSettings
from context.store import ContextReader, ProjectionWriter
from context.timeline import time_score
from events.codec import encode_structured
from events.pipeline import prepare_batch
from events.records import IncomingRecord
from models.events import CloudEvent
from tests.events.replay import rebuild_topic
from tests.events.test_consumer import produce_events
from tests.factories import ERASURES, example_data, make_erasure, make_event, writes_for


def record(event: CloudEvent | bytes, offset: int = 0) -> IncomingRecord:
    if isinstance(event, bytes):
        return IncomingRecord("topic", 0, offset, None, event, [])
    value, headers = encode_structured(event)
    return IncomingRecord("topic", 0, offset, None, value, headers)


def anonymous(type_: str = "call.ended", **identifiers: str) -> CloudEvent:
    return make_event("C-unused", type_=type_).model_copy(update={"subject": None, **identifiers})


def test_each_identifier_resolves_once_the_index_knows_it(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    epoch = writer.current_epoch()
    profile = make_event("C-9", type_="profile.updated", data=example_data("profile.updated"))
    case = make_event("C-9", type_="case.opened", data=example_data("case.opened", case_ref="HB-77"))
    writer.apply_batch(writes_for(profile, case))
    named = [
        anonymous(citizenphone="+44 7700 900123"),
        anonymous(citizenemail="anna.jones@EXAMPLE.org"),
        anonymous(citizencaseref="hb-77"),
    ]
    batch = prepare_batch(
        [record(e, n) for n, e in enumerate(named)],
        writer=writer,
        epoch=epoch,
        default_region="GB",
        erasures=ERASURES,
    )
    assert batch.dead_letters == []
    assert [write.citizen_id for write in batch.writes] == ["C-9", "C-9", "C-9"]
    assert [write.event.id for write in batch.writes] == [e.id for e in named]


def test_an_identifier_taught_earlier_in_the_same_batch_resolves(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    profile = make_event(
        "C-10",
        type_="profile.updated",
        data=example_data("profile.updated", phone="07700 900999", email=None),
    )
    caller = anonymous("call.started", citizenphone="07700900999")
    batch = prepare_batch(
        [record(profile, 0), record(caller, 1)],
        writer=writer,
        epoch=writer.current_epoch(),
        default_region="GB",
        erasures=ERASURES,
    )
    assert [w.citizen_id for w in batch.writes] == ["C-10", "C-10"]


def test_an_event_found_by_a_number_does_not_take_the_number_from_its_newer_owner(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    # A number moves from C-11 (02:00) to C-12 (04:00). A letter at 05:00 named only by that number is read
    # before C-12's profile update (another partition: a rebuild, or a consumer catching up), so it goes
    # to C-11, the owner the index knew then. It must not also teach the number to C-11 at 05:00, which
    # would outrank C-12's own claim and keep the number with C-11 for every later caller.
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    epoch = writer.current_epoch()
    now = datetime.now(UTC)
    data = example_data("profile.updated", phone="07700 900604", email=None)
    first_owner = make_event("C-11", type_="profile.updated", data=data, minutes_ago=180, now=now)
    letter = anonymous("letter.sent", citizenphone="07700900604").model_copy(
        update={"time": now - timedelta(minutes=60)}
    )
    new_owner = make_event("C-12", type_="profile.updated", data=data, minutes_ago=120, now=now)
    for batch in ([first_owner, letter], [new_owner]):
        prepared = prepare_batch(
            [record(e, n) for n, e in enumerate(batch)],
            writer=writer,
            epoch=epoch,
            default_region="GB",
            erasures=ERASURES,
        )
        writer.apply_batch(prepared.writes, epoch=epoch, now=now)
    assert [
        w.citizen_id
        for w in prepare_batch(
            [record(letter)], writer=writer, epoch=epoch, default_region="GB", erasures=ERASURES
        ).writes
    ] == ["C-12"]
    phone = (IdentifierKind.phone, "+447700900604")
    assert writer.resolve([phone], epoch=epoch)[phone].citizen == "C-12"


PHONE = (IdentifierKind.phone, "+447700900605")


def owns_phone(citizen_id: str, *, minutes_ago: float, now: datetime) -> CloudEvent:
    """`citizen_id`'s profile update giving them PHONE, `minutes_ago` before `now`."""
    data = example_data("profile.updated", phone="07700 900605", email=None)
    return make_event(citizen_id, type_="profile.updated", data=data, minutes_ago=minutes_ago, now=now)


def call_from_phone(*, minutes_ago: float, now: datetime) -> CloudEvent:
    return anonymous("call.started", citizenphone="07700900605").model_copy(
        update={"time": now - timedelta(minutes=minutes_ago)}
    )


def prepare_and_apply(writer: ProjectionWriter, events: list[CloudEvent], *, now: datetime) -> list[str]:
    """Prepare one batch of `events`, apply it, and return its writes' citizens in order."""
    epoch = writer.current_epoch()
    prepared = prepare_batch(
        [record(e, n) for n, e in enumerate(events)],
        writer=writer,
        epoch=epoch,
        default_region="GB",
        erasures=ERASURES,
    )
    writer.apply_batch(prepared.writes, epoch=epoch, now=now)
    return [write.citizen_id for write in prepared.writes]


def test_a_late_teaching_in_the_batch_does_not_take_a_number_from_its_later_owner(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    # The index gives the number to C-21 (an event of 02:00). A batch then brings a late, or redelivered,
    # profile update of 01:00 giving it to C-20, and a call at 03:00 named only by the number. The index
    # keeps the number with C-21 (the later teaching wins), so the call is C-21's, as it would be had the
    # call come in the next batch.
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    now = datetime.now(UTC)
    prepare_and_apply(writer, [owns_phone("C-21", minutes_ago=120, now=now)], now=now)
    late_batch = [owns_phone("C-20", minutes_ago=180, now=now), call_from_phone(minutes_ago=60, now=now)]
    assert prepare_and_apply(writer, late_batch, now=now) == ["C-20", "C-21"]
    assert writer.resolve([PHONE], epoch=writer.current_epoch())[PHONE].citizen == "C-21"


@pytest.mark.parametrize("later_first", [True, False])
def test_within_a_batch_the_later_teaching_of_a_number_wins_whatever_the_order(
    redis_client: "redis.Redis", key_prefix: str, later_first: bool
) -> None:
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    now = datetime.now(UTC)
    earlier, later = owns_phone("C-22", minutes_ago=120, now=now), owns_phone("C-23", minutes_ago=90, now=now)
    teachings = [later, earlier] if later_first else [earlier, later]
    citizens = prepare_and_apply(writer, [*teachings, call_from_phone(minutes_ago=60, now=now)], now=now)
    assert citizens[-1] == "C-23"
    assert writer.resolve([PHONE], epoch=writer.current_epoch())[PHONE].citizen == "C-23"


# Pairs of ids, the greater (by code point) second. A collation orders the last two the other way round
# (en_US.UTF-8: "B" before "a", "é" before "z"): the index must not follow Redis's locale.
@pytest.mark.parametrize("ids", [("evt-a", "evt-b"), ("evt-B", "evt-a"), ("evt-z", "evt-é")])
@pytest.mark.parametrize("greater_first", [False, True])
def test_teachings_at_the_same_moment_are_ordered_by_event_key_as_the_index_orders_them(
    redis_client: "redis.Redis", key_prefix: str, ids: tuple[str, str], greater_first: bool
) -> None:
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    now = datetime.now(UTC)
    lesser, greater = ids
    order = [("C-24", greater), ("C-25", lesser)] if greater_first else [("C-24", lesser), ("C-25", greater)]
    teachings = [
        owns_phone(citizen, minutes_ago=90, now=now).model_copy(update={"id": event_id})
        for citizen, event_id in order
    ]
    citizens = prepare_and_apply(writer, [*teachings, call_from_phone(minutes_ago=60, now=now)], now=now)
    # Same time and source: the greater id wins, in the batch as in the index.
    winner = "C-24" if greater_first else "C-25"
    assert citizens[-1] == winner
    assert writer.resolve([PHONE], epoch=writer.current_epoch())[PHONE].citizen == winner


def test_a_number_taken_over_in_the_batch_then_erased_finds_nobody(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    # C-27 takes the number over from C-26, then is erased: erasing removes the entry that names C-27, and
    # nothing gives the number back to C-26.
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    now = datetime.now(UTC)
    prepare_and_apply(writer, [owns_phone("C-26", minutes_ago=120, now=now)], now=now)
    epoch = writer.current_epoch()
    prepared = prepare_batch(
        [
            record(owns_phone("C-27", minutes_ago=90, now=now), 0),
            record(make_erasure("C-27", minutes_ago=80, now=now), 1),
            record(call_from_phone(minutes_ago=60, now=now), 2),
        ],
        writer=writer,
        epoch=epoch,
        default_region="GB",
        erasures=ERASURES,
    )
    assert [(w.citizen_id, w.erase) for w in prepared.writes] == [("C-27", False), ("C-27", True)]
    assert [(letter.record.offset, letter.reason) for letter in prepared.dead_letters] == [
        (2, "unresolved-identity")
    ]
    writer.apply_batch(prepared.writes, epoch=epoch, now=now)
    assert writer.resolve([PHONE], epoch=epoch) == {}


def test_erasing_a_numbers_previous_owner_leaves_it_with_the_citizen_who_took_it_over(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    now = datetime.now(UTC)
    prepare_and_apply(writer, [owns_phone("C-28", minutes_ago=120, now=now)], now=now)
    batch = [
        owns_phone("C-29", minutes_ago=90, now=now),
        make_erasure("C-28", minutes_ago=80, now=now),
        call_from_phone(minutes_ago=60, now=now),
    ]
    assert prepare_and_apply(writer, batch, now=now) == ["C-29", "C-28", "C-29"]
    assert writer.resolve([PHONE], epoch=writer.current_epoch())[PHONE].citizen == "C-29"


def test_an_event_found_by_a_number_still_teaches_what_its_data_names(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    profile = make_event("C-13", type_="profile.updated", data=example_data("profile.updated"))
    case = anonymous(citizenphone="07700 900123").model_copy(
        update={"type": "case.opened", "data": example_data("case.opened", case_ref="HB-79")}
    )
    prepared = prepare_batch(
        [record(profile, 0), record(case, 1)],
        writer=writer,
        epoch=writer.current_epoch(),
        default_region="GB",
        erasures=ERASURES,
    )
    assert [w.citizen_id for w in prepared.writes] == ["C-13", "C-13"]
    assert prepared.writes[1].identifiers == [(IdentifierKind.case, "HB-79")]


def test_an_unknown_identifier_is_a_dead_letter_that_names_no_personal_data(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    stranger = anonymous(citizenphone="07700 900555")
    batch = prepare_batch(
        [record(stranger, 7), record(b"{", 8)],
        writer=writer,
        epoch=writer.current_epoch(),
        default_region="GB",
        erasures=ERASURES,
    )
    assert batch.writes == []
    assert [(d.record.offset, d.reason) for d in batch.dead_letters] == [
        (8, "not-json"),
        (7, "unresolved-identity"),
    ]
    unresolved = batch.dead_letters[1]
    assert "7700" not in unresolved.detail
    assert json.loads(unresolved.record.value or b"")["citizenphone"] == "07700 900555"


def test_after_an_erasure_an_identifier_no_longer_finds_the_citizen_within_the_batch(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    """A replay reads partitions out of step: a call named by phone may come after the erasure."""
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    epoch = writer.current_epoch()
    known = make_event("C-11", type_="profile.updated", data=example_data("profile.updated", email=None))
    writer.apply_batch(writes_for(known))  # the index knows the phone before the batch
    taught = make_event(
        "C-12",
        type_="profile.updated",
        data=example_data("profile.updated", phone="07700 900555", email=None),
    )
    late_calls = [anonymous(citizenphone="07700 900123"), anonymous(citizenphone="07700 900555")]
    batch = prepare_batch(
        [
            record(e, n)
            for n, e in enumerate([taught, make_erasure("C-11"), make_erasure("C-12"), *late_calls])
        ],
        writer=writer,
        epoch=epoch,
        default_region="GB",
        erasures=ERASURES,
    )
    assert [(w.citizen_id, w.erase) for w in batch.writes] == [
        ("C-12", False),
        ("C-11", True),
        ("C-12", True),
    ]
    assert [letter.reason for letter in batch.dead_letters] == ["unresolved-identity", "unresolved-identity"]


def test_a_citizen_who_comes_back_after_an_erasure_is_found_again(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    again = make_event(
        "C-13",
        type_="profile.updated",
        data=example_data("profile.updated", phone="07700 900556", email=None),
    )
    batch = prepare_batch(
        # Erased a minute before the citizen's new profile update.
        [
            record(make_erasure("C-13", minutes_ago=1), 0),
            record(again, 1),
            record(anonymous(citizenphone="07700900556"), 2),
        ],
        writer=writer,
        epoch=writer.current_epoch(),
        default_region="GB",
        erasures=ERASURES,
    )
    assert [w.citizen_id for w in batch.writes] == ["C-13", "C-13", "C-13"]
    assert batch.dead_letters == []


def test_resolving_identifiers_without_their_generation_is_refused(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    # The consumer reads the generation for a batch only when it needs the index: a batch that names a
    # citizen by an identifier and came without one is a defect, never a silent "unresolved" dead letter.
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    with pytest.raises(ValueError, match="generation"):
        prepare_batch(
            [record(anonymous(citizenphone="+44 7700 900123"))],
            writer=writer,
            epoch="",
            default_region="GB",
            erasures=ERASURES,
        )
    # Events that name their citizen need no generation to be planned.
    named = prepare_batch(
        [record(make_event("C-1"))], writer=writer, epoch="", default_region="GB", erasures=ERASURES
    )
    assert [write.citizen_id for write in named.writes] == ["C-1"]


@pytest.mark.parametrize("erased_in_the_batch", [True, False])
def test_an_erased_citizens_earlier_teaching_finds_nobody_whatever_the_batch(
    redis_client: "redis.Redis", key_prefix: str, erased_in_the_batch: bool
) -> None:
    # The apply script teaches nothing for an event timed before the citizen's erasure (context/keys.py,
    # erasure_mark_key): predicted here all the same, it sent a later call from the number to the erased
    # citizen, and brought them back, in one batch but not in two.
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    now = datetime.now(UTC)
    erased = make_erasure("C-30", minutes_ago=5, now=now)
    late = [owns_phone("C-30", minutes_ago=10, now=now), call_from_phone(minutes_ago=1, now=now)]
    if not erased_in_the_batch:
        writer.apply_batch(writes_for(erased))
    events = [erased, *late] if erased_in_the_batch else late
    epoch = writer.current_epoch()

    prepared = prepare_batch(
        [record(e, n) for n, e in enumerate(events)],
        writer=writer,
        epoch=epoch,
        default_region="GB",
        erasures=ERASURES,
    )
    writer.apply_batch(prepared.writes, epoch=epoch)

    assert [letter.reason for letter in prepared.dead_letters] == ["unresolved-identity"]
    assert writer.resolve([PHONE], epoch=epoch) == {}
    assert redis_client.exists(CitizenKeys(key_prefix, epoch, "C-30").timeline) == 0


@pytest.mark.parametrize("api_step_ran", [True, False])
def test_an_erasure_read_back_finds_a_number_taught_since_only_where_redis_keeps_it(
    redis_client: "redis.Redis", key_prefix: str, api_step_ran: bool
) -> None:
    # The citizen's profile update since the erasure taught the number again (another partition). Where
    # the API erased them (a mark covers the erasure), the record read back leaves that entry in Redis, and
    # within its batch too a call from the number finds them. With no mark, the record erases every entry
    # naming them, whatever its stamp: in its batch too, the call finds nobody. Either way as in the next
    # batch.
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    citizen, phone = ("C-14", "07700 900557") if api_step_ran else ("C-15", "07700 900558")
    erased = make_erasure(citizen, minutes_ago=10)
    if api_step_ran:
        writer.erase(citizen, epoch=writer.current_epoch(), erased_at=time_score(erased.time))
    since = make_event(
        citizen,
        type_="profile.updated",
        data=example_data("profile.updated", phone=phone, email=None),
        minutes_ago=5,
    )
    writer.apply_batch(writes_for(since))
    call = anonymous(citizenphone=phone)

    batch = prepare_batch(
        [record(erased, 0), record(call, 1)],
        writer=writer,
        epoch=writer.current_epoch(),
        default_region="GB",
        erasures=ERASURES,
    )

    if not api_step_ran:
        assert [(w.citizen_id, w.erase) for w in batch.writes] == [(citizen, True)]
        assert [letter.reason for letter in batch.dead_letters] == ["unresolved-identity"]
        return
    assert batch.dead_letters == []
    assert [(w.citizen_id, w.erase) for w in batch.writes] == [(citizen, True), (citizen, False)]
    writer.apply_batch(batch.writes)
    timeline = CitizenKeys(key_prefix, writer.current_epoch(), citizen).timeline
    assert redis_client.zrange(timeline, 0, -1) == [since.dedup_key, call.dedup_key]


def apply_in_batches(
    writer: ProjectionWriter, batches: list[list[CloudEvent]], *, now: datetime
) -> tuple[list[str], list[int]]:
    """Prepare and apply each batch in turn (records numbered across them); the writes' citizens, and the
    numbers of the records dead-lettered, in order."""
    epoch, numbered, citizens, letters = writer.current_epoch(), 0, [], []
    for events in batches:
        records = [record(event, numbered + n) for n, event in enumerate(events)]
        numbered += len(events)
        prepared = prepare_batch(records, writer=writer, epoch=epoch, default_region="GB", erasures=ERASURES)
        writer.apply_batch(prepared.writes, epoch=epoch, now=now)
        citizens += [write.citizen_id for write in prepared.writes]
        letters += [letter.record.offset for letter in prepared.dead_letters]
    return citizens, letters


@pytest.mark.parametrize("one_batch", [True, False])
async def test_an_erased_citizens_refused_teaching_keeps_their_calls_from_the_numbers_previous_owner(
    redis_client: "redis.Redis", async_redis: "aioredis.Redis", key_prefix: str, one_batch: bool
) -> None:
    # The number moves from C-40 to C-41 (90 minutes ago), who is erased later. Applied live, C-41's
    # teaching took the entry over, and the erasure removed it: a call from the number since found nobody.
    # Replayed after the erasure (a rebuild, or the teaching read late from another partition), the teaching
    # is refused with C-41's other earlier events; the entry still named C-40, and C-41's call joined C-40's
    # timeline, for C-40's agents to read.
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    reader = ContextReader(async_redis, prefix=key_prefix, timeline=TimelineSettings())
    now = datetime.now(UTC)
    epoch = writer.current_epoch()
    writer.erase("C-41", epoch=epoch, erased_at=time_score(now - timedelta(minutes=30)))
    teachings = [owns_phone("C-40", minutes_ago=120, now=now), owns_phone("C-41", minutes_ago=90, now=now)]
    calls = [call_from_phone(minutes_ago=100, now=now), call_from_phone(minutes_ago=60, now=now)]

    citizens, letters = apply_in_batches(
        writer, [teachings + calls] if one_batch else [teachings, calls], now=now
    )

    # C-40's call (before the number moved) is theirs; C-41's finds nobody, as it would have live.
    assert (citizens, letters) == (["C-40", "C-41", "C-40"], [3])
    entry = writer.resolve([PHONE], epoch=epoch)[PHONE]
    assert (entry.citizen, entry.superseded) == ("C-40", time_score(now - timedelta(minutes=90)))
    assert redis_client.zcard(CitizenKeys(key_prefix, epoch, "C-40").timeline) == 2
    assert redis_client.exists(CitizenKeys(key_prefix, epoch, "C-41").timeline) == 0
    # Nothing of C-41's is kept in the entry: only the time the number stopped being C-40's.
    assert set(redis_client.hkeys(identifier_key(key_prefix, epoch, *PHONE))) == {
        "citizen",
        "stamp",
        "superseded",
    }
    assert await reader.lookup(*PHONE) is None

    # C-40 gives the number again since: theirs once more, calls from it since included.
    citizens, letters = apply_in_batches(
        writer,
        [[owns_phone("C-40", minutes_ago=20, now=now), call_from_phone(minutes_ago=10, now=now)]],
        now=now,
    )
    assert (citizens, letters) == (["C-40", "C-40"], [])
    assert writer.resolve([PHONE], epoch=epoch)[PHONE].superseded is None
    assert await reader.lookup(*PHONE) == "C-40"


def test_a_later_teaching_replayed_first_is_not_superseded_by_an_erased_citizens_earlier_one(
    redis_client: "redis.Redis", key_prefix: str
) -> None:
    # C-43 took the number over from C-42 before C-42 gave it again (C-43 erased since): C-42's later
    # teaching holds the entry, and C-43's refused one, earlier, changes nothing.
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    now = datetime.now(UTC)
    epoch = writer.current_epoch()
    writer.erase("C-43", epoch=epoch, erased_at=time_score(now - timedelta(minutes=30)))
    citizens, letters = apply_in_batches(
        writer,
        [
            [owns_phone("C-42", minutes_ago=60, now=now)],
            [owns_phone("C-43", minutes_ago=90, now=now), call_from_phone(minutes_ago=50, now=now)],
        ],
        now=now,
    )
    assert (citizens, letters) == (["C-42", "C-43", "C-42"], [])
    assert writer.resolve([PHONE], epoch=epoch)[PHONE].superseded is None


def test_a_rebuild_after_a_numbers_newer_owner_was_erased_gives_their_calls_to_nobody(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str
) -> None:
    # The README's case, through a whole rebuild: live, C-45's call went to C-45, whom the API then erased.
    now = datetime.now(UTC)
    live = [owns_phone("C-44", minutes_ago=120, now=now), owns_phone("C-45", minutes_ago=90, now=now)]
    theirs, before = call_from_phone(minutes_ago=60, now=now), call_from_phone(minutes_ago=100, now=now)
    topic = [live[0], before, live[1], theirs]
    assert prepare_and_apply(writer, topic, now=now) == ["C-44", "C-44", "C-45", "C-45"]
    erased = make_erasure("C-45", minutes_ago=30, now=now)
    writer.erase("C-45", epoch=writer.current_epoch(), erased_at=time_score(erased.time))
    produce_events(kafka_topic, [*topic, erased])

    report = rebuild_topic(kafka_topic, writer)

    # C-44's own call and profile only; C-45's call is skipped, as nobody holds the number at its time.
    assert (report.records, report.skipped) == (5, 1)
    timeline = writer.client.zrange(CitizenKeys(key_prefix, report.epoch, "C-44").timeline, 0, -1)
    assert sorted(timeline) == sorted(event.dedup_key for event in (live[0], before))
    assert not writer.client.exists(CitizenKeys(key_prefix, report.epoch, "C-45").timeline)
