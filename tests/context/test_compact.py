"""The compact stored form of events and summary facts (pure)."""

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from context.compact import EVENT_FRAGMENTS, FACT_FRAGMENTS, MARKERS, Fragments
from context.service import plan_write
from context.summary import fact_from, fact_of, stored_fact
from models.events import CloudEvent
from models.taxonomy import parse_data
from tests.factories import example_data, make_event

TABLES = [EVENT_FRAGMENTS, FACT_FRAGMENTS]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
FACT_TYPES = ["call.ended", "case.opened", "case.closed", "appointment.booked", "payment.failed"]


def test_an_event_is_stored_without_its_envelope_and_read_back_exactly() -> None:
    document = make_event("C-1", type_="chat.message").to_json()
    stored = EVENT_FRAGMENTS.compact(document)
    assert len(stored) < len(document) - 100
    assert EVENT_FRAGMENTS.expand(stored) == document


@pytest.mark.parametrize("type_", FACT_TYPES)
def test_a_fact_is_stored_without_its_field_names_and_read_back_exactly(type_: str) -> None:
    event = make_event("C-1", type_=type_, data=example_data(type_))
    fact = fact_of(event)
    assert fact is not None
    document = fact.model_dump_json()
    stored = FACT_FRAGMENTS.compact(document)
    # The write path writes the stored form itself (context/summary.py, stored_fact): the same text.
    assert plan_write(event, default_region="GB").fact == stored
    assert len(stored) < 0.75 * len(document)
    assert FACT_FRAGMENTS.expand(stored) == document


@pytest.mark.parametrize("table", TABLES)
def test_nothing_is_stored_as_nothing(table: Fragments) -> None:
    # An event without a summary fact stores "" as its fact.
    assert table.compact("") == ""
    assert table.expand("") == ""


def test_stored_forms_joined_expand_to_the_joined_documents() -> None:
    documents = [make_event("C-1", minutes_ago=m).to_json() for m in range(3)]
    joined = ",".join(EVENT_FRAGMENTS.compact(d) for d in documents)
    assert EVENT_FRAGMENTS.expand(joined) == ",".join(documents)


@pytest.mark.parametrize("table", TABLES)
@given(value=JSON_VALUES, ascii_only=st.booleans())
def test_any_json_text_reads_back_exactly(table: Fragments, value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=ascii_only)
    assert table.expand(table.compact(text)) == text


@pytest.mark.parametrize("table", TABLES)
@given(
    pieces=st.lists(
        st.sampled_from(['"', ",", ":", "{", "}", "a", *TABLES[0].fragments, *TABLES[1].fragments])
    )
)
def test_fragments_run_together_read_back_exactly(table: Fragments, pieces: list[str]) -> None:
    text = "".join(pieces)
    assert table.expand(table.compact(text)) == text


def test_markers_are_control_characters_that_json_never_holds_raw() -> None:
    assert len(set(MARKERS)) == len(MARKERS)
    assert all(ord(marker) < 0x20 and marker not in "\t\n\r" for marker in MARKERS)
    for table in TABLES:
        assert not any(marker in fragment for marker in MARKERS for fragment in table.fragments)
    with pytest.raises(ValueError, match="at most"):
        Fragments(("x",) * (len(MARKERS) + 1))


@pytest.mark.parametrize("table", TABLES)
def test_a_value_stored_before_the_compact_form_reads_back_unchanged(table: Fragments) -> None:
    document = make_event("C-1").to_json()
    assert table.expand(document) == document


# The types whose facts the write path writes from their parts, and a data field of free text each takes.
FACT_PARTS = {
    "call.ended": "call_id",
    "chat.message": "conversation_id",
    "email.received": "thread_id",
    "web.form.submitted": "summary",
    "complaint.raised": "complaint_ref",
    "case.opened": "case_ref",
    "case.updated": "status",
    "case.closed": "case_ref",
}
MOMENTS = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(2199, 12, 30),
    timezones=st.builds(
        timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
    ),
)


@given(
    type_=st.sampled_from(sorted(FACT_PARTS)),
    text=st.text(min_size=1, max_size=64),
    moment=MOMENTS,
    source=st.text(min_size=1, max_size=40),
    event_id=st.text(min_size=1, max_size=40),
    resolved=st.booleans(),
    without_thread=st.booleans(),
)
def test_a_fact_written_from_its_parts_is_its_models_stored_form(
    type_: str, text: str, moment: datetime, source: str, event_id: str, resolved: bool, without_thread: bool
) -> None:
    # Whatever the text (quotes, backslashes, control characters, any script), the time's offset and
    # precision, or the event's key: as the model encodes and the table compacts it.
    changes: dict[str, Any] = {FACT_PARTS[type_]: text}
    if type_ == "email.received" and without_thread:
        changes["thread_id"] = None  # the contact's key is then the event's own (source, id)
    update: dict[str, Any] = {"time": moment, "source": source, "id": event_id}
    if resolved:
        update |= {"subject": None, "citizenphone": "+447700900123"}
    document = make_event("C-1", type_=type_, data=example_data(type_, **changes)).model_copy(update=update)
    try:
        # As the consumer has it: decoded from JSON (pydantic's own time zone type, not the one made here).
        event = CloudEvent.model_validate_json(document.to_json())
        data = parse_data(type_, event.data)
    except ValidationError:
        assume(False)  # text the data's schema refuses (a status of blanks, say) never reaches the planner
    if resolved:
        # Named by a phone number only, then resolved as events/pipeline.py does: its JSON is made again.
        event = event.model_copy(update={"subject": "C-9"})
    fact = fact_from(event, data)
    assert fact is not None
    stored = stored_fact(event, data, event.to_json())
    assert stored == FACT_FRAGMENTS.compact(fact.model_dump_json())
    assert FACT_FRAGMENTS.expand(stored) == fact.model_dump_json()


@pytest.mark.parametrize("type_", ["call.ended", "chat.message", "case.opened", "case.closed"])
def test_plain_contact_and_case_facts_are_written_without_their_model(
    type_: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = CloudEvent.model_validate_json(make_event("C-1", type_=type_).to_json())
    data = parse_data(type_, event.data)
    fact = fact_of(event)
    assert fact is not None

    def no_model(*_args: object) -> None:
        raise AssertionError("the fact's model was built")

    monkeypatch.setattr("context.summary.fact_from", no_model)
    assert stored_fact(event, data, event.to_json()) == FACT_FRAGMENTS.compact(fact.model_dump_json())


@pytest.mark.parametrize("type_", ["letter.sent", "payment.received", "profile.updated", "x.unknown"])
def test_an_event_without_a_fact_stores_none(type_: str) -> None:
    event = make_event("C-1", type_=type_)
    assert stored_fact(event, parse_data(type_, event.data), event.to_json()) == ""
