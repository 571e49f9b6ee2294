"""SQL tables (SQLModel). Everything that is not an event stream lives here."""

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import DateTime
from sqlmodel import Field, SQLModel


def utc_now() -> datetime:
    """The current time, timezone-aware."""
    return datetime.now(UTC)


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

    id: str = Field(primary_key=True, max_length=36)
    agent_id: str = Field(index=True, max_length=200)
    status: EnquiryStatus = Field(default=EnquiryStatus.active, index=True)
    started_at: datetime = Field(default_factory=utc_now, sa_type=DateTime(timezone=True))
    completed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    outcome: str | None = Field(default=None, max_length=64)
    notes: str | None = Field(default=None, max_length=4000)
