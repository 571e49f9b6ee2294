"""Dependencies: one-liners reading what the lifespan put in the connection's state.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in a worker thread, and three
thread hops per request cost the context read more than its Redis round trips (see README, Benchmarks).
"""

from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, HTTPException, Request
from sqlalchemy import Engine
from starlette.requests import HTTPConnection

from api.publisher import EventPublisher
from api.security.access import Decision
from api.security.authentication import RateLimited, SecurityServices, Unauthenticated
from api.security.principal import Caller
from api.stream_session import StreamServices
from api.streaming import ChangeHub
from context.settings import IdentitySettings
from context.store import CitizenEraser, ContextReader


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


async def _eraser(connection: HTTPConnection) -> CitizenEraser:
    return connection.state.eraser  # type: ignore[no-any-return]


async def _security(connection: HTTPConnection) -> SecurityServices:
    return connection.state.security  # type: ignore[no-any-return]


async def authenticated_caller(request: Request) -> Caller:
    """The authenticated caller, counted against their rate limit; 401 or 429 otherwise."""
    security: SecurityServices = request.state.security
    try:
        caller = await security.authenticate(request.headers)
        await security.limit(caller)
    except Unauthenticated as error:
        raise HTTPException(401, str(error), headers={"WWW-Authenticate": "Bearer"}) from error
    except RateLimited as error:
        raise HTTPException(
            429, "Too many requests; slow down.", headers={"Retry-After": str(error.retry_after_s)}
        ) from error
    return caller


def require(decision: Decision) -> None:
    """Stop the request with a 403 problem unless the decision allows it."""
    if not decision.allowed:
        raise HTTPException(403, decision.detail)


RedisDep = Annotated["aioredis.Redis", Depends(_redis)]
ReaderDep = Annotated[ContextReader, Depends(_reader)]
HubDep = Annotated[ChangeHub, Depends(_hub)]
EngineDep = Annotated[Engine, Depends(_engine)]
PublisherDep = Annotated[EventPublisher, Depends(_publisher)]
StreamServicesDep = Annotated[StreamServices, Depends(_stream_services)]
EraserDep = Annotated[CitizenEraser, Depends(_eraser)]
SecurityDep = Annotated[SecurityServices, Depends(_security)]
CurrentCaller = Annotated[Caller, Depends(authenticated_caller)]
IdentityDep = Annotated[IdentitySettings, Depends(_identity)]
