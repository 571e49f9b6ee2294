"""The compact stored form of events (pure)."""

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from context.compact import FRAGMENTS, MARKERS, compact, expand
from tests.factories import make_event

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


def test_an_event_is_stored_without_its_envelope_and_read_back_exactly() -> None:
    document = make_event("C-1", type_="chat.message").to_json()
    stored = compact(document)
    assert len(stored) < len(document) - 100
    assert expand(stored) == document


def test_stored_forms_joined_expand_to_the_joined_documents() -> None:
    documents = [make_event("C-1", minutes_ago=m).to_json() for m in range(3)]
    assert expand(",".join(compact(d) for d in documents)) == ",".join(documents)


@given(JSON_VALUES, st.booleans())
def test_any_json_text_reads_back_exactly(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=ascii_only)
    assert expand(compact(text)) == text


@given(st.lists(st.sampled_from([*FRAGMENTS, '"', ",", ":", "{", "}", "a"]), max_size=30))
def test_fragments_run_together_read_back_exactly(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert expand(compact(text)) == text


def test_markers_are_control_characters_that_json_never_holds_raw() -> None:
    assert len(set(MARKERS)) == len(MARKERS) >= len(FRAGMENTS)
    assert all(ord(marker) < 0x20 and marker not in "\t\n\r" for marker in MARKERS)
    assert not any(marker in fragment for marker in MARKERS for fragment in FRAGMENTS)


def test_a_value_stored_before_the_compact_form_reads_back_unchanged() -> None:
    document = make_event("C-1").to_json()
    assert expand(document) == document
