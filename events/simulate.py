"""Synthetic traffic: realistic interactions for many citizens, with a few malformed records among them.

Each simulated citizen first gets a profile (with a phone number from Ofcom's ranges reserved for drama,
so it is never a real person's) and a few weeks of history, then live interactions that follow on from
what came before: a call starts and then ends, a case opens, is updated and closes, a booked appointment
is missed. The malformed records are each of a kind the consumer must dead-letter, never apply.
"""

import json
import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from events.codec import encode_structured
from events.producer import partition_key
from models.events import STRUCTURED_CONTENT_TYPE, CloudEvent
from models.taxonomy import EXAMPLE_DATA, TYPICAL_SOURCES, CommunicationNeed

SIMULATED_PREFIX = "S-"
# What the consumer puts in `dlq.reason` for each kind of malformed record this module makes.
MALFORMED_REASONS = ("not-json", "invalid", "invalid-data", "no-citizen")


# A run's default length when neither a count nor a duration bounds it.
DEFAULT_RECORDS = 500


def run_length(count: int | None, duration_s: float | None, rate: float) -> int:
    """How many records a run sends at most: `count`, or as many as its pace fits in `duration_s`, whichever
    is fewer (`DEFAULT_RECORDS` when neither bounds it). The pace sends the n-th record n / `rate` seconds in,
    from the first at once: a run shorter than one record's interval still sends that one (truncating
    `duration_s * rate` sent none for half a second at 1/s, and one for a second)."""
    if count is None and duration_s is None:
        return DEFAULT_RECORDS
    # Those due before the end: n / rate < duration_s. Rounded first, so that 0.3 s at 10/s is 3, not 4.
    paced = math.ceil(round(duration_s * rate, 9)) if duration_s is not None else None
    return min(bound for bound in (count, paced) if bound is not None)


def malformed_due(planted: int, malformed: int, *, done: float, sent: int) -> bool:
    """Whether the next record of a run should be malformed: `malformed` of them spread evenly over the run,
    the n-th once it is `(n + 0.5) / malformed` done (`done`, from 0 to 1), and never more than half of
    those sent, counting this one (`planted` of `sent` so far): never first, so the desk fills first."""
    return planted < malformed and done >= (planted + 0.5) / malformed and 2 * (planted + 1) <= sent + 1


@dataclass(frozen=True)
class SimulatedRecord:
    """One Kafka record to publish; `malformed` names the dead-letter reason it must get, if any."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    citizen_id: str | None
    event_type: str | None
    malformed: str | None = None


def simulated_phone(index: int) -> str | None:
    """A phone number for the index-th simulated citizen (1,500 of them); None beyond that.

    07700 900000-900999 and 01632 960000-960999 are reserved for drama. The first 500 mobile numbers are
    left alone: the demo citizens use them.
    """
    if index < 500:
        return f"07700 900{500 + index:03d}"
    if index < 1500:
        return f"01632 960{index - 500:03d}"
    return None


@dataclass(frozen=True)
class _Appointment:
    reference: str
    starts: datetime
    purpose: str


@dataclass
class _Citizen:
    citizen_id: str
    phone: str | None
    introduced: bool = False
    open_cases: list[str] = field(default_factory=list)
    # Booked appointments the citizen will not attend, earliest first: each is missed once it is past.
    to_miss: list[_Appointment] = field(default_factory=list)
    call_in_progress: str | None = None


# Live interactions by how often they happen; a few come in pairs or sequences (see `_event`): a call
# started ends, and one booked appointment in MISSED_ONE_IN is missed an hour after it started.
_WEIGHTS: dict[str, int] = {
    "call.started": 18,
    "chat.message": 12,
    "email.received": 8,
    "web.form.submitted": 8,
    "case.opened": 6,
    "case.updated": 8,
    "case.closed": 3,
    "payment.received": 8,
    "payment.failed": 4,
    "appointment.booked": 5,
    "letter.sent": 6,
    "complaint.raised": 2,
    "profile.updated": 2,
}

# Booked appointments: what for, and where.
_APPOINTMENTS = (
    ("blue badge assessment", "Civic Centre, room 4"),
    ("housing needs interview", "Housing Options, Market Street"),
    ("council tax review", "Civic Centre, room 2"),
    ("benefits advice session", "Library, community room"),
)
MISSED_ONE_IN = 3

_CALL_TOPICS = (
    "Asked when {case} will be decided",
    "Reported a change of address",
    "Asked for help paying council tax",
    "Chased a missed bin collection",
    "Asked about a blue badge renewal",
    "Queried a letter about {case}",
)
_CHAT_TOPICS = (
    "Asked whether a BSL interpreter can attend the assessment",
    "Asked how to upload evidence",
    "Asked about opening hours of the civic centre",
    "Asked for a call back about {case}",
)
_FORMS = (
    ("report-missed-bin", "Reported a missed bin collection"),
    ("change-of-address", "Told us about a change of address"),
    ("council-tax-discount", "Applied for a single-person council tax discount"),
)
_CASE_TYPES = (("HB", "housing-benefit"), ("CT", "council-tax-reduction"), ("BB", "blue-badge"))
_CASE_STATUSES = ("awaiting-evidence", "under-review", "decision-pending")
_LANGUAGES = ("cy", "pl", "ur", "pa", "ro", "so", "ar")
_FLAGS = ("bereavement", "financial-hardship", "domestic-abuse", "mental-health", "recent-hospital-discharge")


class Simulator:
    """An endless, reproducible (by `seed`) sequence of records for `citizens` citizens."""

    def __init__(
        self,
        *,
        citizens: int,
        extra_citizens: tuple[str, ...] = (),
        seed: int | None = None,
        history_days: int = 30,
    ) -> None:
        self._random = random.Random(seed)  # noqa: S311 (test data, not cryptography)
        self._history = timedelta(days=history_days)
        self._citizens = [
            _Citizen(f"{SIMULATED_PREFIX}{100000 + n}", simulated_phone(n)) for n in range(citizens)
        ]
        # Citizens that exist already (the demo's): they get live interactions only, never a profile.
        self._extra = [_Citizen(cid, None, introduced=True) for cid in extra_citizens]
        if not self._citizens and not self._extra:
            raise ValueError("simulate at least one citizen")
        self._queue: list[tuple[_Citizen, str, datetime]] = []
        # Interactions that finish later (a call's end), by when they are due.
        self._later: list[tuple[_Citizen, str, datetime]] = []
        self._malformed_made = 0

    def records(self, now: datetime | None = None) -> Iterator[SimulatedRecord]:
        """Valid records forever (each dated `now`, or its history before it)."""
        while True:
            yield self.next_record(now)

    def next_record(self, now: datetime | None = None) -> SimulatedRecord:
        """The next valid record."""
        now = now or datetime.now(UTC)
        if self._later and self._later[0][2] <= now:
            citizen, type_, moment = self._later.pop(0)
        elif self._extra and (not self._citizens or self._random.random() < 0.5):
            # Named citizens (the demo's, that someone is probably watching) get half of the records.
            citizen = self._random.choice(self._extra)
            type_, moment = self._pick_type(citizen), now
        else:
            if not self._queue:
                citizen = self._random.choice(self._citizens)
                if not citizen.introduced:
                    self._introduce(citizen, now)
                else:
                    self._queue.append((citizen, self._pick_type(citizen), now))
            citizen, type_, moment = self._queue.pop(0)
        event = self._event(citizen, type_, moment)
        value, headers = encode_structured(event)
        return SimulatedRecord(
            key=partition_key(event),
            value=value,
            headers=headers,
            citizen_id=citizen.citizen_id,
            event_type=type_,
        )

    def malformed_record(self, now: datetime | None = None) -> SimulatedRecord:
        """A record the consumer must dead-letter; the kinds take turns (see MALFORMED_REASONS)."""
        now = now or datetime.now(UTC)
        reason = MALFORMED_REASONS[self._malformed_made % len(MALFORMED_REASONS)]
        self._malformed_made += 1
        citizen = self._random.choice([*self._citizens, *self._extra]).citizen_id
        document: dict[str, Any] = {
            "specversion": "1.0",
            "id": str(uuid.UUID(int=self._random.getrandbits(128))),
            "source": "/payments",
            "type": "payment.failed",
            "subject": citizen,
            "time": now.isoformat(),
            "datacontenttype": "application/json",
            "data": dict(EXAMPLE_DATA["payment.failed"]),
        }
        if reason == "not-json":
            value = b'{"specversion": "1.0", "id": "truncated'
        else:
            if reason == "invalid":
                del document["time"]  # a publisher that forgot when it happened
            elif reason == "invalid-data":
                document["data"]["amount"] = "-42.00"  # a negative payment breaks the schema
            elif reason == "no-citizen":
                del document["subject"]  # nobody to file it under
            value = json.dumps(document).encode()
        headers = [("content-type", STRUCTURED_CONTENT_TYPE.encode())]
        return SimulatedRecord(
            key=citizen.encode(),
            value=value,
            headers=headers,
            citizen_id=None,
            event_type=None,
            malformed=reason,
        )

    # -- what happens to a citizen ------------------------------------------------------------------

    def _introduce(self, citizen: _Citizen, now: datetime) -> None:
        """A profile, then a few interactions spread over the history window, oldest first."""
        citizen.introduced = True
        start = now - self._history
        moments = sorted(
            start + self._history * self._random.random() for _ in range(self._random.randint(2, 6))
        )
        self._queue.append((citizen, "profile.updated", start))
        for moment in moments:
            self._queue.append((citizen, self._pick_type(citizen), moment))

    def _pick_type(self, citizen: _Citizen) -> str:
        types = list(_WEIGHTS)
        weights = [
            0
            if (t in {"case.updated", "case.closed"} and not citizen.open_cases)
            or (t == "call.started" and citizen.call_in_progress)
            # A named citizen's personal needs are theirs: the simulator never rewrites them.
            or (t == "profile.updated" and citizen in self._extra)
            else _WEIGHTS[t]
            for t in types
        ]
        return self._random.choices(types, weights)[0]

    def _event(self, citizen: _Citizen, type_: str, moment: datetime) -> CloudEvent:
        data = self._data(citizen, type_, moment)
        if type_ == "call.started":
            # The call ends a little later; its end is published when it is due.
            ends = moment + timedelta(seconds=self._random.randint(20, 300))
            self._later.append((citizen, "call.ended", ends))
            self._later.sort(key=lambda item: item[2])

        return CloudEvent(
            specversion="1.0",
            id=str(uuid.UUID(int=self._random.getrandbits(128))),
            source=TYPICAL_SOURCES[type_.split(".")[0]],
            type=type_,
            subject=citizen.citizen_id,
            time=min(moment, datetime.now(UTC)),
            datacontenttype="application/json",
            data=data,
        )

    def _reference(self, prefix: str) -> str:
        return f"{prefix}-{self._random.randint(1000, 9999)}"

    def _data(self, citizen: _Citizen, type_: str, moment: datetime) -> dict[str, Any]:
        data = dict(EXAMPLE_DATA[type_])
        pick = self._random.choice
        case = citizen.open_cases[-1] if citizen.open_cases else "their claim"
        if type_ == "call.started":
            citizen.call_in_progress = self._reference("CALL")
            data.update(call_id=citizen.call_in_progress, summary="Inbound call")
        elif type_ == "call.ended":
            call = citizen.call_in_progress or self._reference("CALL")
            citizen.call_in_progress = None
            data.update(
                call_id=call,
                summary=pick(_CALL_TOPICS).format(case=case),
                duration_s=self._random.randint(45, 1500),
                outcome=pick(("information-given", "resolved", "callback-booked", "referred")),
            )
        elif type_ == "chat.message":
            data.update(summary=pick(_CHAT_TOPICS).format(case=case), conversation_id=self._reference("CHAT"))
        elif type_ == "email.received":
            data.update(thread_id=self._reference("TH"), summary=f"Sent evidence for {case}")
        elif type_ == "web.form.submitted":
            form, summary = pick(_FORMS)
            data.update(form=form, summary=summary, reference=self._reference("WF"))
        elif type_ == "case.opened":
            prefix, kind = pick(_CASE_TYPES)
            ref = self._reference(prefix)
            citizen.open_cases.append(ref)
            data.update(
                case_ref=ref,
                case_type=kind,
                summary=f"{kind.replace('-', ' ').capitalize()} claim {ref} opened",
            )
        elif type_ == "case.updated":
            status = pick(_CASE_STATUSES)
            data.update(case_ref=case, status=status, summary=f"{case}: {status.replace('-', ' ')}")
        elif type_ == "case.closed":
            ref = citizen.open_cases.pop(0)
            resolution = pick(("awarded", "refused", "withdrawn"))
            data.update(case_ref=ref, resolution=resolution, summary=f"{ref} decided: {resolution}")
        elif type_ in {"payment.received", "payment.failed"}:
            amount = f"{self._random.randint(20, 400)}.{self._random.randint(0, 99):02d}"
            verb = "received" if type_ == "payment.received" else "failed"
            data.update(
                amount=amount,
                reference=self._reference("CT"),
                summary=f"Council tax payment of GBP {amount} {verb}",
            )
        elif type_ == "appointment.booked":
            purpose, location = pick(_APPOINTMENTS)
            starts = (moment + timedelta(days=self._random.randint(1, 14))).replace(
                minute=0, second=0, microsecond=0
            )
            booked = _Appointment(self._reference("APT"), starts, purpose)
            summary = f"{purpose.capitalize()} booked"
            data.update(appointment_id=booked.reference, starts_at=starts.isoformat(), summary=summary)
            data.update(location=location)
            if self._random.randrange(MISSED_ONE_IN) == 0:
                # Not attended: missed an hour after it started (later in the history, or days from now).
                citizen.to_miss.append(booked)
                citizen.to_miss.sort(key=lambda appointment: appointment.starts)
                self._later.append((citizen, "appointment.missed", starts + timedelta(hours=1)))
                self._later.sort(key=lambda item: item[2])
        elif type_ == "appointment.missed":
            missed = citizen.to_miss.pop(0)  # the earliest is the one due first
            data.update(
                appointment_id=missed.reference,
                starts_at=missed.starts.isoformat(),
                summary=f"Did not attend the {missed.purpose}",
            )
        elif type_ == "letter.sent":
            data.update(
                letter_ref=self._reference("LTR"),
                format=pick(("standard", "large-print", "easy-read")),
                summary=f"Letter about {case}",
            )
        elif type_ == "complaint.raised":
            data.update(
                complaint_ref=self._reference("CMP"),
                case_ref=citizen.open_cases[-1] if citizen.open_cases else None,
            )
            if data["case_ref"] is None:
                del data["case_ref"]
        elif type_ == "profile.updated":
            data = self._profile(citizen)
        return data

    def _profile(self, citizen: _Citizen) -> dict[str, Any]:
        chance = self._random.random
        data: dict[str, Any] = {"channel": "system"}
        notes = []
        if chance() < 0.3:
            data["preferred_language"] = self._random.choice(_LANGUAGES)
            notes.append(f"prefers language {data['preferred_language']}")
        if chance() < 0.3:
            data["communication_needs"] = [self._random.choice(list(CommunicationNeed)).value]
            notes.append("has communication needs")
        if chance() < 0.2:
            data["vulnerability_flags"] = [self._random.choice(_FLAGS)]
            notes.append("has a vulnerability flag")
        if citizen.phone is not None:
            data["phone"] = citizen.phone
        data["summary"] = ("Profile: " + "; ".join(notes)) if notes else "Contact details recorded"
        return data
