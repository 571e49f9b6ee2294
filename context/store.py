"""All Redis commands of the project: the atomic write path and the consistent reads."""

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from typing import Any, cast

import redis
import redis.asyncio as aioredis

from context.keys import CitizenKeys, changes_channel, epoch_key
from context.settings import TimelineSettings
from context.timeline import age_cutoff, time_score
from models.context import CitizenContext, ContextChange
from models.events import CloudEvent

_APPLY_EVENT = files("context").joinpath("apply_event.lua").read_text()
_SNAPSHOT = files("context").joinpath("snapshot.lua").read_text()


def new_epoch() -> str:
    """A fresh generation name: sortable by creation time, unique."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What applying one event did: whether it changed the context, and the version after it."""

    applied: bool
    version: int


class ProjectionWriter:
    """Applies events to the projection (used by the consumer process, synchronous like kafka-python)."""

    def __init__(self, client: "redis.Redis", *, prefix: str, timeline: TimelineSettings) -> None:
        self._client = client
        self._prefix = prefix
        self._timeline = timeline
        self._apply = client.register_script(_APPLY_EVENT)

    def current_epoch(self) -> str:
        """The generation being served; created on first use."""
        key = epoch_key(self._prefix)
        self._client.set(key, new_epoch(), nx=True)
        return cast(str, self._client.get(key))

    def apply_batch(self, events: list[CloudEvent], *, now: datetime | None = None) -> list[ApplyResult]:
        """Apply the events in order, in one round trip; each event's effect is atomic and idempotent."""
        if not events:
            return []
        epoch = self.current_epoch()
        cutoff = age_cutoff(now=now or datetime.now(UTC), max_age=timedelta(days=self._timeline.max_age_days))
        expiry = int(timedelta(days=self._timeline.inactivity_expiry_days).total_seconds())
        channel = changes_channel(self._prefix)
        pipe = self._client.pipeline(transaction=False)
        for event in events:
            keys = CitizenKeys(self._prefix, epoch, event.subject)
            self._apply(
                keys=keys.all(),
                args=[
                    event.dedup_key,
                    time_score(event.time),
                    event.to_json(),
                    self._timeline.max_events,
                    cutoff,
                    self._timeline.change_log_length,
                    channel,
                    json.dumps(event.subject),
                    json.dumps(epoch),
                    expiry,
                ],
                client=pipe,
            )
        return [
            ApplyResult(applied=bool(applied), version=int(version)) for applied, version in pipe.execute()
        ]


class ContextReader:
    """Reads citizens' contexts for the API (asyncio)."""

    def __init__(self, client: "aioredis.Redis", *, prefix: str, timeline: TimelineSettings) -> None:
        self._client = client
        self._prefix = prefix
        self._timeline = timeline
        self._snapshot = client.register_script(_SNAPSHOT)

    @property
    def channel(self) -> str:
        """The pub/sub channel that carries every change."""
        return changes_channel(self._prefix)

    async def current_epoch(self) -> str:
        """The generation being served; created on first use."""
        key = epoch_key(self._prefix)
        await self._client.set(key, new_epoch(), nx=True)
        return cast(str, await self._client.get(key))

    async def context(self, citizen_id: str, *, limit: int | None = None) -> CitizenContext:
        """The citizen's version and newest events, read atomically (empty at version 0 if unknown)."""
        epoch = await self.current_epoch()
        keys = CitizenKeys(self._prefix, epoch, citizen_id)
        reply: list[Any] = await self._snapshot(keys=keys.all()[:3], args=[limit or self._timeline.page_size])
        version, *events = reply
        return CitizenContext(
            citizen_id=citizen_id,
            epoch=epoch,
            version=int(version),
            timeline=[CloudEvent.model_validate_json(event) for event in events if event is not None],
        )

    async def changes_since(self, citizen_id: str, *, epoch: str, version: int) -> list[ContextChange] | None:
        """Every change after `version`, in order; None when they are no longer all held."""
        keys = CitizenKeys(self._prefix, epoch, citizen_id)
        # The change log is short (a few hundred entries); reading it whole keeps this one round trip.
        raw = await self._client.lrange(keys.changes, 0, -1)
        changes = [ContextChange.model_validate_json(item) for item in raw]
        missed = [change for change in changes if change.version > version]
        if missed and missed[0].version != version + 1:
            return None
        if not missed and changes and changes[-1].version < version:
            # The client claims a version this generation never reached.
            return None
        return missed
