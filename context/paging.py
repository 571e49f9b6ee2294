"""Timeline paging rules (pure): opaque cursors and filters."""

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

from context.store import TimelinePosition
from models.events import CloudEvent
from models.security import has_lone_surrogates


class InvalidCursor(ValueError):
    """A text not in a cursor's form, or a cursor of a generation of the projection that is not served."""


# Cursors are not signed: their form is checked, and the generation they name; a position that was never
# issued only starts the page there, in a timeline the caller may read anyway.
NOT_ISSUED = "the cursor is not a timeline cursor (pass next_cursor as it came)"
REBUILT = (
    "the cursor names a generation of the projection that is not served (it was rebuilt since the cursor "
    "was issued); start from the first page"
)


def encode_cursor(epoch: str, position: TimelinePosition) -> str:
    """An opaque cursor pointing just below `position` in generation `epoch`."""
    raw = json.dumps([epoch, position.score, position.key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


class IssuedCursor(str):
    """A cursor in the form this API issues, as the request gave it, with the generation and position it
    names parsed (once: the request's validation parses it, the read uses what it found)."""

    epoch: str
    position: TimelinePosition

    def __new__(cls, cursor: str) -> "IssuedCursor":
        """Raises InvalidCursor for a text that is not in a cursor's form."""
        epoch, position = parse_cursor(cursor)
        issued = super().__new__(cls, cursor)
        issued.epoch, issued.position = epoch, position
        return issued


def decode_cursor(cursor: str, *, epoch: str) -> TimelinePosition:
    """The position a cursor points below; raises InvalidCursor (also when the epoch has changed)."""
    issued = cursor if isinstance(cursor, IssuedCursor) else IssuedCursor(cursor)
    if issued.epoch != epoch:
        raise InvalidCursor(REBUILT)
    return issued.position


def parse_cursor(cursor: str) -> tuple[str, TimelinePosition]:
    """The generation a cursor was issued in and the position it points below; raises InvalidCursor for a
    text not in a cursor's form (checked with the request's other parameters, before any read)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_epoch, score, key = json.loads(raw)
    except (binascii.Error, ValueError, TypeError, RecursionError) as error:
        # RecursionError: a crafted cursor nesting deep enough to exhaust the JSON parser.
        raise InvalidCursor(NOT_ISSUED) from error
    valid_score = isinstance(score, int) and not isinstance(score, bool)
    if not isinstance(cursor_epoch, str) or not valid_score or not isinstance(key, str):
        raise InvalidCursor(NOT_ISSUED)
    if has_lone_surrogates(cursor_epoch) or has_lone_surrogates(key):
        # JSON's unpaired "\\ud800" escape, which this API never issues, and no Redis command takes.
        raise InvalidCursor(NOT_ISSUED)
    return cursor_epoch, TimelinePosition(score, key)


@dataclass(frozen=True)
class TimelineFilter:
    """Which events a timeline page shows."""

    types: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, event: CloudEvent) -> bool:
        """Whether `event` passes every filter that is set."""
        if self.types and event.type not in self.types:
            return False
        if self.channels:
            channel = event.data.get("channel") if isinstance(event.data, dict) else None
            if channel not in self.channels:
                return False
        if self.since is not None and event.time < self.since:
            return False
        return self.until is None or event.time <= self.until
