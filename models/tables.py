"""SQL tables (SQLModel). Everything that is not an event stream lives here."""

from datetime import UTC, datetime
from enum import StrEnum

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
    created_at: datetime = Field(default_factory=utc_now)
