"""One agent's live stream of one citizen's context: snapshot or resume, then changes, in version order.

The session subscribes to the process's change hub *before* reading the snapshot, so a change that lands
in between is queued rather than missed; versions the snapshot already holds are then skipped. Any doubt
(a gap the change log cannot fill, a queue overflow, a lost Redis subscription, a new epoch) is answered
with a fresh snapshot, never with silence.
"""

import asyncio
import contextlib
import functools
import random
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Annotated, Literal, NamedTuple

import redis.exceptions
import sqlalchemy.exc
import structlog
from fastapi import Query, WebSocket, WebSocketDisconnect, status
from prometheus_client import Counter
from pydantic import BaseModel

from api.lifecycle import Lifecycle
from api.metrics import STREAM_MESSAGES, STREAM_RESYNCS, STREAMS_OPEN
from api.presence import PresenceKeeper
from api.security.stream_access import StreamAccessChecks
from api.settings import ApiSettings
from api.streaming import (
    LIFETIME_OVER,
    AccessEnded,
    ChangeHub,
    Erased,
    Heartbeat,
    LifetimeOver,
    PresenceChanged,
    Resync,
    ShuttingDown,
    Subscription,
)
from context.store import ContextReader, PresenceStore
from models.context import CitizenContext, ContextChange, Summary
from models.database import driver_code_log_fields
from models.events import CloudEvent
from models.taxonomy import ENQUIRY_SOURCE
from models.ws import (
    ChangeMessage,
    HeartbeatMessage,
    PresenceMessage,
    ReconnectMessage,
    ResumedMessage,
    SnapshotMessage,
)

log = structlog.get_logger("streaming")


@functools.cache
def _messages_counter(message_type: str) -> "Counter":
    """The counter of one message type (looking a label up costs more than counting, at 1,000s a second)."""
    return STREAM_MESSAGES.labels(type=message_type)


REDIS_UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
# What a stream answers with "try again later" (1013): a store that cannot serve it right now (Redis or the
# database down, failing over or out of memory, every pooled connection busy past its wait, as in a burst
# of streams opening), not a fault of the code (1011).
STORES_UNAVAILABLE = (
    *REDIS_UNAVAILABLE,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.TimeoutError,
)

# The version a reconnecting stream last saw (`?version=`): a count of changes, so never negative (an
# invalid one closes the stream with CLOSE_INVALID_REQUEST, api/security/gate.py).
ResumeVersion = Annotated[int | None, Query(ge=0)]

# Close codes (documented in the README). 1011, 1012 and 1013 are the standard "internal error", "service
# restart" and "try again later".
CLOSE_UNEXPECTED_ERROR = status.WS_1011_INTERNAL_ERROR
CLOSE_SHUTDOWN = 1012
CLOSE_TRY_AGAIN = 1013
CLOSE_LIFETIME = 4001
CLOSE_INVALID_REQUEST = 4400  # an invalid citizen id or query parameter
CLOSE_UNKNOWN_ENQUIRY = CLOSE_UNKNOWN_STREAM = 4404  # an unknown enquiry, or no stream at that path
CLOSE_ENQUIRY_ENDED = 4410
CLOSE_CITIZEN_ERASED = 4411

TRY_AGAIN_LATER = "try again later"


class StreamEnd(NamedTuple):
    """Why the server ends a stream: its close code and reason."""

    code: int
    reason: str


ENQUIRY_COMPLETED = StreamEnd(CLOSE_ENQUIRY_ENDED, "enquiry completed")
CITIZEN_ERASED = StreamEnd(CLOSE_CITIZEN_ERASED, "citizen erased")


def failure_close(error: BaseException) -> tuple[int, str]:
    """The close code and reason of a stream ended by an error none of its steps handled; the reason never
    quotes the error, whose text can quote data."""
    if isinstance(error, STORES_UNAVAILABLE):
        return CLOSE_TRY_AGAIN, TRY_AGAIN_LATER
    return CLOSE_UNEXPECTED_ERROR, "unexpected error"


def completed_enquiry(event: CloudEvent | None) -> str | None:
    """The enquiry an `enquiry.completed` event of the API's completes (pure); None for any other event."""
    if (
        event is not None
        and event.type == "enquiry.completed"
        and event.source == ENQUIRY_SOURCE  # only the API completes enquiries
        and isinstance(event.data, dict)
        and isinstance(enquiry_id := event.data.get("enquiry_id"), str)
    ):
        return enquiry_id
    return None


# Enrols a stream's subscription in its process's access checks for as long as the block runs; they hand
# it `AccessEnded` when its access lapses (see api/security/stream_access.py).
AccessWatch = Callable[[Subscription], AbstractContextManager[None]]
# Given the enquiries whose completion a stream has seen (the one it followed among them): another the
# stream may follow, or None.
NextEnquiry = Callable[[frozenset[str]], Awaitable[str | None]]


@dataclass(frozen=True)
class Resume:
    """Where a reconnecting client left off."""

    epoch: str
    version: int


class SharedSummaries:
    """One summary read per citizen and version, shared by every stream of the process delivering it.

    Several agents (a supervisor, a colleague) may watch the same citizen: each change would otherwise
    read and summarise the same facts once per stream. A read started for a version serves every stream
    that asks for it while it is in flight; it reflects that version or a later one, exactly as a read of
    its own would. Nothing is kept once the read is done.
    """

    def __init__(self, reader: ContextReader) -> None:
        self._reader = reader
        self._reads: dict[tuple[str, str, int], asyncio.Future[Summary]] = {}

    async def after(self, citizen_id: str, *, epoch: str, version: int) -> Summary:
        """The citizen's summary as it stands now that `version` has been applied."""
        key = (citizen_id, epoch, version)
        read = self._reads.get(key)
        if read is None:
            read = asyncio.ensure_future(self._reader.summary(citizen_id, epoch=epoch))
            self._reads[key] = read
            read.add_done_callback(lambda _done: self._reads.pop(key, None))
        # Shielded: a stream that goes away must not cancel the read the others wait for.
        return await asyncio.shield(read)


@dataclass
class StreamServices:
    """What a stream session needs from its process."""

    reader: ContextReader
    hub: ChangeHub
    presence: PresenceStore
    presence_keeper: PresenceKeeper
    access_checks: StreamAccessChecks
    lifecycle: Lifecycle
    settings: ApiSettings
    summaries: SharedSummaries = field(init=False)

    def __post_init__(self) -> None:
        self.summaries = SharedSummaries(self.reader)


class StreamSession:
    """Runs one accepted WebSocket until the client leaves or the server ends it."""

    def __init__(
        self,
        websocket: WebSocket,
        *,
        citizen_id: str,
        viewer_id: str,
        services: StreamServices,
        enquiry_id: str | None = None,
        next_enquiry: NextEnquiry | None = None,
        access_watch: AccessWatch | None = None,
    ) -> None:
        self._ws = websocket
        self._access_watch = access_watch
        self._citizen = citizen_id
        self._viewer = viewer_id
        self._services = services
        self._enquiry_id = enquiry_id
        self._next_enquiry = next_enquiry
        # The enquiries whose completion this stream has seen (never followed again).
        self._completed: set[str] = set()
        self._connection = uuid.uuid4().hex
        self._epoch = ""
        self._version = 0
        # The citizen's erasure mark when the stream started (None: none): an erasure since then moves it.
        self._mark_at_start: str | None = None
        self._viewers: list[str] | None = None
        # A re-sync failed for want of Redis: the next message or heartbeat tries it again.
        self._stale = False

    async def run(self, resume: Resume | None) -> None:
        """Serve the stream; returns when it is over (the socket is closed by then)."""
        services = self._services
        services.lifecycle.stream_opened()
        STREAMS_OPEN.inc()
        keeper = services.presence_keeper
        goodbye: asyncio.Task[None] | None = None
        try:
            with services.hub.subscribe(self._citizen) as subscription:
                try:
                    await services.presence.join(
                        self._citizen,
                        viewer_id=self._viewer,
                        connection_id=self._connection,
                        ttl_s=keeper.ttl_s,
                    )
                except REDIS_UNAVAILABLE:
                    # Redis is down, or every connection stayed busy past the pool's wait (a burst of
                    # opening streams): the client should retry shortly, not see an unexpected error.
                    await self._ws.close(code=CLOSE_TRY_AGAIN, reason=TRY_AGAIN_LATER)
                    return
                try:
                    watch = (
                        self._access_watch(subscription) if self._access_watch else contextlib.nullcontext()
                    )
                    with (
                        watch,
                        keeper.keeping(self._citizen, viewer_id=self._viewer, connection_id=self._connection),
                    ):
                        await self._serve(subscription, resume)
                finally:
                    # Shielded: a handler cancelled as its client goes (test clients, server shutdown)
                    # must still say goodbye, or the others would see this viewer until its entry expires.
                    goodbye = asyncio.ensure_future(
                        services.presence.leave(
                            self._citizen, viewer_id=self._viewer, connection_id=self._connection
                        )
                    )
                    # The stream counts as open until its goodbye is said, cancelled or not: a shutdown
                    # waits for open streams (Lifecycle.drain) before it closes the Redis client the goodbye
                    # uses, which would otherwise open a connection of its own that nothing closes.
                    goodbye.add_done_callback(_goodbye_said(services.lifecycle))
                    # (Cancellation still propagates; the shielded goodbye completes on its own.)
                    with contextlib.suppress(Exception):
                        await asyncio.shield(goodbye)
        finally:
            STREAMS_OPEN.dec()
            if goodbye is None:
                services.lifecycle.stream_closed()

    async def _serve(self, subscription: Subscription, resume: Resume | None) -> None:
        receiver = asyncio.create_task(self._drain_client())
        sender = asyncio.create_task(self._send_loop(subscription, resume))
        try:
            done, _pending = await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Also when this handler itself is cancelled: no task may outlive the stream (a sender left
            # running would refresh a presence entry after its stream has left).
            for task in (receiver, sender):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                        await task
        for task in done:
            error = task.exception()
            if error is not None and not isinstance(error, WebSocketDisconnect | ConnectionError):
                # Redis failing the snapshot or the first presence read (down, or its pool's wait running
                # out as many streams open at once) asks the client to try again, as when joining above.
                code, reason = failure_close(error)
                log.warning(
                    "stream ended by error",
                    error=type(error).__name__,
                    code=code,
                    **driver_code_log_fields(error),
                )
                with contextlib.suppress(Exception):
                    await self._ws.close(code=code, reason=reason)

    async def _drain_client(self) -> None:
        """Read until the client goes away (liveness of the client is checked by protocol pings)."""
        while True:
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                return

    async def _send_loop(self, subscription: Subscription, resume: Resume | None) -> None:
        settings = self._services.settings
        if self._services.lifecycle.draining:
            await self._close_for_reconnect("shutdown", CLOSE_SHUTDOWN, send_position=False)
            return
        end = await self._start(resume)
        if end is not None:
            await self._end(end)
            return
        try:
            await self._send_presence()
        except REDIS_UNAVAILABLE:
            # Redis went away just after the snapshot (a restart, a failover): the stream stays open, as
            # when it goes later on, and re-syncs once Redis answers again. Before, this one read ended the
            # stream with 1013.
            self._stale = True
        lifetime = settings.stream_max_lifetime_s * random.uniform(0.9, 1.0)  # noqa: S311 (spread, not crypto)
        # One timer per stream, set once; heartbeats come from the process's one timer (ChangeHub).
        lifetime_timer = asyncio.get_running_loop().call_later(lifetime, subscription.offer, LIFETIME_OVER)
        try:
            await self._serve_items(subscription)
        finally:
            lifetime_timer.cancel()

    async def _serve_items(self, subscription: Subscription) -> None:
        while True:
            item = await subscription.next()
            if isinstance(item, Heartbeat):
                end = await self._heartbeat()
                if end is not None:
                    await self._end(end)
                    return
                continue
            if isinstance(item, LifetimeOver):
                await self._close_for_reconnect("lifetime", CLOSE_LIFETIME)
                return
            if isinstance(item, ShuttingDown):
                await self._close_for_reconnect("shutdown", CLOSE_SHUTDOWN)
                return
            if isinstance(item, Erased):
                await self._end(CITIZEN_ERASED)
                return
            if isinstance(item, AccessEnded):
                # Access can end while the stream is open: the enquiry completed elsewhere, the token
                # expired, the key was revoked. The stream ends with it.
                await self._ws.close(code=item.code, reason=item.reason)
                return
            try:
                if self._stale and not isinstance(item, PresenceChanged):
                    # Changes may have been missed meanwhile: start again from a snapshot.
                    item = Resync("redis")
                end = None
                if isinstance(item, PresenceChanged):
                    await self._send_presence()
                elif isinstance(item, Resync):
                    end = await self._resync(item.reason)
                else:
                    end = await self._deliver(item)
                if end is not None:
                    await self._end(end)
                    return
            except REDIS_UNAVAILABLE:
                # Redis went away between the message and this read (a restart, a failover): the stream stays
                # open, its heartbeats say live updates are paused, and it re-syncs once Redis answers again.
                self._stale = True

    async def _start(self, resume: Resume | None) -> StreamEnd | None:
        """Snapshot or resume; ENQUIRY_COMPLETED when the enquiry this stream follows has already ended."""
        reader = self._services.reader
        self._mark_at_start = await reader.erasure_mark(self._citizen)
        if resume is not None:
            epoch = await reader.current_epoch(fresh=True)
            if resume.epoch == epoch:
                missed = await reader.changes_since(self._citizen, epoch=epoch, version=resume.version)
                current = await reader.version(self._citizen, epoch=epoch)
                # Resumed only when the held changes lead exactly to the current version.
                if missed is not None and resume.version + len(missed) == current:
                    self._epoch, self._version = epoch, resume.version
                    await self._send(
                        ResumedMessage(citizen_id=self._citizen, epoch=epoch, version=resume.version)
                    )
                    return await self._deliver_all(missed) if missed else None
        return await self._completed_in(await self._snapshot(resync=None))

    async def _deliver_all(self, changes: list[ContextChange]) -> StreamEnd | None:
        """Send held changes in order as one burst; ENQUIRY_COMPLETED if the enquiry ended among them."""
        return await self._send_changes(changes)

    async def _deliver(self, change: ContextChange) -> StreamEnd | None:
        """Send the change unless already sent; fill a gap from the change log. ENQUIRY_COMPLETED if the
        enquiry ended."""
        if self._epoch == "" and change.epoch:
            # Nothing had ever been written when this stream started: the first generation begins empty,
            # exactly where the stream stands (version 0), so its changes simply follow.
            self._epoch = change.epoch
        if change.epoch != self._epoch:
            # A change from another generation may arrive before its announcement: read the epoch afresh.
            self._services.reader.forget_epoch()
            return await self._resync("epoch")
        if change.version <= self._version:
            if change.version == 1 and self._version > 1 and await self._begun_again():
                # The citizen's keys expired (or were erased) and their first event since began them
                # again at version 1: what the stream shows is gone, and every later change would build
                # on it.
                return await self._resync("reset")
            return None  # already in the snapshot, or already sent
        missed = [change]
        if change.version != self._version + 1:
            # A change arrived before its predecessor reached us: fill the gap from the change log.
            held = await self._services.reader.changes_since(
                self._citizen, epoch=self._epoch, version=self._version
            )
            if not held or held[-1].version < change.version:
                return await self._resync("gap")
            # Every change held, not only up to this one: each carries the profile as it stands now
            # (context/changes_since.lua), and the later ones' own messages, still on their way with the
            # profile as it stood then, would show an earlier profile again for a moment. They arrive as
            # duplicates now, and are dropped.
            missed = held
        return await self._send_changes(missed)

    async def _begun_again(self) -> bool:
        """Whether the citizen's version is now below the stream's: their keys began again since. (A first
        version that arrives after a snapshot that already held it, queued before the snapshot was read, is
        an ordinary duplicate: the version held is then at least the stream's.)"""
        return await self._services.reader.version(self._citizen, epoch=self._epoch) < self._version

    async def _send_changes(self, missed: list[ContextChange]) -> StreamEnd | None:
        # The summary moves with the timeline; it rides on the last change of the burst.
        summary = await self._services.summaries.after(
            self._citizen, epoch=self._epoch, version=missed[-1].version
        )
        end: StreamEnd | None = None
        for index, item in enumerate(missed):
            await self._send(
                ChangeMessage(
                    citizen_id=self._citizen,
                    epoch=item.epoch,
                    version=item.version,
                    event=item.event,
                    profile=item.profile,
                    summary=summary if index == len(missed) - 1 else None,
                )
            )
            self._version = item.version
            if end is None and self._completes_followed(item.event):
                end = await self._enquiry_ended()
        return end

    async def _enquiry_ended(self) -> StreamEnd | None:
        """The enquiry the stream follows completed: ENQUIRY_COMPLETED, unless the agent holds another
        active enquiry for the citizen, none of whose completion the stream has seen, and this stream may
        follow it (a citizen's stream), which it then does."""
        if self._next_enquiry is None:
            return ENQUIRY_COMPLETED
        # A database that cannot say ends the stream as any store unavailable does: "try again later"
        # (1013). The client's reconnection is authorised afresh: under the other enquiry, if there is one.
        held = await self._next_enquiry(frozenset(self._completed))
        if held is None:
            return ENQUIRY_COMPLETED
        self._enquiry_id = held
        return None

    def _completes_followed(self, event: CloudEvent | None) -> bool:
        """Whether the event completes the enquiry this stream follows (noting any enquiry it completes)."""
        completed = completed_enquiry(event)
        if completed is None:
            return False
        self._completed.add(completed)
        return completed == self._enquiry_id

    async def _end(self, end: StreamEnd) -> None:
        await self._ws.close(code=end.code, reason=end.reason)

    async def _completed_in(self, context: CitizenContext) -> StreamEnd | None:
        """ENQUIRY_COMPLETED when the snapshot holds the completion of the enquiry followed, and the stream
        may follow no other."""
        completes = [self._completes_followed(event) for event in context.timeline]  # notes every completion
        return await self._enquiry_ended() if any(completes) else None

    async def _resync(self, reason: str) -> StreamEnd | None:
        """A snapshot again, unless the stream must end: the change or message that said so may be one of
        those missed. The snapshot holds the completion of the enquiry this stream follows; an erasure
        announced while the subscription was lost is found by its mark."""
        if reason == "redis":
            # Compared as held, not with a clock: an erasure sets or moves the mark (to the newest event's
            # time, which a publisher's clock may have put ahead), and nothing else does.
            mark = await self._services.reader.erasure_mark(self._citizen)
            if mark is not None and mark != self._mark_at_start:
                return CITIZEN_ERASED
        return await self._completed_in(await self._snapshot(resync=reason))

    async def _snapshot(self, *, resync: str | None) -> CitizenContext:
        context = await self._services.reader.context(self._citizen)
        # In sync again, whatever was missed while Redis was away.
        self._epoch, self._version, self._stale = context.epoch, context.version, False
        if resync is not None:
            STREAM_RESYNCS.labels(reason=resync).inc()
        await self._send(SnapshotMessage(context=context))
        return context

    async def _heartbeat(self) -> StreamEnd | None:
        """A heartbeat, after a snapshot if the stream fell behind, unless it turned out to have to end."""
        # Presence is kept alive for the whole process by its PresenceKeeper, not by each stream.
        live = self._services.hub.connected.is_set()
        if self._stale and live:
            with contextlib.suppress(*REDIS_UNAVAILABLE):
                end = await self._resync("redis")
                if end is not None:
                    return end
        await self._send(
            HeartbeatMessage(epoch=self._epoch, version=self._version, live=live and not self._stale)
        )
        return None

    async def _send_presence(self) -> None:
        entries = await self._services.presence.viewers(self._citizen)
        others = sorted({viewer for viewer, connection in entries if connection != self._connection})
        if others != self._viewers:
            self._viewers = others
            await self._send(PresenceMessage(citizen_id=self._citizen, viewers=others))

    async def _close_for_reconnect(
        self, reason: Literal["shutdown", "lifetime"], code: int, *, send_position: bool = True
    ) -> None:
        if send_position:
            await self._send(ReconnectMessage(reason=reason, epoch=self._epoch, version=self._version))
        await self._ws.close(code=code, reason=f"reconnect: {reason}")

    async def _send(self, message: BaseModel) -> None:
        # A part a message does not carry (a change's event, profile or summary) is left out, not sent as
        # null; what it carries is sent whole, nulls included, as REST sends it: a snapshot's context is the
        # document `GET /v1/citizens/{id}/context` answers (a profile's unknown language is null there).
        absent = {name for name, value in message if value is None}
        await self._ws.send_text(message.model_dump_json(exclude=absent))
        _messages_counter(getattr(message, "type", "unknown")).inc()


def _goodbye_said(lifecycle: Lifecycle) -> Callable[["asyncio.Task[None]"], None]:
    """What a stream's goodbye does as it ends: count the stream closed (its failure, already suppressed
    where it was awaited, is taken here, so that asyncio does not report it as never retrieved)."""

    def said(task: "asyncio.Task[None]") -> None:
        if not task.cancelled():
            task.exception()
        lifecycle.stream_closed()

    return said
