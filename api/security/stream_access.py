"""Open streams keep checking their access, all of a process's streams in one pass.

A stream's access can end while it is open: the enquiry it follows completed elsewhere, the agent's token
expired, the integrator's key was revoked. Checked stream by stream, that was a database query and a
worker-thread hop per stream every few seconds (2,000 a second with 10,000 streams). One timer per process
now checks every stream at once: expiry is pure arithmetic, and one thread hop runs one query for all the
enquiries (in chunks) and one per distinct key. A stream whose access lapsed is handed `AccessEnded` with
its close code.
"""

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.security import api_keys
from api.security.access import Decision
from api.security.authentication import SecurityServices
from api.security.principal import Caller
from api.streaming import AccessEnded, Subscription
from models import enquiry_repository

log = structlog.get_logger("streaming")

# Why an open stream is closed when its access lapses (documented with the other close codes).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_ACCESS_ENDED = 4410
CLOSE_REASONS = {
    CLOSE_UNAUTHENTICATED: "credential expired",
    CLOSE_FORBIDDEN: "access revoked",
    CLOSE_ACCESS_ENDED: "enquiry ended",
}

# Streams judged before letting other tasks run.
CHECKS_AT_ONCE = 500

# Enquiry ids per query: well under the bound-parameter limits of SQLite and PostgreSQL.
QUERY_CHUNK = 500


@dataclass(frozen=True, eq=False)
class WatchedStream:
    """One open stream: who reads, under which decision, and where to tell it that access ended.

    `held_for`: a citizen's stream opened under one of the agent's enquiries for that citizen lasts while
    the agent holds any active enquiry for them (the citizen's id); None for a stream that follows its one
    enquiry (or none).
    """

    caller: Caller
    decision: Decision
    subscription: Subscription
    held_for: str | None = None


@dataclass(frozen=True)
class Holdings:
    """What the database says now, for the streams being checked."""

    active_enquiries: frozenset[str]
    key_lapses: dict[str, str | None]
    # (agent, citizen) pairs where the agent holds an active enquiry for the citizen.
    holders: frozenset[tuple[str, str]] = frozenset()


def expiry_lapse(caller: Caller, *, now: datetime, leeway: timedelta) -> int | None:
    """The close code when the caller's token or key has expired (no database needed), or None."""
    # The same allowance for clock skew as when an agent's token was verified.
    if (
        caller.expires_at is not None
        and caller.expires_at + (leeway if caller.is_agent else timedelta(0)) <= now
    ):
        return CLOSE_UNAUTHENTICATED
    return None


def credential_lapse(caller: Caller, holdings: Holdings, *, now: datetime, leeway: timedelta) -> int | None:
    """The close code when the caller's token or key no longer holds, or None while it does."""
    if (expired := expiry_lapse(caller, now=now, leeway=leeway)) is not None:
        return expired
    if not caller.is_agent and holdings.key_lapses.get(caller.id) is not None:
        return CLOSE_UNAUTHENTICATED if holdings.key_lapses[caller.id] == "expired" else CLOSE_FORBIDDEN
    return None


def enquiry_lapse(stream: WatchedStream, holdings: Holdings) -> int | None:
    """The close code when the enquiry the stream was opened under is no longer active (for a citizen's
    stream: when the agent holds no active enquiry for the citizen any more), or None."""
    enquiry_id = stream.decision.enquiry_id
    if enquiry_id is None:
        return None
    if stream.held_for is not None:
        held = (stream.caller.id, stream.held_for) in holdings.holders
    else:
        held = enquiry_id in holdings.active_enquiries
    return None if held else CLOSE_ACCESS_ENDED


def lapse_code(stream: WatchedStream, holdings: Holdings, *, now: datetime, leeway: timedelta) -> int | None:
    """The close code of a stream whose access no longer holds, or None while it does."""
    return credential_lapse(stream.caller, holdings, now=now, leeway=leeway) or enquiry_lapse(
        stream, holdings
    )


class StreamAccessChecks:
    """Re-checks the access of every open stream of this process, every `access_check_s`."""

    def __init__(self, security: SecurityServices) -> None:
        self._security = security
        self._streams: set[WatchedStream] = set()

    @contextlib.contextmanager
    def watching(
        self, caller: Caller, decision: Decision, subscription: Subscription, *, held_for: str | None = None
    ) -> Iterator[None]:
        """Check this stream's access while the block runs (`held_for`: see WatchedStream)."""
        stream = WatchedStream(caller, decision, subscription, held_for)
        self._streams.add(stream)
        try:
            yield
        finally:
            self._streams.discard(stream)

    async def run(self) -> None:
        """Check every interval until cancelled; a failed pass is retried at the next one."""
        while True:
            await asyncio.sleep(self._security.settings.access_check_s)
            try:
                await self.check()
            except Exception as error:  # the checks must go on: a pass that failed is made again next time
                log.warning("stream access check failed", error=type(error).__name__)

    async def check(self) -> None:
        """Check every open stream now; tell those whose access lapsed."""
        streams = list(self._streams)
        if not streams:
            return
        holdings: Holdings | None
        try:
            holdings = await run_in_threadpool(self._holdings, streams)
        except Exception as error:
            # What the database holds cannot be read now. Enquiries and keys are not assumed lapsed (a
            # database hiccup would close every stream) and are checked again at the next pass; expiry,
            # which needs no database, is still enforced.
            log.warning("stream access check failed", error=type(error).__name__)
            holdings = None
        now = datetime.now(UTC)
        leeway = timedelta(seconds=self._security.settings.clock_skew_s)
        for index, stream in enumerate(streams):
            code = (
                lapse_code(stream, holdings, now=now, leeway=leeway)
                if holdings is not None
                else expiry_lapse(stream.caller, now=now, leeway=leeway)
            )
            if code is not None:
                stream.subscription.offer(AccessEnded(code, CLOSE_REASONS[code]))
            if index % CHECKS_AT_ONCE == CHECKS_AT_ONCE - 1:
                await asyncio.sleep(0)  # let deliveries through between slices of a long pass

    def _holdings(self, streams: list[WatchedStream]) -> Holdings:
        engine = self._security.engine
        # A stream held by the agent's enquiries for its citizen is checked by (agent, citizen); any other
        # opened under an enquiry, by that enquiry.
        under_enquiry = [s for s in streams if s.decision.enquiry_id is not None]
        pairs = sorted({(s.caller.id, citizen) for s in under_enquiry if (citizen := s.held_for)})
        enquiry_ids = sorted({e for s in under_enquiry if not s.held_for and (e := s.decision.enquiry_id)})
        active: set[str] = set()
        holders: set[tuple[str, str]] = set()
        if enquiry_ids or pairs:
            with Session(engine) as session:
                for start in range(0, len(enquiry_ids), QUERY_CHUNK):
                    chunk = enquiry_ids[start : start + QUERY_CHUNK]
                    active |= enquiry_repository.active_among(session, enquiry_ids=chunk)
                for start in range(0, len(pairs), QUERY_CHUNK):
                    held = enquiry_repository.holding_enquiry_ids(
                        session.connection(), pairs=pairs[start : start + QUERY_CHUNK]
                    )
                    holders |= held.keys()
        key_ids = {s.caller.id for s in streams if not s.caller.is_agent}
        lapses = {key_id: api_keys.lapse(engine, key_id=key_id) for key_id in key_ids}
        return Holdings(active_enquiries=frozenset(active), key_lapses=lapses, holders=frozenset(holders))
