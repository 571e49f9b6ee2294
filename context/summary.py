"""The summary above the timeline (pure).

Each event contributes at most one small *fact* (`fact_of`). The projection keeps the facts of exactly the
events in the timeline, adding one when an event arrives and removing it when the event falls off the
timeline, so the stored facts are always the timeline's. `summarise` turns facts into the summary at a
given moment (the 7- and 30-day windows move with time, so that last step happens when it is read).
"""

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, Field, TypeAdapter

from context.compact import FACT_FRAGMENTS
from context.identity import case_reference
from context.timeline import age_cutoff, time_score
from models.context import (
    FailedPayment,
    LastContact,
    MissedAppointment,
    OpenCase,
    Summary,
    UpcomingAppointment,
)
from models.events import CloudEvent
from models.taxonomy import (
    AppointmentBooked,
    AppointmentMissed,
    CallEnded,
    CallStarted,
    CaseClosed,
    CaseOpened,
    CaseUpdated,
    ChatMessage,
    ComplaintRaised,
    EmailReceived,
    EventData,
    PaymentFailed,
    WebFormSubmitted,
    parse_data,
)


class ContactFact(BaseModel):
    """The citizen was in contact; several events of one contact (a call's start and end) share a key."""

    kind: Literal["contact"] = "contact"
    key: str
    channel: str
    time: AwareDatetime


class CaseFact(BaseModel):
    """A case's status at a moment."""

    kind: Literal["case"] = "case"
    case_ref: str
    status: str
    closed: bool
    time: AwareDatetime


class AppointmentFact(BaseModel):
    """An appointment was booked, or missed."""

    kind: Literal["appointment"] = "appointment"
    appointment_id: str
    starts_at: AwareDatetime | None
    location: str | None = None
    missed: bool
    time: AwareDatetime


class PaymentFailedFact(BaseModel):
    """A payment failed."""

    kind: Literal["payment_failed"] = "payment_failed"
    amount: str
    currency: str
    reason: str
    time: AwareDatetime


Fact = Annotated[ContactFact | CaseFact | AppointmentFact | PaymentFailedFact, Field(discriminator="kind")]
FACT = TypeAdapter(Fact)
# A citizen's facts are validated in one call: one call per fact cost more than the summary itself.
FACTS = TypeAdapter(list[Fact])


def fact_of(event: CloudEvent) -> Fact | None:
    """What `event` contributes to the summary, if anything."""
    return fact_from(event, parse_data(event.type, event.data))


def fact_from(event: CloudEvent, data: EventData | None) -> Fact | None:
    """As `fact_of`, with the event's data as `parse_data` gives it."""
    time = event.time
    key = _contact_key(event, data)
    if key is not None and data is not None:
        return ContactFact(key=key, channel=data.channel, time=time)
    case = _case_status(data)
    if case is not None:
        case_ref, status, closed = case
        return CaseFact(case_ref=case_ref, status=status, closed=closed, time=time)
    match data:
        case AppointmentBooked():
            return AppointmentFact(
                appointment_id=data.appointment_id,
                starts_at=data.starts_at,
                location=data.location,
                missed=False,
                time=time,
            )
        case AppointmentMissed():
            return AppointmentFact(
                appointment_id=data.appointment_id, starts_at=data.starts_at, missed=True, time=time
            )
        case PaymentFailed():
            # In pounds and pence, as the contract's examples write it ("142.00"): a publisher's 2.5 is 2.50.
            return PaymentFailedFact(
                amount=f"{data.amount:.2f}", currency=data.currency, reason=data.reason, time=time
            )
    return None


def stored_fact(event: CloudEvent, data: EventData | None, event_json: str) -> str:
    """What `event` contributes to the summary in its stored form (`FACT_FRAGMENTS.compact` of the fact's
    JSON), or "" for nothing; `event_json` is the event's JSON (`event.to_json()`).

    Contact and case facts, most of them, are written straight from their parts, the fact's time taken
    from the event's JSON, where it is encoded already: building the model, encoding it and compacting
    the JSON cost the consumer about a tenth of its time per event. Any other fact, and any part that JSON
    would escape, goes through the model. Tests hold both ways to the same text.
    """
    key = _contact_key(event, data)
    if key is not None and data is not None and not _ESCAPED_IN_JSON.search(key):
        # A channel is lower-case letters, digits and hyphens (models.taxonomy.Channel): nothing to escape.
        return f'{_CONTACT}{key}{_CHANNEL}{data.channel}{_TIME}{_time_in(event_json)}"}}'
    case = _case_status(data)
    if case is not None and not _ESCAPED_IN_JSON.search(case[0] + case[1]):
        case_ref, status, closed = case
        closing = _CLOSED_TIME if closed else _OPEN_TIME
        return f'{_CASE}{case_ref}{_STATUS}{status}{closing}{_time_in(event_json)}"}}'
    fact = fact_from(event, data)
    if fact is None:
        return ""
    # The model's own serializer, as model_dump_json() calls it, without that method's wrapping.
    return FACT_FRAGMENTS.compact(type(fact).__pydantic_serializer__.to_json(fact).decode())


def _contact_key(event: CloudEvent, data: EventData | None) -> str | None:
    """The key of the contact `event` records (events of one contact share it), if it records one."""
    match data:
        case CallStarted() | CallEnded():
            return f"call:{data.call_id}"
        case ChatMessage():
            return f"chat:{data.conversation_id}"
        case EmailReceived():
            return f"email:{data.thread_id or event.dedup_key}"
        case WebFormSubmitted():
            return f"web:{event.dedup_key}"
        case ComplaintRaised():
            return f"complaint:{data.complaint_ref}"
    return None


def _case_status(data: EventData | None) -> tuple[str, str, bool] | None:
    """(case reference, status, closed) for an event about a case."""
    match data:
        case CaseOpened() | CaseUpdated():
            return data.case_ref, data.status, False
        case CaseClosed():
            return data.case_ref, "closed", True
    return None


# What a JSON string escapes (serde_json, pydantic's encoder, writes every other character as it is).
_ESCAPED_IN_JSON = re.compile(r'["\\\x00-\x1f]')
_TIME_ATTRIBUTE = '","time":"'
_CONTACT, _CHANNEL, _TIME = (
    FACT_FRAGMENTS.marker(fragment)
    for fragment in ('{"kind":"contact","key":"', '","channel":"', _TIME_ATTRIBUTE)
)
_CASE, _STATUS, _OPEN_TIME, _CLOSED_TIME = (
    FACT_FRAGMENTS.marker(fragment)
    for fragment in (
        '{"kind":"case","case_ref":"',
        '","status":"',
        '","closed":false,"time":"',
        '","closed":true,"time":"',
    )
)


def _time_in(event_json: str) -> str:
    """The event's time as its JSON encodes it. The envelope's attributes come before its data and
    extensions, and no string in JSON holds an unescaped quote, so the first `","time":"` is the time."""
    start = event_json.index(_TIME_ATTRIBUTE) + len(_TIME_ATTRIBUTE)
    return event_json[start : event_json.index('"', start)]


def summarise(
    facts: list[Fact], *, now: datetime, repeat_threshold: int = 3, recent_days: int = 30
) -> Summary:
    """The summary at `now` of a timeline whose facts are `facts` (in any order)."""
    contacts = _contacts(f for f in facts if isinstance(f, ContactFact))
    last = max(contacts, key=lambda c: (c.time, c.key), default=None)
    week, month = now - timedelta(days=7), now - timedelta(days=30)
    by_channel_7d: defaultdict[str, int] = defaultdict(int)
    by_channel_30d: defaultdict[str, int] = defaultdict(int)
    for contact in contacts:
        if week <= contact.time <= now:
            by_channel_7d[contact.channel] += 1
        if month <= contact.time <= now:
            by_channel_30d[contact.channel] += 1
    recent = now - timedelta(days=recent_days)
    return Summary(
        last_contact=LastContact(time=last.time, channel=last.channel) if last else None,
        contacts_7d=dict(sorted(by_channel_7d.items())),
        contacts_30d=dict(sorted(by_channel_30d.items())),
        repeat_contact=sum(by_channel_7d.values()) >= repeat_threshold,
        open_cases=_open_cases(f for f in facts if isinstance(f, CaseFact)),
        **_appointments([f for f in facts if isinstance(f, AppointmentFact)], now=now, recent=recent),
        recent_failed_payments=sorted(
            (
                FailedPayment(time=f.time, amount=f.amount, currency=f.currency, reason=f.reason)
                for f in facts
                if isinstance(f, PaymentFailedFact) and recent <= f.time <= now
            ),
            key=lambda p: (p.time, p.amount, p.reason),
            reverse=True,
        ),
    )


def within_age_cap(
    facts: Sequence[Fact], *, now: datetime, max_age: timedelta
) -> tuple[list[Fact], datetime | None]:
    """The facts of events still within the timeline's age cap at `now`, and the first moment one of them
    passes it (None: none left).

    The write path removes an event past the cap, and its fact, only with the citizen's next change, so a
    citizen who has gone quiet still holds them: a reader leaves them out itself, by the same rule
    (`age_cutoff`, on the event's time, which is the fact's).
    """
    cutoff = age_cutoff(now=now, max_age=max_age)
    kept = [fact for fact in facts if time_score(fact.time) >= cutoff]
    oldest = min((fact.time for fact in kept), default=None)
    return kept, None if oldest is None else oldest + max_age


def summary_changes_at(facts: list[Fact], *, now: datetime, recent_days: int = 30) -> datetime | None:
    """Until when `summarise` of these facts answers as it does at `now` (exclusive); None: for ever.

    Only time moves a summary of fixed facts: a contact enters (its time) and leaves (7 and 30 days
    later) the windows, a failed payment or missed appointment enters and leaves the recent period, and
    a booked appointment stops being upcoming when it starts. Strictly before the earliest of those
    instants not already past, the summary computed at `now` holds, which is what lets it be cached (see
    `SummaryCache`). An instant equal to `now` counts: a contact that leaves a window leaves just after it.
    """
    recent = timedelta(days=recent_days)
    instants: list[datetime] = []
    for fact in facts:
        match fact:
            case ContactFact():
                instants += (fact.time, fact.time + timedelta(days=7), fact.time + timedelta(days=30))
            case PaymentFailedFact():
                instants += (fact.time, fact.time + recent)
            case AppointmentFact(missed=True):
                instants += (fact.time, fact.time + recent)
            case AppointmentFact(starts_at=datetime() as starts_at):
                instants.append(starts_at)
    return min((instant for instant in instants if instant >= now), default=None)


def _contacts(facts: Iterable[ContactFact]) -> list[ContactFact]:
    """One contact per key, at the time of its first event (a call counts once, when it started)."""
    first: dict[str, ContactFact] = {}
    for fact in facts:
        seen = first.get(fact.key)
        if seen is None or (fact.time, fact.channel) < (seen.time, seen.channel):
            first[fact.key] = fact
    return list(first.values())


def _open_cases(facts: Iterable[CaseFact]) -> list[OpenCase]:
    # A case is its reference as identity resolution matches one, so a case opened as "hb-900" and closed
    # as "HB-900" is one case, closed; it is shown as last written.
    latest: dict[str, CaseFact] = {}
    for fact in facts:
        case = case_reference(fact.case_ref)
        seen = latest.get(case)
        if seen is None or (fact.time, fact.closed, fact.status) > (seen.time, seen.closed, seen.status):
            latest[case] = fact
    return sorted(
        (
            OpenCase(case_ref=f.case_ref, status=f.status, updated_at=f.time)
            for f in latest.values()
            if not f.closed
        ),
        key=lambda c: (c.updated_at, c.case_ref),
        reverse=True,
    )


def _appointments(
    facts: list[AppointmentFact], *, now: datetime, recent: datetime
) -> dict[str, list[UpcomingAppointment] | list[MissedAppointment]]:
    missed_ids = {f.appointment_id for f in facts if f.missed}
    booked: dict[str, AppointmentFact] = {}
    for fact in facts:
        if fact.missed or fact.starts_at is None:
            continue
        seen = booked.get(fact.appointment_id)
        if seen is None or (fact.time, fact.starts_at) > (seen.time, seen.starts_at):
            booked[fact.appointment_id] = fact
    upcoming = sorted(
        (
            UpcomingAppointment(appointment_id=f.appointment_id, starts_at=f.starts_at, location=f.location)
            for f in booked.values()
            if f.appointment_id not in missed_ids and f.starts_at is not None and f.starts_at > now
        ),
        key=lambda a: (a.starts_at, a.appointment_id),
    )
    missed: dict[str, MissedAppointment] = {}
    recent_missed = (f for f in facts if f.missed and recent <= f.time <= now)
    for fact in sorted(recent_missed, key=lambda f: (f.time, f.starts_at is not None, f.starts_at or f.time)):
        known = booked.get(fact.appointment_id)
        missed[fact.appointment_id] = MissedAppointment(
            appointment_id=fact.appointment_id,
            starts_at=fact.starts_at or (known.starts_at if known else None),
            recorded_at=fact.time,
        )
    return {
        "upcoming_appointments": upcoming,
        "missed_appointments": sorted(
            missed.values(), key=lambda m: (m.recorded_at, m.appointment_id), reverse=True
        ),
    }
