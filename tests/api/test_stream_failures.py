"""A stream that fails after it was accepted closes with a documented code, never by a dropped connection.

Redis or the database unavailable is 1013 (try again later); anything else is 1011. Neither the close
reason nor the log quotes the error's text, which can quote data.
"""

import secrets
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import redis.asyncio as aioredis
import redis.exceptions
import sqlalchemy.exc
from fastapi import FastAPI, HTTPException, WebSocket
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from api.app import create_app
from api.problems import install_problem_handlers
from api.stream_session import failure_close
from context.batching import CommandBatcher
from context.settings import RedisSettings, TimelineSettings, redis_client_options
from context.store import ContextReader
from models.database import DatabaseSettings
from tests import access
from tests.conftest import free_port
from tests.tcp_proxy import SilenceableProxy

CITIZEN_STREAM = "/v1/citizens/C-F1/stream"
# Each stream's address, and the route template its log lines name (never the address: ids are data).
STREAMS = pytest.mark.parametrize(
    ("path", "route"),
    [
        (CITIZEN_STREAM, "/v1/citizens/{citizen_id}/stream"),
        (f"/v1/enquiries/{uuid.uuid4()}/stream", "/v1/enquiries/{enquiry_id}/stream"),
    ],
    ids=["citizen", "enquiry"],
)
TRY_AGAIN = (1013, "try again later")
UNEXPECTED = (1011, "unexpected error")


def closed_with(client: TestClient, path: str) -> tuple[int, str]:
    """Open a stream and read until the server closes it; the close code and reason."""
    with client.websocket_connect(path) as websocket:
        try:
            while True:
                message = websocket.receive_json()
                assert message["type"] in {"presence", "snapshot"}, message
        except WebSocketDisconnect as closed:
            return closed.code, closed.reason


def nothing_quoted(logged: pytest.CaptureFixture[str], *texts: str) -> str:
    """What was logged, once it is checked to hold no traceback and none of `texts`."""
    captured = logged.readouterr()
    output = captured.out + captured.err
    assert "Traceback" not in output
    for text in texts:
        assert text not in output
    return output


@STREAMS
def test_a_stream_whose_ticket_cannot_be_taken_for_want_of_redis_closes_with_1013(
    database_settings: DatabaseSettings, path: str, route: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Redis refusing connections, as a stream's ticket is taken: the step before anything else.
    unreachable = RedisSettings(url=f"redis://127.0.0.1:{free_port()}/0")
    ticket = secrets.token_urlsafe(32)
    with TestClient(create_app(redis_settings=unreachable, database=database_settings)) as client:
        capsys.readouterr()
        assert closed_with(client, f"{path}?ticket={ticket}") == TRY_AGAIN
    output = nothing_quoted(capsys, ticket, "Connection refused")
    assert "stream store unavailable" in output
    assert "error=ConnectionError" in output
    assert f"route={route}" in output


@STREAMS
def test_a_stream_that_cannot_reach_the_database_closes_with_1013(
    redis_settings: RedisSettings, path: str, route: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The audit record of a citizen's stream, or the look-up of an enquiry's, finds nobody listening.
    unreachable = DatabaseSettings(url=f"postgresql+psycopg://citizen:context@127.0.0.1:{free_port()}/none")
    app = create_app(redis_settings=redis_settings, database=unreachable)
    with TestClient(app, headers=access.supervisor()) as client:
        capsys.readouterr()
        assert closed_with(client, path) == TRY_AGAIN
    output = nothing_quoted(capsys, "Connection refused", "connection failed", "C-F1")
    assert "error=OperationalError" in output
    assert "driver_code=" not in output  # a connection refused has no SQLSTATE: nothing to name
    assert f"route={route}" in output


def test_a_stream_whose_snapshot_cannot_be_read_for_want_of_redis_closes_with_1013(
    redis_settings: RedisSettings, database_settings: DatabaseSettings
) -> None:
    app = create_app(redis_settings=redis_settings, database=database_settings)
    with TestClient(app, headers=access.supervisor()) as client:
        # The stream joins the citizen's viewers, then its snapshot finds Redis gone (as when every pooled
        # connection stays busy past the pool's wait, in a burst of streams opening).
        gone = aioredis.Redis.from_url(
            f"redis://127.0.0.1:{free_port()}/0", **redis_client_options(asyncio=True)
        )
        streams = client.app_state["streams"]
        streams.reader = ContextReader(
            gone, prefix=redis_settings.key_prefix, timeline=TimelineSettings(), batcher=CommandBatcher(gone)
        )
        try:
            assert closed_with(client, CITIZEN_STREAM) == TRY_AGAIN
        finally:
            assert client.portal is not None
            client.portal.call(gone.aclose)


@pytest.fixture
def redis_user_without_getdel(redis_client: "redis.Redis") -> Iterator[tuple[str, str]]:
    """A Redis user of this test's own who may do anything but GETDEL (with which tickets are taken)."""
    name, password = f"t{uuid.uuid4().hex[:10]}", secrets.token_hex(16)
    redis_client.acl_setuser(
        name,
        enabled=True,
        passwords=[f"+{password}"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-getdel"],
    )
    yield name, password
    redis_client.acl_deluser(name)


def test_an_unexpected_error_opening_a_stream_closes_it_with_1011(
    redis_settings: RedisSettings,
    database_settings: DatabaseSettings,
    redis_user_without_getdel: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Redis refuses the command outright: a fault of the deployment, which no retry mends.
    name, password = redis_user_without_getdel
    refusing = RedisSettings(
        url=f"redis://{name}:{password}@{redis_settings.url.host}:{redis_settings.url.port}/0",
        key_prefix=redis_settings.key_prefix,
    )
    ticket = secrets.token_urlsafe(32)
    with TestClient(create_app(redis_settings=refusing, database=database_settings)) as client:
        capsys.readouterr()
        assert closed_with(client, f"{CITIZEN_STREAM}?ticket={ticket}") == UNEXPECTED
    output = nothing_quoted(capsys, ticket, password, "GETDEL", "getdel")
    assert "stream failed" in output
    assert "error=NoPermissionError" in output


@pytest.mark.parametrize("accepted", [True, False], ids=["after-accepting", "before-accepting"])
def test_the_problem_handlers_close_a_stream_instead_of_answering_it_over_http(accepted: bool) -> None:
    # Errors no stream handler caught reach the app's problem handlers, which once answered with HTTP:
    # on an accepted socket that crashed the connection.
    app = FastAPI()
    install_problem_handlers(app)
    nobody = aioredis.Redis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", **redis_client_options(asyncio=True)
    )

    @app.websocket("/needs-redis")
    async def needs_redis(websocket: WebSocket) -> None:
        if accepted:
            await websocket.accept()
        await nobody.get("anything")

    @app.websocket("/refused")
    async def refused(websocket: WebSocket) -> None:
        if accepted:
            await websocket.accept()
        raise HTTPException(403, "refused")

    with TestClient(app) as client:
        assert closed_with(client, "/needs-redis") == TRY_AGAIN
        assert closed_with(client, "/refused") == UNEXPECTED
        assert client.portal is not None
        client.portal.call(nobody.aclose)


# What escapes a stream's steps, as each store or fault raises it; the texts quote data, as real ones can.
FAILURES = [
    (redis.exceptions.ConnectionError("No connection available."), TRY_AGAIN),
    (redis.exceptions.TimeoutError("Timeout reading from socket"), TRY_AGAIN),
    (redis.exceptions.ReadOnlyError("You can't write against a read only replica."), TRY_AGAIN),
    (redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), TRY_AGAIN),
    (
        sqlalchemy.exc.OperationalError("SELECT 'C-F1'", {}, Exception("server closed the connection")),
        TRY_AGAIN,
    ),
    (sqlalchemy.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"), TRY_AGAIN),
    (redis.exceptions.NoPermissionError("no permissions to run the 'getdel' command"), UNEXPECTED),
    (sqlalchemy.exc.IntegrityError("INSERT 'C-F1'", {}, Exception("duplicate key")), UNEXPECTED),
    (RuntimeError("the audit writer stopped unexpectedly"), UNEXPECTED),
    (KeyError("C-F1"), UNEXPECTED),
]


@pytest.mark.parametrize(("error", "expected"), FAILURES, ids=[type(error).__name__ for error, _ in FAILURES])
def test_an_unhandled_error_is_try_again_only_when_a_store_is_unavailable(
    error: Exception, expected: tuple[int, str]
) -> None:
    assert failure_close(error) == expected


def test_a_redis_connection_dropped_silently_fails_reads_rather_than_holding_them(
    redis_settings: RedisSettings, database_settings: DatabaseSettings
) -> None:
    # The command batcher keeps one connection for every snapshot and read of the process: dropped by a
    # firewall without a word, it held them all for ever, streams and reads alike.
    proxy = SilenceableProxy(f"{redis_settings.url.host}:{redis_settings.url.port}")
    through = RedisSettings(
        url=f"redis://{proxy.address}/0", key_prefix=redis_settings.key_prefix, reply_timeout_s=0.5
    )
    try:
        with TestClient(create_app(redis_settings=through, database=database_settings)) as client:
            headers = access.supervisor()
            assert client.get("/v1/citizens/C-F9/context", headers=headers).status_code == 200
            proxy.silence()
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=1) as pool:
                read = pool.submit(client.get, "/v1/citizens/C-F9/context", headers=headers)
                response = read.result(timeout=30)  # held for ever, it fails the test here
            elapsed = time.monotonic() - started
    finally:
        proxy.close()
    assert response.status_code == 503
    # Within the setting's timeout a step (the rate limit's, the read's), not redis-py's own default (5 s
    # a step in redis-py 8; none at all before).
    assert elapsed < 4
    assert response.headers["content-type"] == "application/problem+json"
