"""The event taxonomy: each documented `type` and the typed model of its `data`.

A type not listed here is still accepted and kept in the timeline with its data as it came, so a service
can start publishing a new kind of event before this project knows it.
"""

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

Channel = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,31}$")]
Reference = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Summary = Annotated[str, StringConstraints(min_length=1, max_length=500)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Direction = Literal["inbound", "outbound"]


class EventData(BaseModel):
    """What every documented event's `data` carries; further fields are kept as published."""

    model_config = ConfigDict(extra="allow", hide_input_in_errors=True)

    channel: Channel = Field(description="How the interaction happened: phone, chat, email, web, post, …")
    summary: Summary = Field(description="One line an agent can read at a glance.")


class CallStarted(EventData):
    """A call with the citizen began (telephony)."""

    call_id: Reference
    direction: Direction = "inbound"


class CallEnded(EventData):
    """A call with the citizen ended."""

    call_id: Reference
    duration_s: int = Field(ge=0)
    outcome: str | None = None


class ChatMessage(EventData):
    """A message in a web chat conversation."""

    conversation_id: Reference
    direction: Direction = "inbound"


class EmailReceived(EventData):
    """An email from the citizen arrived."""

    thread_id: Reference | None = None


class WebFormSubmitted(EventData):
    """The citizen submitted a form on the website."""

    form: Reference = Field(description="Which form, e.g. 'report-missed-bin'.")
    reference: Reference | None = None


class CaseOpened(EventData):
    """A case was opened in a case-management system."""

    case_ref: Reference
    case_type: str | None = None
    status: str = "open"


class CaseUpdated(EventData):
    """A case changed status."""

    case_ref: Reference
    status: str = Field(min_length=1, max_length=64)


class CaseClosed(EventData):
    """A case was closed."""

    case_ref: Reference
    resolution: str | None = None


class PaymentReceived(EventData):
    """A payment from the citizen was received."""

    amount: Decimal = Field(gt=0, max_digits=12, decimal_places=2)
    currency: Currency = "GBP"
    reference: Reference | None = None


class PaymentFailed(EventData):
    """A payment from the citizen failed (a direct debit bounced, a card was declined)."""

    amount: Decimal = Field(gt=0, max_digits=12, decimal_places=2)
    currency: Currency = "GBP"
    reason: str = Field(min_length=1, max_length=200)
    reference: Reference | None = None


class AppointmentBooked(EventData):
    """An appointment was booked for the citizen."""

    appointment_id: Reference
    starts_at: AwareDatetime
    location: str | None = None


class AppointmentMissed(EventData):
    """The citizen did not attend an appointment."""

    appointment_id: Reference
    starts_at: AwareDatetime | None = None


class LetterFormat(StrEnum):
    """Formats a letter can be sent in."""

    standard = "standard"
    large_print = "large-print"
    braille = "braille"
    easy_read = "easy-read"


class LetterSent(EventData):
    """A letter was sent to the citizen."""

    letter_ref: Reference | None = None
    format: LetterFormat = LetterFormat.standard


class ComplaintRaised(EventData):
    """The citizen raised a complaint."""

    complaint_ref: Reference
    case_ref: Reference | None = None


class CommunicationNeed(StrEnum):
    """Needs an agent must honour when talking or writing to the citizen."""

    bsl_interpreter = "bsl-interpreter"
    spoken_interpreter = "spoken-interpreter"
    large_print = "large-print"
    braille = "braille"
    easy_read = "easy-read"
    hearing_loop = "hearing-loop"
    text_relay = "text-relay"
    no_phone_calls = "no-phone-calls"


class ProfileUpdated(EventData):
    """The citizen's personal needs or contact details changed; only the fields present are updated.

    A field given as null is left as it is, as if absent (a publisher may send every field it knows of); a
    list given empty (`[]`) empties it. A language is replaced by another, never removed.
    """

    preferred_language: (
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")] | None
    ) = Field(default=None, description="BCP 47 language tag, e.g. 'cy' or 'pl'.")
    communication_needs: list[CommunicationNeed] | None = None
    vulnerability_flags: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] | None = Field(
        default=None, description="E.g. 'bereavement', 'financial-hardship', 'domestic-abuse'."
    )
    phone: str | None = Field(
        default=None, description="Phone number; indexed in E.164 for identity resolution."
    )
    email: str | None = Field(default=None, description="Email address; indexed for identity resolution.")


class EnquiryCompleted(EventData):
    """An agent completed an enquiry with the citizen (published by this project)."""

    enquiry_id: Reference
    outcome: str = Field(min_length=1, max_length=64)
    notes: str | None = Field(default=None, max_length=4000)


EVENT_TYPES: dict[str, type[EventData]] = {
    "call.started": CallStarted,
    "call.ended": CallEnded,
    "chat.message": ChatMessage,
    "email.received": EmailReceived,
    "web.form.submitted": WebFormSubmitted,
    "case.opened": CaseOpened,
    "case.updated": CaseUpdated,
    "case.closed": CaseClosed,
    "payment.received": PaymentReceived,
    "payment.failed": PaymentFailed,
    "appointment.booked": AppointmentBooked,
    "appointment.missed": AppointmentMissed,
    "letter.sent": LetterSent,
    "complaint.raised": ComplaintRaised,
    "profile.updated": ProfileUpdated,
    "enquiry.completed": EnquiryCompleted,
}


class CitizenErased(EventData):
    """A citizen's data was erased at their request (published by this project, never by others).

    It is not shown in any timeline. The API erases the citizen when it records it; applied from the topic
    (by the consumer, or a rebuild's replay) it removes what that erasure did not reach, and leaves the
    contacts the citizen made since (context/store.py, `erase_recorded`).
    """


ERASURE_TYPE = "citizen.erased"
# Types only Citizen Context publishes, and the prefix of its own sources; REST ingestion refuses both
# (an integrator must not be able to complete an agent's enquiry or pre-empt its completion event).
RESERVED_TYPES = frozenset({ERASURE_TYPE})
RESERVED_SOURCE_PREFIX = "/citizen-context/"
ENQUIRY_SOURCE = f"{RESERVED_SOURCE_PREFIX}enquiries"
ERASURE_SOURCE = f"{RESERVED_SOURCE_PREFIX}privacy"


def parse_data(event_type: str, data: Any) -> EventData | None:
    """`data` as its type's model (raises pydantic.ValidationError); None for a type not in the taxonomy."""
    model = EVENT_TYPES.get(event_type)
    return None if model is None else model.model_validate(data if data is not None else {})


# The service that typically publishes each family of types, by the type's first segment: the contract's
# examples and the simulated traffic name their sources from it.
TYPICAL_SOURCES = {
    "call": "/telephony/contact-centre",
    "chat": "/webchat",
    "email": "/email-gateway",
    "web": "/website/forms",
    "case": "/benefits/case-management",
    "payment": "/payments",
    "appointment": "/appointments",
    "letter": "/letters",
    "complaint": "/complaints",
    "profile": "/profiles",
    "enquiry": "/citizen-context/agent-desktop",
}


# One realistic `data` per type: the contract documentation shows them, and tests start from them.
EXAMPLE_DATA: dict[str, dict[str, Any]] = {
    "call.started": {
        "channel": "phone",
        "summary": "Inbound call",
        "call_id": "CALL-88121",
        "direction": "inbound",
    },
    "call.ended": {
        "channel": "phone",
        "summary": "Asked when housing benefit claim HB-4471 will be decided",
        "call_id": "CALL-88121",
        "duration_s": 412,
        "outcome": "information-given",
    },
    "chat.message": {
        "channel": "chat",
        "summary": "Asked whether a BSL interpreter can attend the assessment",
        "conversation_id": "CHAT-5531",
        "direction": "inbound",
    },
    "email.received": {
        "channel": "email",
        "summary": "Sent a copy of a tenancy agreement",
        "thread_id": "TH-20931",
    },
    "web.form.submitted": {
        "channel": "web",
        "summary": "Reported a missed bin collection",
        "form": "report-missed-bin",
        "reference": "WF-77812",
    },
    "case.opened": {
        "channel": "web",
        "summary": "Housing benefit claim opened",
        "case_ref": "HB-4471",
        "case_type": "housing-benefit",
        "status": "open",
    },
    "case.updated": {
        "channel": "system",
        "summary": "Evidence requested for HB-4471",
        "case_ref": "HB-4471",
        "status": "awaiting-evidence",
    },
    "case.closed": {
        "channel": "system",
        "summary": "HB-4471 decided: awarded",
        "case_ref": "HB-4471",
        "resolution": "awarded",
    },
    "payment.received": {
        "channel": "online",
        "summary": "Council tax payment of GBP 142.00 received",
        "amount": "142.00",
        "currency": "GBP",
        "reference": "CT-2231-11",
    },
    "payment.failed": {
        "channel": "direct-debit",
        "summary": "Council tax instalment of GBP 142.00 failed",
        "amount": "142.00",
        "currency": "GBP",
        "reason": "insufficient funds",
        "reference": "CT-2231-12",
    },
    "appointment.booked": {
        "channel": "web",
        "summary": "Blue badge assessment booked",
        "appointment_id": "APT-3301",
        "starts_at": "2026-12-03T10:30:00Z",
        "location": "Civic Centre, room 4",
    },
    "appointment.missed": {
        "channel": "in-person",
        "summary": "Did not attend the housing needs interview",
        "appointment_id": "APT-3288",
        "starts_at": "2026-11-27T10:30:00Z",
    },
    "letter.sent": {
        "channel": "post",
        "summary": "Large-print reminder about the bin collection appeal",
        "letter_ref": "LTR-99120",
        "format": "large-print",
    },
    "complaint.raised": {
        "channel": "email",
        "summary": "Complaint about repeated missed collections",
        "complaint_ref": "CMP-0912",
        "case_ref": "WF-77812",
    },
    "profile.updated": {
        "channel": "system",
        "summary": "Prefers Welsh; needs a BSL interpreter",
        "preferred_language": "cy",
        "communication_needs": ["bsl-interpreter"],
        "vulnerability_flags": ["bereavement"],
        "phone": "07700 900123",
        "email": "Anna.Jones@example.org",
    },
    "enquiry.completed": {
        "channel": "phone",
        "summary": "Explained the evidence needed for HB-4471",
        "enquiry_id": "ENQ-1042",
        "outcome": "resolved",
        "notes": "Citizen will upload payslips this week.",
    },
}
