"""SQL tables (SQLModel). Everything that is not an event stream lives here."""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator
from sqlalchemy import DateTime, Index
from sqlmodel import Field, SQLModel


def utc_now() -> datetime:
    """The current time, timezone-aware."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """A stored timestamp, timezone-aware (SQLite hands them back without their zone; they are UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# A timestamp read from SQL, as the API shows it: always with its zone.
StoredTime = Annotated[datetime, AfterValidator(as_utc)]


class AgentRole(StrEnum):
    """What an agent may do; enforced by the security layer."""

    agent = "agent"
    supervisor = "supervisor"
    admin = "admin"


class AgentBase(SQLModel):
    """Fields an agent is created with."""

    display_name: str = Field(max_length=200)
    role: AgentRole = Field(default=AgentRole.agent)


class Agent(AgentBase, table=True):
    """A contact-centre agent, identified by the subject of their identity-provider token."""

    __tablename__ = "agents"

    id: str = Field(primary_key=True, max_length=200)
    created_at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True))


class EnquiryStatus(StrEnum):
    """Where an enquiry stands."""

    active = "active"
    completed = "completed"


class EnquiryBase(SQLModel):
    """What an enquiry is about: a citizen, reached on a channel."""

    citizen_id: str = Field(index=True, max_length=128)
    channel: str = Field(max_length=32)


class Enquiry(EnquiryBase, table=True):
    """An agent handling one citizen's enquiry: the justification for viewing their context."""

    __tablename__ = "enquiries"
    # Every context read asks whether its agent holds an active enquiry for its citizen (the audit's batch
    # asks for many pairs at once). Without this index SQLite's planner chose the status index and walked
    # every active enquiry: 1.6 ms per batch of 30 pairs with 10,000 active, against 0.19 ms with it. It
    # leads with the agent, so it also finds an agent's enquiries (the desk's list). The agent and the
    # status have no index of their own (revision 0005): the status's only misled the planner.
    __table_args__ = (Index("ix_enquiries_holder", "agent_id", "citizen_id", "status"),)

    id: str = Field(primary_key=True, max_length=36)
    agent_id: str = Field(max_length=200)
    status: EnquiryStatus = Field(default=EnquiryStatus.active)
    started_at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True))
    completed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    outcome: str | None = Field(default=None, max_length=64)
    notes: str | None = Field(default=None, max_length=4000)


class ApiKey(SQLModel, table=True):
    """An integrator's API key. Only a hash of the secret is stored; the key itself is shown once."""

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=32)
    client: str = Field(index=True, max_length=100)
    secret_hash: str = Field(max_length=64)
    scopes: str = Field(max_length=500, description="Space-separated scopes.")
    created_at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True))
    expires_at: datetime = Field(sa_type=DateTime(timezone=True))
    last_used_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class AuditAction(StrEnum):
    """What was done with a citizen's data, or with the API keys that reach it."""

    context_read = "context.read"
    timeline_read = "timeline.read"
    stream_opened = "stream.opened"
    lookup = "lookup"
    export = "export"
    erasure = "erasure"
    key_created = "api_key.created"
    key_rotated = "api_key.rotated"
    key_revoked = "api_key.revoked"


class AuditRecordBase(SQLModel):
    """What one audit record says; written as it is (see `AuditRecord`)."""

    at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True), index=True)
    actor_kind: str = Field(max_length=16)
    actor_id: str = Field(index=True, max_length=200)
    actor_role: str = Field(max_length=32, description="agent, supervisor, admin, or the key's client.")
    action: AuditAction = Field(index=True)
    outcome: str = Field(max_length=16, description="allowed or denied.")
    citizen: str | None = Field(default=None, index=True, max_length=64, description="Pseudonym.")
    enquiry_id: str | None = Field(default=None, max_length=36)
    reason: str | None = Field(default=None, max_length=500)
    client_address: str | None = Field(default=None, max_length=64)
    api_key_id: str | None = Field(
        default=None, max_length=32, description="The API key created, rotated or revoked (its id)."
    )


class AuditRecord(AuditRecordBase, table=True):
    """One access to a citizen's data. Append-only (the database refuses updates and deletes).

    The citizen is named by a keyed pseudonym, never their id: an erasure leaves the trail intact and
    nothing in it that names the person.
    """

    __tablename__ = "audit_records"

    id: int | None = Field(default=None, primary_key=True)
