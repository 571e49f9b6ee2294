"""Identifier normalisation and what events teach the identifier index (pure)."""

import pytest

from context.identity import IdentifierKind, InvalidIdentifier, normalise, taught_identifiers
from context.service import plan_write
from tests.factories import example_data, make_event


@pytest.mark.parametrize(
    ("kind", "raw", "canonical"),
    [
        (IdentifierKind.phone, "07700 900123", "+447700900123"),
        (IdentifierKind.phone, "+44 (0)7700-900123", "+447700900123"),
        (IdentifierKind.phone, "0044 7700 900123", "+447700900123"),
        (IdentifierKind.phone, "+1 202 555 0143", "+12025550143"),
        (IdentifierKind.email, "  Anna.Jones@Example.ORG ", "anna.jones@example.org"),
        (IdentifierKind.case, " hb-4471 ", "HB-4471"),
    ],
)
def test_identifiers_are_normalised(kind: IdentifierKind, raw: str, canonical: str) -> None:
    assert normalise(kind, raw, default_region="GB") == canonical


def test_the_default_region_reads_national_numbers() -> None:
    assert normalise(IdentifierKind.phone, "202 555 0143", default_region="US") == "+12025550143"


def test_a_phone_number_read_again_is_read_the_same_in_its_own_region_and_a_refusal_stands() -> None:
    # Recent answers are kept (context/identity.py): asking again, or in another region, changes nothing.
    for _ in range(2):
        assert normalise(IdentifierKind.phone, "020 7946 0018", default_region="GB") == "+442079460018"
        assert normalise(IdentifierKind.phone, "020 7946 0018", default_region="IE") == "+3532079460018"
        with pytest.raises(InvalidIdentifier, match="not a possible phone number"):
            normalise(IdentifierKind.phone, "+44 20", default_region="GB")


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        (IdentifierKind.phone, "not a number"),
        (IdentifierKind.phone, "123"),
        (IdentifierKind.email, "no-at-sign"),
        (IdentifierKind.email, "two@@example.org"),
        (IdentifierKind.case, "has space"),
        (IdentifierKind.case, ""),
    ],
)
def test_malformed_identifiers_are_refused(kind: IdentifierKind, raw: str) -> None:
    with pytest.raises(InvalidIdentifier):
        normalise(kind, raw, default_region="GB")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("abc", "not a phone number (it does not look like one)"),
        ("+999 123 456", "not a phone number (its country code is not known)"),
        ("1" * 30, "not a phone number (too long)"),
    ],
)
def test_a_phone_that_does_not_parse_is_refused_in_plain_words(raw: str, message: str) -> None:
    # The reason reaches agents (the desk shows it) and dead letters: no library numbering or punctuation.
    with pytest.raises(InvalidIdentifier) as refused:
        normalise(IdentifierKind.phone, raw, default_region="GB")
    assert str(refused.value) == message


def test_a_profile_update_teaches_its_phone_and_email() -> None:
    event = make_event("C-1", type_="profile.updated", data=example_data("profile.updated"))
    assert set(taught_identifiers(event, default_region="GB")) == {
        (IdentifierKind.phone, "+447700900123"),
        (IdentifierKind.email, "anna.jones@example.org"),
    }


def test_case_events_teach_their_case_reference() -> None:
    event = make_event("C-1", type_="case.opened", data=example_data("case.opened", case_ref="hb-9"))
    assert taught_identifiers(event, default_region="GB") == [(IdentifierKind.case, "HB-9")]


def test_an_envelope_with_subject_and_identifiers_teaches_them() -> None:
    event = make_event("C-1").model_copy(update={"citizenemail": "X@Example.org"})
    assert taught_identifiers(event, default_region="GB") == [(IdentifierKind.email, "x@example.org")]


def test_a_malformed_phone_in_a_profile_teaches_nothing_but_does_not_fail() -> None:
    data = example_data("profile.updated", phone="12", email=None)
    event = make_event("C-1", type_="profile.updated", data=data)
    assert taught_identifiers(event, default_region="GB") == []


@pytest.mark.parametrize(
    "extra",
    [
        {"phone": "07700 900999"},
        {"email": "neighbour@example.org"},
        {"case_ref": "HB-4471"},
        {"phone": 447700900123},
        {"email": ["x@example.org"]},
        {"case_ref": {"x": 1}},
    ],
)
def test_an_identifier_field_its_type_does_not_declare_teaches_nothing_and_is_planned(
    extra: dict[str, object],
) -> None:
    # A web form's `email` may be a neighbour's: taught to the event's citizen, it would open their context
    # to whoever is found by it next. Kept extras may hold anything JSON does, text or not: the event is
    # applied as REST accepted it, teaching nothing, never dead-lettered as undecodable.
    event = make_event("C-1", type_="web.form.submitted", data=example_data("web.form.submitted", **extra))
    assert taught_identifiers(event, default_region="GB") == []
    assert plan_write(event, default_region="GB").identifiers == []


def test_an_envelope_identifier_still_teaches_beside_an_undeclared_data_field() -> None:
    data = example_data("web.form.submitted", email="neighbour@example.org")
    event = make_event("C-1", type_="web.form.submitted", data=data).model_copy(
        update={"citizenphone": "07700 900123"}
    )
    assert taught_identifiers(event, default_region="GB") == [(IdentifierKind.phone, "+447700900123")]


def test_a_payment_with_a_case_reference_it_does_not_declare_teaches_nothing() -> None:
    data = example_data("payment.received", case_ref="HB-4471")
    event = make_event("C-1", type_="payment.received", data=data)
    assert taught_identifiers(event, default_region="GB") == []
