"""The typed state the lifespan builds and every request reads."""

from typing import TypedDict

import redis.asyncio as aioredis
from sqlalchemy import Engine

from api.publisher import EventPublisher
from api.security.authentication import SecurityServices
from api.stream_session import StreamServices
from api.streaming import ChangeHub
from context.settings import IdentitySettings
from context.store import CitizenEraser, ContextReader


class AppState(TypedDict):
    """Clients and services shared by every request of one API process."""

    redis: "aioredis.Redis"
    reader: ContextReader
    hub: ChangeHub
    engine: Engine
    publisher: EventPublisher
    streams: StreamServices
    security: SecurityServices
    eraser: CitizenEraser
    # Read once per process: building settings reads the environment and .env (a third of a request).
    identity: IdentitySettings
