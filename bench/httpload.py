"""A small HTTP/1.1 load generator over asyncio streams, for `GET` on keep-alive connections.

Why not httpx: at thousands of requests per second a general client spends more CPU per request than the
endpoint under test, and on a 2-core machine the load generator's CPU is taken from the server. This one
writes a fixed request and reads a status line, headers and a Content-Length body, nothing more.
"""

import asyncio
import random
import time
from dataclasses import dataclass, field

from bench.stack import raise_fd_limit


@dataclass
class Measured:
    """Completed requests, their latencies (seconds) and failures."""

    completed: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)


class Connection:
    """One keep-alive connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> "Connection":
        """Connect to host:port."""
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def get(self, request: bytes) -> int:
        """Send a ready-made request and read the whole response; its status."""
        self.writer.write(request)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        """Close the socket."""
        self.writer.close()


def request_bytes(host: str, port: int, path: str, headers: dict[str, str]) -> bytes:
    """A GET request for `path` with `headers`."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def open_loop(
    host: str,
    port: int,
    paths: list[str],
    headers: dict[str, str],
    rate_per_s: float,
    duration_s: float,
    warm_up_s: float = 0.0,
) -> Measured:
    """Requests at a steady rate whatever the responses do; latency counts from when each was due.

    Measuring from the due time rather than the send time keeps a stalled server from hiding its stall
    (coordinated omission): requests that had to wait for a free connection count their wait. The same
    rate runs `warm_up_s` first, its latencies and answers uncounted (its errors counted), as in the
    closed loop: a server just started opens its connections and fills its caches then, which is not the
    steady state the figure describes.
    """
    raise_fd_limit()
    return asyncio.run(_open_loop(host, port, paths, headers, rate_per_s, duration_s, warm_up_s))


async def _open_loop(
    host: str,
    port: int,
    paths: list[str],
    headers: dict[str, str],
    rate_per_s: float,
    duration_s: float,
    warm_up_s: float,
) -> Measured:
    rng = random.Random(11)  # noqa: S311 (load pattern, not crypto)
    requests = [request_bytes(host, port, path, headers) for path in paths]
    result = Measured()
    idle: list[Connection] = []
    max_connections = 512
    opened = 0
    slots = asyncio.Semaphore(max_connections)

    async def one(due: float, request: bytes, counted: bool) -> None:
        nonlocal opened
        async with slots:
            connection = idle.pop() if idle else None
            try:
                if connection is not None:
                    try:
                        status = await connection.get(request)
                    except (ConnectionError, asyncio.IncompleteReadError):
                        # An idle keep-alive connection the server closed meanwhile (uvicorn closes them
                        # after 5 s): a GET may be sent again on a new one, as HTTP clients do.
                        connection.close()
                        connection = None
                if connection is None:
                    connection = await Connection.open(host, port)
                    opened += 1
                    status = await connection.get(request)
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError):
                result.errors += 1  # during the warm-up too, as in the closed loop: a failing server shows
                if connection is not None:
                    connection.close()
                return
            idle.append(connection)
            if counted:
                result.latencies.append(time.perf_counter() - due)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                result.completed += 1

    warm_up = int(rate_per_s * warm_up_s)
    total = warm_up + int(rate_per_s * duration_s)
    tasks: set[asyncio.Task[None]] = set()
    started = time.perf_counter()
    for seq in range(total):
        due = started + seq / rate_per_s
        pause = due - time.perf_counter()
        if pause > 0:
            await asyncio.sleep(pause)
        task = asyncio.create_task(one(due, rng.choice(requests), counted=seq >= warm_up))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    result.seconds = time.perf_counter() - started - warm_up / rate_per_s
    for connection in idle:
        connection.close()
    return result


def closed_loop(
    host: str,
    port: int,
    paths: list[str],
    headers: dict[str, str],
    concurrency: int,
    duration_s: float,
    warm_up_s: float = 1.0,
) -> Measured:
    """`concurrency` connections each sending its next request as soon as the last answered: capacity."""
    raise_fd_limit()
    return asyncio.run(_closed_loop(host, port, paths, headers, concurrency, duration_s, warm_up_s))


async def _closed_loop(
    host: str,
    port: int,
    paths: list[str],
    headers: dict[str, str],
    concurrency: int,
    duration_s: float,
    warm_up_s: float,
) -> Measured:
    rng = random.Random(13)  # noqa: S311 (load pattern, not crypto)
    requests = [request_bytes(host, port, path, headers) for path in paths]
    result = Measured()
    connections = [await Connection.open(host, port) for _ in range(concurrency)]
    begin = time.perf_counter() + warm_up_s
    end = begin + duration_s

    async def loop(connection: Connection) -> None:
        while True:
            sent = time.perf_counter()
            if sent >= end:
                return
            try:
                status = await connection.get(rng.choice(requests))
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError):
                result.errors += 1
                return
            done = time.perf_counter()
            if sent >= begin:
                # Only requests sent after the warm-up count; the rate is over the measured window only.
                result.completed += 1
                result.latencies.append(done - sent)
                result.statuses[status] = result.statuses.get(status, 0) + 1

    await asyncio.gather(*(loop(connection) for connection in connections))
    result.seconds = duration_s
    for connection in connections:
        connection.close()
    return result
