"""Messages on an agent's WebSocket stream (server to client).

A stream sends a `snapshot` (or, when resuming, `resumed` followed by the missed changes), then a
`change` per change in version order, a `heartbeat` every few seconds, a `presence` message whenever
the set of other viewers changes, and a `reconnect` message before the server closes it on purpose.
"""

from typing import Literal

from pydantic import BaseModel, Field

from models.context import CitizenContext, Profile, Summary
from models.events import CloudEvent


class SnapshotMessage(BaseModel):
    """The whole context; sent on connect and whenever the client must re-sync."""

    type: Literal["snapshot"] = "snapshot"
    context: CitizenContext


class ResumedMessage(BaseModel):
    """The client's (epoch, version) is still held: exactly the changes after `version` follow."""

    type: Literal["resumed"] = "resumed"
    citizen_id: str
    epoch: str
    version: int


class ChangeMessage(BaseModel):
    """One change, at `version` (always the previous message's version + 1)."""

    type: Literal["change"] = "change"
    citizen_id: str
    epoch: str
    version: int
    event: CloudEvent | None = Field(
        default=None, description="The new timeline event; absent when only the profile changed."
    )
    profile: Profile | None = Field(
        default=None, description="The whole profile, when this change updated it."
    )
    summary: Summary | None = Field(
        default=None,
        description="The summary after the change (on the last change of a burst sent together).",
    )


class HeartbeatMessage(BaseModel):
    """The stream is alive; a client that hears nothing for two heartbeat intervals reconnects."""

    type: Literal["heartbeat"] = "heartbeat"
    epoch: str
    version: int
    live: bool = Field(
        description="False while the server cannot receive changes (its Redis is unreachable); a snapshot "
        "follows when they flow again."
    )


class PresenceMessage(BaseModel):
    """Who else is viewing this citizen right now (agent ids, without the receiving connection)."""

    type: Literal["presence"] = "presence"
    citizen_id: str
    viewers: list[str]


class ReconnectMessage(BaseModel):
    """The server is about to close this stream; reconnect (to any replica) and resume from here."""

    type: Literal["reconnect"] = "reconnect"
    reason: Literal["shutdown", "lifetime"]
    epoch: str
    version: int


StreamMessage = (
    SnapshotMessage | ResumedMessage | ChangeMessage | HeartbeatMessage | PresenceMessage | ReconnectMessage
)
