"""A citizen's rights: a copy of everything held, and erasure."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from models.context import Profile, Summary
from models.enquiries import EnquiryPublic
from models.events import CloudEvent
from models.tables import StoredTime


class RecordedView(BaseModel):
    """Someone who viewed (or was refused) the citizen's data."""

    at: StoredTime
    actor_kind: str
    actor_id: str
    actor_role: str
    action: str
    outcome: str
    enquiry_id: str | None
    reason: str | None


class CitizenExport(BaseModel):
    """Everything Citizen Context holds about one citizen, and who has viewed it."""

    citizen_id: str
    generated_at: datetime
    epoch: str
    version: int
    profile: Profile
    summary: Summary
    timeline: list[CloudEvent] = Field(description="Every event held, newest first.")
    identifiers: list[str] = Field(
        description=(
            "Identifiers the citizen's events gave, as the projection holds them (kind:value): those that "
            "find them, and any since taken over by someone else, which no longer do."
        )
    )
    enquiries: list[EnquiryPublic]
    # Last, and it must stay last: the API sends everything before it, then writes the views as it reads
    # them from the trail, a page at a time (api/citizen_rights.py).
    views: list[RecordedView] = Field(description="The audit trail of the citizen, this export included.")


class ErasureReceipt(BaseModel):
    """What an erasure removed; the citizen is named by their pseudonym only."""

    citizen: str = Field(description="The citizen's pseudonym, as the audit trail names them.")
    status: Literal["erased", "recorded"] = Field(
        description="`erased`: this request removed the citizen's context from Redis. `recorded` (answered "
        "202): the erasure is recorded in Kafka but Redis did not complete this request's removal, and the "
        "consumer removes the context when it applies the record; the enquiries are already deleted."
    )
    erased_at: datetime
    erasure_event_id: str = Field(description="The `citizen.erased` event recorded in Kafka.")
    keys_removed: int | None = Field(
        description="Redis keys this request removed: 0 when the consumer, applying the erasure record, "
        "removed them first; null when the erasure is `recorded`."
    )
    enquiries_removed: int
