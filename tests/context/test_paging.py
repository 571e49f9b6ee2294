"""Timeline cursors (pure)."""

import base64
import re

import pytest

import context.paging as paging
from context.paging import NOT_ISSUED, REBUILT, InvalidCursor, IssuedCursor, decode_cursor, encode_cursor
from context.store import TimelinePosition

POSITION = TimelinePosition(1_793_953_351_112_647, "11:/bench/loade-0")


def test_an_issued_cursor_reads_back_as_the_position_it_was_issued_for() -> None:
    text = encode_cursor("20261130T020000-abcdef", POSITION)
    issued = IssuedCursor(text)
    assert issued == text
    assert (issued.epoch, issued.position) == ("20261130T020000-abcdef", POSITION)
    assert decode_cursor(text, epoch="20261130T020000-abcdef") == POSITION


def test_a_parsed_cursor_is_not_parsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    issued = IssuedCursor(encode_cursor("e1", POSITION))

    def parse_again(_cursor: str) -> None:
        raise AssertionError("parsed again")

    monkeypatch.setattr(paging, "parse_cursor", parse_again)
    assert decode_cursor(issued, epoch="e1") == POSITION


def test_a_cursor_of_another_generation_is_refused_as_rebuilt() -> None:
    with pytest.raises(InvalidCursor, match=re.escape(REBUILT)):
        decode_cursor(IssuedCursor(encode_cursor("e1", POSITION)), epoch="e2")


@pytest.mark.parametrize(
    "text",
    [
        "not base64 at all!",
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),
        base64.urlsafe_b64encode(b'["e1", true, "k"]').decode(),
        base64.urlsafe_b64encode(b"[" * 5000).decode(),
    ],
)
def test_a_cursor_this_api_did_not_issue_is_refused(text: str) -> None:
    with pytest.raises(InvalidCursor, match=re.escape(NOT_ISSUED)):
        IssuedCursor(text)
