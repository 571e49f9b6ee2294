"""Messages on an agent's WebSocket stream."""

from typing import Literal

from pydantic import BaseModel

from models.context import CitizenContext
from models.events import CloudEvent


class SnapshotMessage(BaseModel):
    """The whole context; sent on connect and whenever the client must re-sync."""

    type: Literal["snapshot"] = "snapshot"
    context: CitizenContext


class ChangeMessage(BaseModel):
    """One new event in the timeline, at `version` (always the previous message's version + 1)."""

    type: Literal["change"] = "change"
    citizen_id: str
    epoch: str
    version: int
    event: CloudEvent
