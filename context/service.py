"""From a resolved event to what the write path applies (pure)."""

import json
from dataclasses import dataclass, field

from context.identity import IdentifierKind, taught_identifiers
from context.profile import profile_fields
from context.summary import fact_of
from models.events import CloudEvent
from models.taxonomy import ERASURE_TYPE


@dataclass(frozen=True, slots=True)
class EventWrite:
    """Everything one event does to the projection, computed before Redis is touched."""

    event: CloudEvent
    # The event's stored JSON form, computed once (decoding has usually computed it already).
    stored: str
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

    `stored` is the event's JSON form (`event.to_json()`) when the caller has it already.
    """
    if event.type == ERASURE_TYPE:
        return EventWrite(event=event, stored="", erase=True)
    fact = fact_of(event)
    return EventWrite(
        event=event,
        stored=stored if stored is not None else event.to_json(),
        fact=fact.model_dump_json() if fact is not None else "",
        profile={name: json.dumps(value) for name, value in profile_fields(event).items()},
        identifiers=taught_identifiers(event, default_region=default_region),
    )
