"""Realistic CloudEvents for the bench: a mix of the documented types over many citizens (pure).

Events are built as JSON documents directly (not through the models): producing 200,000 of them must
not take longer than consuming them. Every one is valid under the contract, so none is dead-lettered.
"""

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from models.taxonomy import EXAMPLE_DATA

SOURCE = "/bench/load"
# Weights roughly like a contact centre's week: mostly contacts, some case work, few profile changes.
TYPE_WEIGHTS: dict[str, int] = {
    "call.ended": 24,
    "chat.message": 14,
    "email.received": 10,
    "web.form.submitted": 8,
    "case.opened": 3,
    "case.updated": 10,
    "case.closed": 2,
    "payment.received": 8,
    "payment.failed": 3,
    "appointment.booked": 4,
    "appointment.missed": 2,
    "letter.sent": 8,
    "complaint.raised": 1,
    "profile.updated": 3,
}
_TYPES = list(TYPE_WEIGHTS)
_WEIGHTS = list(TYPE_WEIGHTS.values())


def citizen_id(number: int) -> str:
    """The bench's citizen ids: B-0000001, B-0000002, ..."""
    return f"B-{number:07d}"


@dataclass(frozen=True)
class Workload:
    """Which citizens events go to and how far back they date."""

    citizens: int
    max_age_days: float = 60.0
    seed: int = 7


def event_document(
    *, event_id: str, citizen: int, type_: str, moment: datetime, rng: random.Random
) -> dict[str, Any]:
    """One structured-mode CloudEvent for citizen number `citizen`."""
    data = dict(EXAMPLE_DATA[type_])
    # Identifiers stay unique per citizen, so the identifier index maps each to exactly one person.
    if "case_ref" in data:
        data["case_ref"] = f"HB-{citizen}"
    if type_ == "profile.updated":
        data["phone"] = f"+447{citizen:09d}"
        data["email"] = f"citizen{citizen}@example.org"
    if "call_id" in data:
        data["call_id"] = f"CALL-{rng.randrange(10**8)}"
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": SOURCE,
        "type": type_,
        "subject": citizen_id(citizen),
        "time": moment.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": data,
    }


def events(
    workload: Workload, count: int, *, prefix: str = "e", now: datetime | None = None
) -> Iterator[tuple[str, bytes]]:
    """`count` events as (citizen id, JSON bytes), citizens drawn uniformly, times within the age window."""
    rng = random.Random(workload.seed)  # noqa: S311 (test data, not crypto)
    moment = now or datetime.now(UTC)
    span_s = workload.max_age_days * 86_400
    for seq in range(count):
        citizen = rng.randrange(1, workload.citizens + 1)
        type_ = rng.choices(_TYPES, _WEIGHTS)[0]
        when = moment - timedelta(seconds=rng.random() * span_s)
        document = event_document(
            event_id=f"{prefix}-{seq}", citizen=citizen, type_=type_, moment=when, rng=rng
        )
        yield citizen_id(citizen), json.dumps(document, separators=(",", ":")).encode()


def per_citizen(workload: Workload, per: int, *, now: datetime | None = None) -> Iterator[tuple[str, bytes]]:
    """Exactly `per` events for every citizen of the workload (for timelines of a known length)."""
    rng = random.Random(workload.seed)  # noqa: S311 (test data, not crypto)
    moment = now or datetime.now(UTC)
    span_s = workload.max_age_days * 86_400
    for citizen in range(1, workload.citizens + 1):
        for seq in range(per):
            type_ = rng.choices(_TYPES, _WEIGHTS)[0]
            when = moment - timedelta(seconds=rng.random() * span_s)
            document = event_document(
                event_id=f"c{citizen}-{seq}", citizen=citizen, type_=type_, moment=when, rng=rng
            )
            yield citizen_id(citizen), json.dumps(document, separators=(",", ":")).encode()


def stamped_id(sent_ns: int, seq: int) -> str:
    """An event id that carries its send time, so the receiver measures freshness from the id alone."""
    return f"t{sent_ns}-{seq}"


# The id of the event a paced producer sends before the others, once connected (bench/produce.py): it
# carries no send time either.
READY_ID = "w-ready"


def warm_up_id(seq: int) -> str:
    """The id of an event sent before the timing starts: it carries no send time, so it is not timed."""
    return f"w{seq}"


def sent_ns_of(event_id: str) -> int | None:
    """The send time carried by a stamped id (None for any other id)."""
    if not event_id.startswith("t"):
        return None
    head, _, _ = event_id[1:].partition("-")
    return int(head) if head.isdigit() else None
