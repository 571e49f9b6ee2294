"""Agent desktops: one process holding many live streams, timing every change from its send to arrival."""

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from api.stream_session import CLOSE_ENQUIRY_ENDED
from bench.access import Grant, open_stream
from bench.stack import raise_fd_limit
from bench.workers import Event
from bench.workload import sent_ns_of
from events.heap import API_FULL_COLLECTION_EVERY, API_MIDDLE_COLLECTION_EVERY, settle_heap

# How long a stream may take from its handshake to its first message (snapshot or "resumed").
OPEN_TIMEOUT_S = 60
# Streams being opened at once (each a handshake, an authorisation and a snapshot on the API).
MAX_OPENING = 16
# The event that completes an enquiry (api/enquiries.py): the last change its stream receives.
ENQUIRY_COMPLETED = "enquiry.completed"


@dataclass
class Watched:
    """What the streams of one process saw."""

    opened: int = 0
    failed: int = 0
    # Streams the API closed before the desktops closed theirs: because their enquiry was completed (as a
    # call ends), or for any other reason (closed early).
    ended: int = 0
    closed_early: int = 0
    messages: dict[str, int] = field(default_factory=dict)
    # Seconds from the producer's send to the change's arrival, for events stamped by the producer.
    latencies: list[float] = field(default_factory=list)
    open_seconds: float = 0.0


def watch(
    api_url: str, grants: list[Grant], ready: Event, stop: Event, all_closed: Event | None = None
) -> Watched:
    """Open a stream per grant, set `ready`, record arrivals until `stop` is set, then close them all.

    `all_closed`, if given, is set once the API has closed every stream (its enquiry completed, say).
    """
    raise_fd_limit()
    return asyncio.run(_watch(api_url, grants, ready, stop, all_closed))


async def _watch(
    api_url: str, grants: list[Grant], ready: Event, stop: Event, all_closed: Event | None
) -> Watched:
    seen = Watched()
    limit = asyncio.Semaphore(MAX_OPENING)
    connections: list[ClientConnection] = []
    readers: list[asyncio.Task[None]] = []
    closing = False  # the desktops are closing their streams themselves

    async def read(connection: ClientConnection) -> None:
        try:
            async for raw in connection:
                arrived = time.time_ns()
                message = json.loads(raw)
                kind = message.get("type", "?")
                event = message.get("event") or {}
                if kind == "change" and event.get("type") == ENQUIRY_COMPLETED:
                    # The enquiry's own completion, not one of the producer's changes.
                    kind = "completion"
                seen.messages[kind] = seen.messages.get(kind, 0) + 1
                if kind == "change" and event:
                    sent = sent_ns_of(event["id"])
                    if sent is not None:
                        seen.latencies.append((arrived - sent) / 1e9)
        except ConnectionClosed:
            pass
        if connection.close_code == CLOSE_ENQUIRY_ENDED:
            seen.ended += 1
        elif not closing:
            seen.closed_early += 1

    async def open_one(grant: Grant) -> None:
        async with limit:
            try:
                connection = await open_stream(api_url, grant)
            except (OSError, TimeoutError, ConnectionClosed, Exception):
                seen.failed += 1
                return
            try:
                # The server accepts the socket before it authorises the stream and reads the snapshot:
                # a stream is open for the agent (and for this figure) once its first message arrived.
                # Counting it at the handshake left thousands of streams still opening on the server
                # while changes were being timed.
                first = json.loads(await asyncio.wait_for(connection.recv(), timeout=OPEN_TIMEOUT_S))
            except (OSError, TimeoutError, ConnectionClosed, Exception):
                seen.failed += 1
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.close(), timeout=5)
                return
        kind = first.get("type", "?")
        seen.messages[kind] = seen.messages.get(kind, 0) + 1
        connections.append(connection)
        readers.append(asyncio.create_task(read(connection)))

    started = time.perf_counter()
    await asyncio.gather(*(open_one(grant) for grant in grants))
    seen.opened = len(connections)
    seen.open_seconds = round(time.perf_counter() - started, 1)
    # The desktops' own garbage collector must not show in the figures. With 10,000 streams open, a
    # `gc.callbacks` timer in this process measured a full collection of 2.3 s and a middle one of 0.2 s
    # during a quick fan-out run: every change arriving meanwhile looked that late. What opening built is
    # left out of later collections, and middle and full ones are rare, as in the API (events/heap.py).
    settle_heap(full_collection_every=API_FULL_COLLECTION_EVERY, middle_every=API_MIDDLE_COLLECTION_EVERY)
    if all_closed is not None:
        signal = asyncio.create_task(_set_when_done(readers, all_closed))
    ready.set()
    # `stop` is a multiprocessing event (set by the runner's process): it is waited for in a thread.
    await asyncio.to_thread(stop.wait)
    closing = True
    if all_closed is not None:
        signal.cancel()

    async def close(connection: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(connection.close(), timeout=5)

    await asyncio.gather(*(close(connection) for connection in connections))
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return seen


async def _set_when_done(readers: list["asyncio.Task[None]"], done: Event) -> None:
    """Set `done` once every reader has ended, that is, once every stream has been closed."""
    await asyncio.gather(*readers, return_exceptions=True)
    done.set()
