"""Presence of this process's streams, kept alive by one timer for the whole process.

Each open stream has an entry in Redis that expires unless refreshed. Refreshing per stream costs two
Redis transactions per stream and heartbeat: with 10,000 streams, 2,000 a second, enough to saturate the
process's event loop. Here one task refreshes every entry of the process once per heartbeat interval, in a
few pipelined round trips spread over the interval, and tells a citizen's streams when its viewers changed
(for instance when the entry of a replica that died without saying goodbye expired).
"""

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator

import redis.exceptions
import structlog

from api.streaming import PRESENCE_CHANGED, ChangeHub, stop_if_cancelled
from context.store import PresenceStore

log = structlog.get_logger("presence")


# Citizens per round trip: small enough that packing one batch never holds the event loop for long.
SWEEP_BATCH = 200


class PresenceKeeper:
    """Keeps the presence entries of this process's open streams alive."""

    def __init__(self, store: PresenceStore, hub: ChangeHub, *, interval_s: float) -> None:
        self._store = store
        self._hub = hub
        self._interval_s = interval_s
        self._members: defaultdict[str, set[tuple[str, str]]] = defaultdict(set)
        # The viewers seen at the last sweep, per citizen, to tell streams only when they change.
        self._seen: dict[str, frozenset[tuple[str, str]]] = {}

    @property
    def ttl_s(self) -> float:
        """How long an entry lives unless refreshed: three sweeps, so one late sweep loses nobody."""
        return self._interval_s * 3

    @contextlib.contextmanager
    def keeping(self, citizen_id: str, *, viewer_id: str, connection_id: str) -> Iterator[None]:
        """Keep this stream's entry alive while the block runs (it joined already; it leaves after)."""
        member = (viewer_id, connection_id)
        self._members[citizen_id].add(member)
        try:
            yield
        finally:
            members = self._members.get(citizen_id)
            if members is not None:
                members.discard(member)
                if not members:
                    del self._members[citizen_id]
                    self._seen.pop(citizen_id, None)

    async def run(self) -> None:
        """Sweep every interval until cancelled."""
        while True:
            started = time.monotonic()
            try:
                await self.sweep(spread_s=self._interval_s / 2)
            except redis.exceptions.RedisError as error:
                stop_if_cancelled()  # a cancelled read, surfaced as an error (see stop_if_cancelled)
                # Entries live three intervals: the next sweep catches up once Redis is back (or writable
                # again, after a failover). Whatever the error, the keeper goes on.
                log.warning("presence sweep failed", error=type(error).__name__)
            await asyncio.sleep(max(self._interval_s - (time.monotonic() - started), 0))

    async def sweep(self, *, spread_s: float = 0) -> None:
        """Refresh every entry of this process and tell streams whose citizen's viewers changed."""
        citizens = list(self._members)
        batches = [citizens[start : start + SWEEP_BATCH] for start in range(0, len(citizens), SWEEP_BATCH)]
        pause = spread_s / len(batches) if batches else 0
        for index, batch in enumerate(batches):
            if index:
                await asyncio.sleep(pause)
            if not self._hub.connected.is_set():
                return  # live updates are paused (heartbeats say so); entries resume with the subscription
            members = {citizen: frozenset(self._members.get(citizen, ())) for citizen in batch}
            viewers = await self._store.keep_alive(members, ttl_s=self.ttl_s)
            for citizen_id, entries in viewers.items():
                await self._reconcile(citizen_id, frozenset(entries))

    async def _reconcile(self, citizen_id: str, entries: frozenset[tuple[str, str]]) -> None:
        # An entry of a stream still open that is gone from Redis (it expired while Redis was away, or was
        # removed by hand) is written again, as a heartbeat used to do.
        for viewer_id, connection_id in self._members.get(citizen_id, set()) - entries:
            await self._store.refresh(
                citizen_id, viewer_id=viewer_id, connection_id=connection_id, ttl_s=self.ttl_s
            )
            entries |= {(viewer_id, connection_id)}
        if citizen_id not in self._members:
            return  # every stream of this citizen left meanwhile
        previous = self._seen.get(citizen_id)
        self._seen[citizen_id] = entries
        # The first sweep after a stream opens only records: the stream sent the viewers when it opened.
        if previous is not None and previous != entries:
            self._hub.offer(citizen_id, PRESENCE_CHANGED)
