"""What an agent sees: a citizen's context."""

from pydantic import BaseModel, Field

from models.events import CloudEvent


class CitizenContext(BaseModel):
    """A citizen's context at one version: the newest events first."""

    citizen_id: str
    epoch: str = Field(description="Generation of the projection; changes when it is rebuilt from Kafka.")
    version: int = Field(ge=0, description="Grows by one with every change to this citizen's context.")
    timeline: list[CloudEvent] = Field(description="Most recent interactions, newest first.")


class ContextChange(BaseModel):
    """One change to a citizen's context, as published to live streams and kept for resuming."""

    citizen_id: str
    epoch: str
    version: int
    event: CloudEvent
