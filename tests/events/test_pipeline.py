"""A batch's records become writes and dead letters; identity resolution against the real Redis."""

import json
from datetime import UTC, datetime, timedelta

import pytest
import redis

from context.identity import IdentifierKind
from context.settings import TimelineSettings
from context.store import ProjectionWriter
from events.codec import encode_structured
from events.pipeline import prepare_batch
from events.records import IncomingRecord
from models.events import CloudEvent
from tests.factories import example_data, make_event, writes_for


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
        [record(e, n) for n, e in enumerate(named)], writer=writer, epoch=epoch, default_region="GB"
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
            [record(e, n) for n, e in enumerate(batch)], writer=writer, epoch=epoch, default_region="GB"
        )
        writer.apply_batch(prepared.writes, epoch=epoch, now=now)
    assert [
        w.citizen_id
        for w in prepare_batch([record(letter)], writer=writer, epoch=epoch, default_region="GB").writes
    ] == ["C-12"]
    assert writer.resolve([(IdentifierKind.phone, "+447700900604")], epoch=epoch) == {
        (IdentifierKind.phone, "+447700900604"): "C-12"
    }


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
    )
    assert batch.writes == []
    assert [(d.record.offset, d.reason) for d in batch.dead_letters] == [
        (8, "not-json"),
        (7, "unresolved-identity"),
    ]
    unresolved = batch.dead_letters[1]
    assert "7700" not in unresolved.detail
    assert json.loads(unresolved.record.value or b"")["citizenphone"] == "07700 900555"


def erasure(citizen_id: str) -> CloudEvent:
    return make_event(citizen_id, type_="citizen.erased", data={"channel": "system", "summary": "Erased."})


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
        [record(e, n) for n, e in enumerate([taught, erasure("C-11"), erasure("C-12"), *late_calls])],
        writer=writer,
        epoch=epoch,
        default_region="GB",
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
        [record(erasure("C-13"), 0), record(again, 1), record(anonymous(citizenphone="07700900556"), 2)],
        writer=writer,
        epoch=writer.current_epoch(),
        default_region="GB",
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
            [record(anonymous(citizenphone="+44 7700 900123"))], writer=writer, epoch="", default_region="GB"
        )
    # Events that name their citizen need no generation to be planned.
    named = prepare_batch([record(make_event("C-1"))], writer=writer, epoch="", default_region="GB")
    assert [write.citizen_id for write in named.writes] == ["C-1"]
