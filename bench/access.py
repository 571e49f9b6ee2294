"""How the bench authenticates and gets permission to read citizens, as real agents do.

Each agent signs in with a development token (what `citizen-context token` prints), and reads a citizen
only through an active enquiry: the bench starts one for every citizen it reads (the soak also completes
them, as calls end), and streams through `/v1/enquiries/{id}/stream` with the bearer token in the
handshake's headers (a service can set them; a browser uses a ticket). The reads are audited like any
other.
"""

import asyncio
import email.utils
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TypeVar

import httpx
import structlog
from websockets.asyncio.client import ClientConnection, connect

from api.security.settings import SecuritySettings
from api.security.tokens import mint_development_token
from models.tables import AgentRole

T = TypeVar("T")

log = structlog.get_logger("bench")

# Streams send JSON text frames of a few kilobytes; a snapshot of a long timeline can be larger.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Agent:
    """An agent the bench acts as."""

    id: str

    @cached_property
    def _token(self) -> str:
        return mint_development_token(
            SecuritySettings(), agent_id=self.id, roles=[AgentRole.agent], ttl=timedelta(hours=4)
        )

    def headers(self) -> dict[str, str]:
        """HTTP headers that authenticate a request as this agent."""
        return {"Authorization": f"Bearer {self._token}"}


@dataclass(frozen=True)
class Grant:
    """Permission for one agent to read one citizen: an active enquiry."""

    agent: Agent
    citizen_id: str
    enquiry_id: str


# The figures that open many streams share them out this many to an agent (its enquiries and streams).
STREAMS_PER_AGENT = 100


def agents_for(streams: int) -> int:
    """How many agents share `streams` streams: STREAMS_PER_AGENT each, one at least."""
    return max(streams // STREAMS_PER_AGENT, 1)


def agents(count: int, *, prefix: str = "bench-agent") -> list[Agent]:
    """`count` distinct agents (a contact centre's agents each hold a few enquiries, not thousands)."""
    return [Agent(f"{prefix}-{number}") for number in range(count)]


# Requests the bench's agents have in flight at once while starting or completing enquiries.
CONCURRENCY = 16
# How many times in all an agent's request is sent when the API answers 503 (a store busy or away): each
# time again after the seconds the answer's Retry-After says, as the API asks of every client. A start
# tried again after a 503 that came after its commit (rare) leaves one more active enquiry for the
# citizen, which changes nothing the bench measures.
ATTEMPTS = 5
# The longest wait a Retry-After gets: a figure is timed in minutes, and no 503 of the API asks for more.
MAX_RETRY_AFTER_S = 30.0


async def grant_access(
    api_url: str, staff: list[Agent], citizen_ids: list[str], *, concurrency: int = CONCURRENCY
) -> list[Grant]:
    """Start an enquiry for every citizen, spreading them round-robin over `staff`; in citizen order."""

    async def start(client: httpx.AsyncClient, index: int) -> Grant:
        agent, citizen_id = staff[index % len(staff)], citizen_ids[index]
        response = await post_with_retry_after(
            client,
            "/v1/enquiries",
            json={"citizen_id": citizen_id, "channel": "phone"},
            headers=agent.headers(),
        )
        return Grant(agent=agent, citizen_id=citizen_id, enquiry_id=response.json()["id"])

    return await _each(api_url, len(citizen_ids), start, concurrency=concurrency)


async def complete_enquiries(api_url: str, grants: list[Grant], *, concurrency: int = CONCURRENCY) -> None:
    """Complete every grant's enquiry, as its agent does when the call ends (its streams then close)."""

    async def complete(client: httpx.AsyncClient, index: int) -> None:
        grant = grants[index]
        await post_with_retry_after(
            client,
            f"/v1/enquiries/{grant.enquiry_id}/complete",
            json={"outcome": "resolved"},
            headers=grant.agent.headers(),
        )

    await _each(api_url, len(grants), complete, concurrency=concurrency)


async def post_with_retry_after(
    client: httpx.AsyncClient, url: str, *, json: dict[str, str], headers: dict[str, str]
) -> httpx.Response:
    """POST `json` to `url`, again after Retry-After while the API answers 503 (ATTEMPTS in all); an error
    status left at the end raises."""
    for attempt in range(1, ATTEMPTS + 1):
        response = await client.post(url, json=json, headers=headers)
        if response.status_code != httpx.codes.SERVICE_UNAVAILABLE or attempt == ATTEMPTS:
            break
        # Said, so that a figure whose set-up met a busy store shows it: the problem's detail names the
        # store (the URL is left out: it holds an enquiry's id).
        log.warning("sent again after a 503", detail=_problem_detail(response), attempt=attempt)
        await asyncio.sleep(retry_after_s(response.headers.get("Retry-After")))
    response.raise_for_status()
    return response


def retry_after_s(value: str | None) -> float:
    """The seconds a Retry-After asks to wait, a number of seconds or an HTTP date (RFC 9110), at most
    MAX_RETRY_AFTER_S; a second when it says neither."""
    text = (value or "").strip()
    if text.isdigit():
        seconds = float(text)
    else:
        try:
            seconds = (email.utils.parsedate_to_datetime(text) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            seconds = 1.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _problem_detail(response: httpx.Response) -> str | None:
    """The detail of a problem answer; None for any other body."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return None
    return detail if isinstance(detail, str) else None


async def _each(
    api_url: str,
    count: int,
    call: Callable[[httpx.AsyncClient, int], Awaitable[T]],
    *,
    concurrency: int,
) -> list[T]:
    """`call(client, index)` for every index below `count`, `concurrency` at a time; results in order."""
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:

        async def limited(index: int) -> T:
            async with limit:
                return await call(client, index)

        return list(await asyncio.gather(*(limited(index) for index in range(count))))


async def open_stream(api_url: str, grant: Grant) -> ClientConnection:
    """Open the live stream of the grant's citizen, as its agent."""
    url = api_url.replace("http", "ws", 1) + f"/v1/enquiries/{grant.enquiry_id}/stream"
    return await connect(
        url,
        additional_headers=grant.agent.headers(),
        max_size=MAX_MESSAGE_BYTES,
        open_timeout=60,
        # The server pings (uvicorn's ws_ping_interval); the bench's clients only answer.
        ping_interval=None,
        compression=None,
    )
