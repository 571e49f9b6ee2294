"""Dependencies: one-liners reading what the lifespan put in the connection's state.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in a worker thread, and three
thread hops per request cost the context read more than its Redis round trips (see README, Benchmarks).
"""

from dataclasses import dataclass
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends
from sqlalchemy import Engine
from starlette.requests import HTTPConnection

from api.publisher import EventPublisher
from api.stream_session import StreamServices
from api.streaming import ChangeHub
from context.settings import IdentitySettings
from context.store import ContextReader


async def _redis(connection: HTTPConnection) -> "aioredis.Redis":
    return connection.state.redis  # type: ignore[no-any-return]


async def _reader(connection: HTTPConnection) -> ContextReader:
    return connection.state.reader  # type: ignore[no-any-return]


async def _hub(connection: HTTPConnection) -> ChangeHub:
    return connection.state.hub  # type: ignore[no-any-return]


async def _publisher(connection: HTTPConnection) -> EventPublisher:
    return connection.state.publisher  # type: ignore[no-any-return]


async def _stream_services(connection: HTTPConnection) -> StreamServices:
    return connection.state.streams  # type: ignore[no-any-return]


async def _identity(connection: HTTPConnection) -> IdentitySettings:
    return connection.state.identity  # type: ignore[no-any-return]


async def _engine(connection: HTTPConnection) -> Engine:
    return connection.state.engine  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Viewer:
    """Who is asking: an agent (or, later, an integrator's key)."""

    id: str
    kind: str


DEVELOPMENT_AGENT = "dev-agent"


async def _viewer(connection: HTTPConnection) -> Viewer:
    # The authentication seam. Until tokens are verified, the caller names the agent they act for in
    # `X-Agent-Id` (development only); every route already depends on this one function.
    agent = connection.headers.get("x-agent-id", DEVELOPMENT_AGENT).strip()[:200] or DEVELOPMENT_AGENT
    return Viewer(id=agent, kind="agent")


RedisDep = Annotated["aioredis.Redis", Depends(_redis)]
ReaderDep = Annotated[ContextReader, Depends(_reader)]
HubDep = Annotated[ChangeHub, Depends(_hub)]
EngineDep = Annotated[Engine, Depends(_engine)]
PublisherDep = Annotated[EventPublisher, Depends(_publisher)]
StreamServicesDep = Annotated[StreamServices, Depends(_stream_services)]
CurrentViewer = Annotated[Viewer, Depends(_viewer)]
IdentityDep = Annotated[IdentitySettings, Depends(_identity)]
