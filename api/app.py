"""The FastAPI application factory and its lifespan."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
import structlog
from fastapi import FastAPI, Response
from fastapi.exceptions import WebSocketRequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deprecation import DeprecationHeadersMiddleware
from api.desk import desk_files
from api.head import HeadAsGetMiddleware
from api.lifecycle import Lifecycle
from api.metrics import RequestMetricsMiddleware
from api.presence import PresenceKeeper
from api.problems import document_problems, install_problem_handlers
from api.publisher import EventPublisher
from api.routes import admin, audit, citizens, enquiries, events, health, rights, tickets
from api.security import gate
from api.security.audit import Auditor
from api.security.authentication import SecurityServices
from api.security.hygiene import install_hygiene
from api.security.openapi import document_security
from api.security.rate_limit import RateLimiter
from api.security.settings import SecuritySettings
from api.security.stream_access import StreamAccessChecks
from api.security.tokens import TokenVerifier
from api.settings import ApiSettings
from api.state import AppState
from api.stream_session import StreamServices
from api.streaming import ChangeHub
from context.batching import CommandBatcher
from context.settings import (
    IdentitySettings,
    RedisSettings,
    SummarySettings,
    TimelineSettings,
    redis_client_options,
)
from context.store import CitizenEraser, ContextReader, PresenceStore, RateLimitStore, TicketStore
from events.settings import KafkaSettings
from events.signing import ErasureSigner, SigningSettings
from models.database import DatabaseSettings, create_db_engine

# Redis runs commands one at a time: more connections than this add no throughput, only sockets.
REDIS_CONNECTIONS = 64
# How long a command waits for a free connection before it fails as "Redis unavailable": long enough
# for a burst of thousands of streams opening at once (each waits its turn), short of a client's timeout.
REDIS_CONNECTION_WAIT_S = 20.0


# How often kept context documents past their maximum age are removed (context/document_cache.py).
DOCUMENT_SWEEP_S = 60.0

log = structlog.get_logger("api")

SHUTDOWN_STEP_S = 5.0


async def _finish(what: str, task: "asyncio.Task[Any]") -> None:
    """Wait for a shutdown step, at most SHUTDOWN_STEP_S; say so when it had to be left behind."""
    done, _pending = await asyncio.wait({task}, timeout=SHUTDOWN_STEP_S)
    if not done:
        log.warning("shutdown step did not finish", step=what, waited_s=SHUTDOWN_STEP_S)
    elif not task.cancelled() and task.exception() is not None:
        log.warning("shutdown step failed", step=what, error=type(task.exception()).__name__)


async def _drop_old_documents(reader: ContextReader) -> None:
    """Every minute, remove the context documents kept past their maximum age, read again or not."""
    while True:
        await asyncio.sleep(DOCUMENT_SWEEP_S)
        reader.drop_old_documents()


def create_app(
    *,
    api: ApiSettings | None = None,
    redis_settings: RedisSettings | None = None,
    timeline: TimelineSettings | None = None,
    database: DatabaseSettings | None = None,
    kafka: KafkaSettings | None = None,
    security: SecuritySettings | None = None,
    identity: IdentitySettings | None = None,
    signing: SigningSettings | None = None,
) -> FastAPI:
    """Build the app; clients are created in the lifespan, never at import time."""
    api = api or ApiSettings()
    redis_settings = redis_settings or RedisSettings()
    timeline = timeline or TimelineSettings()
    database = database or DatabaseSettings()
    kafka = kafka or KafkaSettings()
    security = security or SecuritySettings()
    identity = identity or IdentitySettings()
    erasures = ErasureSigner.from_settings(signing or SigningSettings())

    lifecycle = Lifecycle()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[AppState]:
        # A blocking pool: when every connection is busy (thousands of streams opening or beating at once),
        # a command waits its turn instead of failing. redis-py's default pool raises MaxConnectionsError
        # past 100 connections in flight, which `citizen-context bench` hit with 500 streams.
        client = aioredis.Redis.from_pool(
            aioredis.BlockingConnectionPool.from_url(
                str(redis_settings.url),
                max_connections=REDIS_CONNECTIONS,
                timeout=REDIS_CONNECTION_WAIT_S,
                # Without a reply timeout, a connection a firewall dropped silently held every command
                # sent on it for ever: the command batcher's kept connection, so every snapshot and stream
                # of the process.
                **redis_client_options(
                    asyncio=True, retry_timeouts=False, reply_timeout_s=redis_settings.reply_timeout_s
                ),
            )
        )
        engine = create_db_engine(database)
        # The audit trail's writer has an engine of its own, in autocommit: each of its batches is one
        # statement (api/security/audit.py).
        audit_engine = create_db_engine(database, autocommit=True)
        # One batcher for the hot path's commands (rate limits, snapshots): those issued together go as one
        # pipeline (see context/batching.py).
        batcher = CommandBatcher(client)
        reader = ContextReader(
            client,
            prefix=redis_settings.key_prefix,
            timeline=timeline,
            summary=SummarySettings(),
            batcher=batcher,
        )
        # Its own client, which never retries silently: a lost subscription must surface so streams re-sync.
        hub_client = aioredis.Redis.from_url(
            str(redis_settings.url), **redis_client_options(asyncio=True, retries=0)
        )
        hub = ChangeHub(
            hub_client,
            channel=reader.channel,
            queue_size=api.stream_queue_size,
            probe_s=api.stream_heartbeat_s,
            on_resync_all=reader.forget_epoch,
            forget_citizen=reader.forget_citizen,
        )
        hub_task = asyncio.create_task(hub.run(), name="change-hub")
        # Should the hub ever end, readiness and heartbeats must say so rather than stay "live".
        hub_task.add_done_callback(lambda _task: hub.connected.clear())
        lifecycle.hub = hub
        publisher = EventPublisher(kafka, default_region=identity.default_region)
        verifier = TokenVerifier(security)
        services = SecurityServices(
            settings=security,
            verifier=verifier,
            engine=engine,
            tickets=TicketStore(client, prefix=redis_settings.key_prefix),
            limiter=RateLimiter(
                RateLimitStore(client, prefix=redis_settings.key_prefix, batcher=batcher),
                agent_rate=security.agent_rate,
                key_rate=security.key_rate,
            ),
            auditor=Auditor(audit_engine, pseudonym_key=security.pseudonym_key.get_secret_value()),
            erasures=erasures,
        )
        presence = PresenceStore(client, prefix=redis_settings.key_prefix)
        # Periodic work of open streams is done once per process, not once per stream (see each module).
        presence_keeper = PresenceKeeper(presence, hub, interval_s=api.stream_heartbeat_s)
        access_checks = StreamAccessChecks(services)
        stream_tasks = [
            asyncio.create_task(presence_keeper.run(), name="presence-keeper"),
            asyncio.create_task(access_checks.run(), name="stream-access-checks"),
            asyncio.create_task(hub.run_heartbeats(api.stream_heartbeat_s), name="stream-heartbeats"),
            asyncio.create_task(_drop_old_documents(reader), name="old-documents"),
            # The identity provider's keys, fetched at once: every desk reconnects after a restart, and
            # their tokens should find the keys held rather than all wait for the first fetch.
            asyncio.create_task(asyncio.to_thread(verifier.fetch_keys), name="identity-provider-keys"),
        ]
        streams = StreamServices(
            reader=reader,
            hub=hub,
            presence=presence,
            presence_keeper=presence_keeper,
            access_checks=access_checks,
            lifecycle=lifecycle,
            settings=api,
        )
        try:
            yield AppState(
                redis=client,
                reader=reader,
                hub=hub,
                engine=engine,
                publisher=publisher,
                streams=streams,
                security=services,
                eraser=CitizenEraser(client, prefix=redis_settings.key_prefix, timeline=timeline),
                identity=identity,
            )
        finally:
            # Streams still open (no drain before, e.g. in tests) are told to reconnect elsewhere.
            await lifecycle.drain(timeout_s=api.shutdown_drain_s)
            await asyncio.to_thread(publisher.close)
            hub_task.cancel()
            for task in stream_tasks:
                task.cancel()
            # Each step is bounded: a connection that never answers must not keep the process from ending.
            await _finish("change hub", hub_task)
            for task in stream_tasks:
                await _finish(task.get_name(), task)
            await _finish("redis client", asyncio.create_task(client.aclose()))
            await _finish("changes client", asyncio.create_task(hub_client.aclose()))
            # The audit's writer commits what still waits, then ends (bounded, as every step here).
            await asyncio.to_thread(services.auditor.close, wait_s=SHUTDOWN_STEP_S)
            audit_engine.dispose()
            engine.dispose()

    app = FastAPI(
        title="Citizen Context",
        summary="Each citizen's recent interactions, live, for the agent handling their enquiry.",
        version="1",
        lifespan=lifespan,
    )
    app.state.lifecycle = lifecycle
    app.add_middleware(RequestMetricsMiddleware)
    install_problem_handlers(app)
    # A stream's invalid query (`?version=abc`) closes with the documented code, as its other refusals do.
    app.add_exception_handler(WebSocketRequestValidationError, gate.refuse_invalid_request)  # type: ignore[arg-type]
    install_hygiene(app, security)
    # Outermost: every answer of a deprecated route says so, a refusal by any layer within included.
    app.add_middleware(DeprecationHeadersMiddleware)
    # Outside even that: a HEAD is a GET to every layer within.
    app.add_middleware(HeadAsGetMiddleware)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_security(document_problems(FastAPI.openapi(app)))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(health.router)
    app.include_router(citizens.router)
    app.include_router(events.router)
    app.include_router(enquiries.router)
    app.include_router(tickets.router)
    app.include_router(rights.router)
    app.include_router(audit.router)
    app.include_router(admin.router)
    # The agent desk: static files only; it calls the same /v1 API as any other client.
    app.mount("/desk", desk_files(), name="desk")
    # Last, so that it takes only what no route above did: a WebSocket to any other path is accepted, then
    # closed as unknown. Refused before accepting, clients saw a bare HTTP 403.
    app.add_api_websocket_route("/{path:path}", gate.refuse_unknown_stream)
    return app
