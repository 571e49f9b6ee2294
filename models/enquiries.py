"""The enquiry API's own models (the table is `models.tables.Enquiry`)."""

from typing import Annotated, Self

from pydantic import BaseModel, Field, StringConstraints, model_validator

from models.bodies import RequestBody
from models.events import CitizenId
from models.tables import EnquiryStatus, StoredTime

Channel = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,31}$")]


class EnquiryCreate(RequestBody):
    """Start an enquiry for a citizen named by exactly one of: id, phone number, email, case reference."""

    citizen_id: CitizenId | None = None
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=254)
    case: str | None = Field(default=None, max_length=64)
    channel: Channel = Field(
        description="How the citizen reached the agent: phone, chat, email, in-person, …"
    )

    @model_validator(mode="after")
    def _exactly_one_citizen(self) -> Self:
        named = [name for name in ("citizen_id", "phone", "email", "case") if getattr(self, name)]
        if len(named) != 1:
            raise ValueError("name the citizen by exactly one of citizen_id, phone, email or case")
        return self


class EnquiryComplete(RequestBody):
    """How the enquiry ended."""

    outcome: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,63}$")] = Field(
        description="A short code, e.g. 'resolved', 'referred', 'callback-booked'."
    )
    notes: str | None = Field(default=None, max_length=4000, description="Wrap-up notes for the timeline.")


class EnquiryPublic(BaseModel):
    """An enquiry as the API shows it."""

    id: str
    citizen_id: str
    channel: str
    agent_id: str
    status: EnquiryStatus
    started_at: StoredTime
    completed_at: StoredTime | None = None
    outcome: str | None = None
    notes: str | None = None


class EnquiryList(BaseModel):
    """A list of enquiries, newest first."""

    enquiries: list[EnquiryPublic]
