"""Dependencies: one-liners reading what the lifespan put in the connection's state."""

from dataclasses import dataclass
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends
from sqlalchemy import Engine
from starlette.requests import HTTPConnection

from api.publisher import EventPublisher
from api.streaming import ChangeHub
from context.store import ContextReader


def _redis(connection: HTTPConnection) -> "aioredis.Redis":
    return connection.state.redis  # type: ignore[no-any-return]


def _reader(connection: HTTPConnection) -> ContextReader:
    return connection.state.reader  # type: ignore[no-any-return]


def _hub(connection: HTTPConnection) -> ChangeHub:
    return connection.state.hub  # type: ignore[no-any-return]


def _publisher(connection: HTTPConnection) -> EventPublisher:
    return connection.state.publisher  # type: ignore[no-any-return]


def _engine(connection: HTTPConnection) -> Engine:
    return connection.state.engine  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Viewer:
    """Who is asking. The authentication seam: today everyone is the anonymous development viewer."""

    id: str
    kind: str


def _viewer() -> Viewer:
    # Replaced by bearer-token and API-key authentication; routes already depend on it.
    return Viewer(id="anonymous", kind="development")


RedisDep = Annotated["aioredis.Redis", Depends(_redis)]
ReaderDep = Annotated[ContextReader, Depends(_reader)]
HubDep = Annotated[ChangeHub, Depends(_hub)]
EngineDep = Annotated[Engine, Depends(_engine)]
PublisherDep = Annotated[EventPublisher, Depends(_publisher)]
CurrentViewer = Annotated[Viewer, Depends(_viewer)]
