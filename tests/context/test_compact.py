"""The compact stored form of events and summary facts (pure)."""

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from context.compact import EVENT_FRAGMENTS, FACT_FRAGMENTS, MARKERS, Fragments
from context.service import plan_write
from context.summary import fact_of
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
    # The write path serializes the fact itself (context/service.py): the same JSON.
    assert plan_write(event, default_region="GB").fact == document
    stored = FACT_FRAGMENTS.compact(document)
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
