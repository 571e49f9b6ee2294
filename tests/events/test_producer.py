"""How published events are keyed (pure: which partition keeps which events in order)."""

from events.producer import partition_key, partition_keys
from models.events import CloudEvent
from tests.factories import example_data, make_event


def anonymous(**identifiers: str) -> CloudEvent:
    return make_event("C-unused").model_copy(update={"subject": None, **identifiers})


def test_an_event_is_keyed_by_its_citizen_or_else_by_the_normalised_identifier_it_names() -> None:
    assert partition_key(make_event("C-1")) == b"C-1"
    assert partition_key(anonymous(citizenphone="07700 900123")) == b"phone:+447700900123"


def test_an_identifier_taught_earlier_in_a_batch_keys_the_event_that_names_it_by_that_citizen() -> None:
    profile = make_event("C-7", type_="profile.updated", data=example_data("profile.updated"))
    case = make_event("C-8", type_="case.opened", data=example_data("case.opened", case_ref="HB-77"))
    batch = [
        anonymous(citizenphone="+44 7700 900123"),  # before the profile that teaches it: on its own
        profile,
        case,
        anonymous(citizenphone="+447700900123"),  # the profile's "07700 900123", written otherwise
        anonymous(citizenemail="anna.jones@example.org"),
        anonymous(citizencaseref="hb-77"),
        anonymous(citizenphone="07700 900999"),  # taught by nobody in the batch
    ]
    assert partition_keys(batch) == [
        b"phone:+447700900123",
        b"C-7",
        b"C-8",
        b"C-7",
        b"C-7",
        b"C-8",
        b"phone:+447700900999",
    ]


def test_an_event_named_by_an_identifier_passes_its_key_on_to_what_it_teaches() -> None:
    profile = make_event("C-7", type_="profile.updated", data=example_data("profile.updated"))
    # Named by the profile's phone, the case event teaches a case reference; the complaint names only that.
    case = anonymous(citizenphone="07700 900123").model_copy(
        update={"type": "case.opened", "data": example_data("case.opened", case_ref="HB-78")}
    )
    complaint = anonymous(citizencaseref="HB-78")
    # With no subject anywhere: the first event's identifier key carries on down the chain.
    unknown = anonymous(citizenemail="someone@example.org").model_copy(
        update={"type": "profile.updated", "data": example_data("profile.updated", phone="07700 900555")}
    )
    call = anonymous(citizenphone="+447700900555")
    assert partition_keys([profile, case, complaint, unknown, call]) == [
        b"C-7",
        b"C-7",
        b"C-7",
        b"email:someone@example.org",
        b"email:someone@example.org",
    ]
