"""Identity resolution rules (pure): how identifiers are normalised and which ones an event teaches."""

import re
from enum import StrEnum
from functools import cache, lru_cache

import phonenumbers

from models.events import CloudEvent
from models.taxonomy import EventData, parse_data


class IdentifierKind(StrEnum):
    """The identifiers that can stand for a citizen."""

    phone = "phone"
    email = "email"
    case = "case"


class InvalidIdentifier(ValueError):
    """An identifier that cannot be normalised."""


EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CASE_REF = re.compile(r"^[A-Z0-9][A-Z0-9/_.-]{0,63}$")


_PHONE_PARSE_REASONS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "its country code is not known",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "it does not look like one",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
    phonenumbers.NumberParseException.TOO_LONG: "too long",
}


def normalise(kind: IdentifierKind, value: str, *, default_region: str) -> str:
    """The canonical form of an identifier: E.164 phone numbers, lower-case emails, upper-case case refs."""
    if kind is IdentifierKind.phone:
        return _e164(value, default_region)
    if kind is IdentifierKind.email:
        email = value.strip().lower()
        if not EMAIL.fullmatch(email):
            raise InvalidIdentifier("not an email address")
        return email
    case_ref = case_reference(value)
    if not CASE_REF.fullmatch(case_ref):
        raise InvalidIdentifier("not a case reference (letters, digits and /_.- up to 64 characters)")
    return case_ref


def case_reference(value: str) -> str:
    """A case reference as it is matched, whoever wrote it: trimmed, upper-case (not checked: see
    `normalise`)."""
    return value.strip().upper()


# Parsing a phone number takes the library about 13 us, more than the rest of an event's identity work; the
# same numbers recur (a caller's number on every call), so recent answers are kept. Refusals are not kept
# (an exception is never cached), and the region is part of the key. The cache holds numbers only, linked to
# nobody, in this process's memory. An erasure empties it all the same (`forget_recent_numbers`) in every
# API replica (its announcement) and in the consumer that applies it; the other consumers never see it, and
# empty theirs every ten minutes (events/consumer.py, NUMBERS_KEPT_S).
PHONE_CACHE_SIZE = 16_384


@lru_cache(maxsize=PHONE_CACHE_SIZE)
def _e164(value: str, default_region: str) -> str:
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException as error:
        # In this project's words: the library's own message reads "(1) The string supplied ...".
        reason = _PHONE_PARSE_REASONS.get(error.error_type, "it does not look like one")
        raise InvalidIdentifier(f"not a phone number ({reason})") from error
    # "Possible" (a plausible length for the country), not "valid" (an allocated range): number ranges
    # are allocated over time, and stale metadata must not turn a real caller into a dead letter.
    if not phonenumbers.is_possible_number(number):
        raise InvalidIdentifier("not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def recent_numbers() -> int:
    """How many phone numbers' normalised forms are kept."""
    return _e164.cache_info().currsize


def forget_recent_numbers() -> None:
    """Empty the cache of recent phone numbers (a citizen was erased: nothing of theirs stays anywhere)."""
    _e164.cache_clear()


def named_identifiers(event: CloudEvent, *, default_region: str) -> list[tuple[IdentifierKind, str]]:
    """The normalised identifiers the envelope names the citizen by (raises InvalidIdentifier)."""
    if event.citizenphone is None and event.citizenemail is None and event.citizencaseref is None:
        # Nearly every event names its citizen by id; this is asked several times per event.
        return []
    return [
        (IdentifierKind(kind), normalise(IdentifierKind(kind), value, default_region=default_region))
        for kind, value in event.identifiers.items()
    ]


def taught_identifiers(event: CloudEvent, *, default_region: str) -> list[tuple[IdentifierKind, str]]:
    """Identifiers an event with a known citizen teaches the index: its envelope's, and its data's.

    A `profile.updated` event's phone and email, and the case reference of case and complaint events,
    belong to the event's citizen: only the fields a type declares teach (the contract lists the types). A
    field of the same name kept as an extra of another type (a web form's `email`, say, which may be a
    neighbour's) teaches nothing: pointing that address at the event's citizen would open their context to
    whoever is found by it next. Data that does not normalise teaches nothing (it was validated already; a
    malformed phone in a profile is not a reason to lose the profile update).
    """
    return taught_by(event, parse_data(event.type, event.data), default_region=default_region)


def taught_by(
    event: CloudEvent, data: EventData | None, *, default_region: str
) -> list[tuple[IdentifierKind, str]]:
    """As `taught_identifiers`, with the event's data as `parse_data` gives it."""
    named = named_identifiers(event, default_region=default_region)
    found = dict.fromkeys(named) if named else {}
    if data is None:
        return list(found)
    # A model's declared fields are all in its __dict__ (defaults included); its kept extras are not.
    fields = data.__dict__
    for kind, name in _data_identifiers(type(data)):
        value = fields[name]
        if value:
            try:
                found[(kind, normalise(kind, value, default_region=default_region))] = None
            except InvalidIdentifier:
                continue
    return list(found)


# The data fields that teach an identifier, and which kind.
_DATA_IDENTIFIERS = (
    (IdentifierKind.phone, "phone"),
    (IdentifierKind.email, "email"),
    (IdentifierKind.case, "case_ref"),
)


@cache
def _data_identifiers(model: type[EventData]) -> tuple[tuple[IdentifierKind, str], ...]:
    """The identifier fields `model` declares (text fields, by the taxonomy's types), with their kinds."""
    return tuple((kind, name) for kind, name in _DATA_IDENTIFIERS if name in model.model_fields)
