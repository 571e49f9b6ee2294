"""The messages of the changes channel, read as the API's change hub reads them (pure)."""

import json

import pytest
from pydantic import ValidationError

from context.compact import EVENT_FRAGMENTS
from context.store import change_of, published_change
from tests.factories import make_event


def test_a_change_with_an_event_reads_the_event_from_its_stored_form() -> None:
    event = make_event("C-1")
    header = json.dumps({"citizen_id": "C-1", "epoch": "E1", "version": 4})
    message, stored = published_change(f"{header}\n{EVENT_FRAGMENTS.compact(event.to_json())}")
    change = change_of(message, stored)
    assert (change.citizen_id, change.epoch, change.version, change.event) == ("C-1", "E1", 4, event)


def test_a_profile_only_change_has_no_event() -> None:
    profile = {"preferred_language": "cy"}
    header = json.dumps({"citizen_id": "C-1", "epoch": "E1", "version": 5, "profile": profile})
    change = change_of(*published_change(header))
    assert change.event is None
    assert change.profile is not None
    assert change.profile.preferred_language == "cy"


def test_a_change_with_its_event_inline_still_reads() -> None:
    # As published before events followed the JSON in their stored form (an API upgraded first).
    event = make_event("C-1")
    message = {"citizen_id": "C-1", "epoch": "E1", "version": 2, "event": json.loads(event.to_json())}
    assert change_of(*published_change(json.dumps(message))).event == event


def test_other_messages_are_json_alone() -> None:
    message = {"citizen_id": "C-1", "epoch": "E1", "erased": True}
    assert published_change(json.dumps(message)) == (message, "")


def test_a_damaged_stored_event_is_an_error_not_a_change() -> None:
    header = json.dumps({"citizen_id": "C-1", "epoch": "E1", "version": 4})
    with pytest.raises(ValidationError):
        change_of(*published_change(f"{header}\nnot an event"))
