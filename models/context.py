"""What an agent sees: a citizen's context (profile, summary, timeline) and its changes."""

from datetime import datetime

from pydantic import BaseModel, Field

from models.events import CloudEvent


class Profile(BaseModel):
    """Personal needs that must not be missed; each field is the latest value published for it."""

    preferred_language: str | None = Field(default=None, description="BCP 47 tag, e.g. 'cy'.")
    communication_needs: list[str] = Field(default_factory=list, description="E.g. 'bsl-interpreter'.")
    vulnerability_flags: list[str] = Field(default_factory=list, description="E.g. 'bereavement'.")


class LastContact(BaseModel):
    """When and how the citizen was last in contact."""

    time: datetime
    channel: str


class OpenCase(BaseModel):
    """A case that is not closed, with its latest status."""

    case_ref: str
    status: str
    updated_at: datetime


class UpcomingAppointment(BaseModel):
    """An appointment still to come."""

    appointment_id: str
    starts_at: datetime
    location: str | None = None


class MissedAppointment(BaseModel):
    """An appointment the citizen did not attend."""

    appointment_id: str
    starts_at: datetime | None
    recorded_at: datetime


class FailedPayment(BaseModel):
    """A payment that failed."""

    time: datetime
    amount: str
    currency: str
    reason: str


class Summary(BaseModel):
    """Derived from the timeline at the moment it is read."""

    last_contact: LastContact | None = None
    contacts_7d: dict[str, int] = Field(
        default_factory=dict, description="Contacts in the last 7 days by channel."
    )
    contacts_30d: dict[str, int] = Field(
        default_factory=dict, description="Contacts in the last 30 days by channel."
    )
    repeat_contact: bool = Field(
        default=False, description="Contacts in the last 7 days reached the threshold."
    )
    open_cases: list[OpenCase] = Field(default_factory=list)
    upcoming_appointments: list[UpcomingAppointment] = Field(default_factory=list)
    missed_appointments: list[MissedAppointment] = Field(default_factory=list)
    recent_failed_payments: list[FailedPayment] = Field(default_factory=list)


class CitizenContext(BaseModel):
    """A citizen's context at one version: profile first, then summary, then the newest events."""

    citizen_id: str
    epoch: str = Field(description="Generation of the projection; changes when it is rebuilt from Kafka.")
    version: int = Field(ge=0, description="Grows by one with every change to this citizen's context.")
    profile: Profile = Field(default_factory=Profile)
    summary: Summary = Field(default_factory=Summary)
    timeline: list[CloudEvent] = Field(description="Most recent interactions, newest first.")


class ContextChange(BaseModel):
    """One change to a citizen's context, as published to live streams and kept for resuming."""

    citizen_id: str
    epoch: str
    version: int
    event: CloudEvent | None = Field(
        default=None, description="The new timeline event; absent when only the profile changed."
    )
    profile: Profile | None = Field(
        default=None, description="The whole profile, when this change updated it."
    )
