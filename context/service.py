"""From a resolved event to what the write path applies (pure)."""

import json
from dataclasses import dataclass, field

from context.identity import IdentifierKind, taught_by
from context.profile import profile_from
from context.summary import stored_fact
from context.timeline import time_score
from models.events import CloudEvent
from models.taxonomy import ERASURE_TYPE, EventData, ProfileUpdated, parse_data


@dataclass(slots=True)  # not frozen: see events/records.py
class EventWrite:
    """Everything one event does to the projection, computed before Redis is touched."""

    event: CloudEvent
    # The event's stored JSON form, computed once (decoding has usually computed it already).
    stored: str
    # The event's time as its timeline score (`time_score`), computed once.
    score: int
    # Its summary fact in the stored form (context/compact.py), "" for none.
    fact: str = ""
    profile: dict[str, str] = field(default_factory=dict)
    identifiers: list[tuple[IdentifierKind, str]] = field(default_factory=list)
    erase: bool = False  # the citizen asked to be forgotten: remove everything, keep nothing of this

    @property
    def citizen_id(self) -> str:
        """The citizen whose context this write changes."""
        return self.event.citizen_id


def plan_write(event: CloudEvent, *, default_region: str, stored: str | None = None) -> EventWrite:
    """What `event` (already resolved to a citizen) writes: itself, its fact, profile fields, identifiers.

    `stored` is the event's JSON form when the caller has it already: exactly `event.to_json()` (the summary
    fact's time is read from it).
    """
    if event.type == ERASURE_TYPE:
        return EventWrite(event=event, stored="", score=time_score(event.time), erase=True)
    return plan_judged(
        event, parse_data(event.type, event.data), default_region=default_region, stored=stored
    )


def plan_judged(
    event: CloudEvent,
    data: EventData | None,
    *,
    default_region: str,
    stored: str | None = None,
    score: int | None = None,
) -> EventWrite:
    """As `plan_write`, for an event whose data the decoder has parsed already (`data`, as `parse_data`);
    `stored` is exactly `event.to_json()` when given, and `score` its time's score when the decoder has it."""
    score = time_score(event.time) if score is None else score
    if event.type == ERASURE_TYPE:
        return EventWrite(event=event, stored="", score=score, erase=True)
    stored = stored if stored is not None else event.to_json()
    # The data is parsed once per event (the decoder did it): the fact, the profile fields and the
    # identifiers each parsed it again, which was a fifth of the consumer's time per event.
    return EventWrite(
        event=event,
        stored=stored,
        score=score,
        fact=stored_fact(event, data, stored),
        profile=_profile_json(data),
        identifiers=taught_by(event, data, default_region=default_region),
    )


def _profile_json(data: EventData | None) -> dict[str, str]:
    """The profile fields an event's data sets, each value as JSON (only `profile.updated` sets any)."""
    if not isinstance(data, ProfileUpdated):
        return {}  # nearly every event: no call into the profile rules, no dict built and discarded
    return {name: json.dumps(value) for name, value in profile_from(data).items()}
