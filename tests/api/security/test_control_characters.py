"""Control characters (and lone surrogates) in what a caller states or filters by: refused at the door,
never left to SQL.

PostgreSQL refuses a NUL in text, and the audit trail writes the records of many callers in one
statement: a NUL that reached it failed every read in the batch. The API's tests run on SQLite and
PostgreSQL; the audit writer's, on PostgreSQL.
"""

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.exc import DataError
from sqlmodel import Session, col, select
from starlette.websockets import WebSocketDisconnect

from api.app import create_app
from api.security import access
from api.security.audit import Auditor
from api.security.principal import Caller
from context.settings import RedisSettings, TimelineSettings
from context.store import ProjectionWriter
from models.database import DatabaseSettings, create_db_engine
from models.tables import AgentRole, AuditAction, AuditRecord
from tests import access as credentials
from tests.factories import make_event, writes_for

PROBLEM = "application/problem+json"
CITIZEN = "C-CTRL"
# A NUL (which PostgreSQL refuses in text), a tab, an escape, DEL and a C1 control (next line).
CONTROL_CHARACTERS = ["\x00", "\t", "\x1b", "\x7f", "\x85"]
INVALID_REASON = "invalid reason: must not contain control characters"


@pytest.fixture
def client(
    redis_settings: RedisSettings, migrated: DatabaseSettings, redis_client: "redis.Redis"
) -> Iterator[TestClient]:
    writer = ProjectionWriter(redis_client, prefix=redis_settings.key_prefix, timeline=TimelineSettings())
    writer.apply_batch(writes_for(make_event(CITIZEN, minutes_ago=1)))
    app = create_app(redis_settings=redis_settings, database=migrated)
    with TestClient(app) as test_client:
        yield test_client


def supervisor() -> dict[str, str]:
    return credentials.bearer(credentials.token("S-ctrl", AgentRole.supervisor))


def closed(client: TestClient, path: str, headers: dict[str, Any]) -> tuple[int, str]:
    """The close code and reason of a stream that must close before its first message."""
    with (
        client.websocket_connect(path, headers=headers) as websocket,
        pytest.raises(WebSocketDisconnect) as ended,
    ):
        websocket.receive_json()
    return ended.value.code, ended.value.reason


def assert_refused(response: Any, location: str) -> None:
    """A 422 problem naming `location` as the input at fault."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert [error["location"] for error in response.json()["errors"]] == [location]
    assert "control characters" in response.json()["errors"][0]["message"]


def stated(reason: str) -> dict[str, Any]:
    """The X-Access-Reason header, sent as the bytes a header holds (HTTP headers are Latin-1)."""
    return {"X-Access-Reason": reason.encode("latin-1")}


def audited(migrated: DatabaseSettings) -> list[AuditRecord]:
    engine = create_db_engine(migrated)
    try:
        with Session(engine) as session:
            return list(session.exec(select(AuditRecord).order_by(col(AuditRecord.id))).all())
    finally:
        engine.dispose()


@pytest.mark.parametrize("character", CONTROL_CHARACTERS)
def test_a_streams_reason_with_a_control_character_closes_it_as_an_invalid_request(
    client: TestClient, migrated: DatabaseSettings, character: str
) -> None:
    reason = f"complaint{character}review"
    path = f"/v1/citizens/{CITIZEN}/stream"
    assert closed(client, path, {**supervisor(), **stated(reason)}) == (4400, INVALID_REASON)
    assert closed(client, f"{path}?reason={quote(reason)}", supervisor()) == (4400, INVALID_REASON)
    # An enquiry's stream takes its reason the same way.
    started = client.post(
        "/v1/enquiries", json={"citizen_id": CITIZEN, "channel": "chat"}, headers=credentials.agent("A-ctrl")
    )
    assert started.status_code == 201, started.text
    following = f"/v1/enquiries/{started.json()['id']}/stream?reason={quote(reason)}"
    assert closed(client, following, supervisor()) == (4400, INVALID_REASON)
    # Refused as a malformed request, before any decision: nothing to record.
    assert audited(migrated) == []
    with client.websocket_connect(f"{path}?reason=complaint review", headers=supervisor()) as websocket:
        assert websocket.receive_json()["type"] == "snapshot"
    assert [record.reason for record in audited(migrated)] == ["complaint review"]


@pytest.mark.parametrize("character", CONTROL_CHARACTERS)
def test_a_tickets_reason_with_a_control_character_is_refused(client: TestClient, character: str) -> None:
    response = client.post(
        "/v1/stream-tickets", json={"reason": f"complaint{character}review"}, headers=supervisor()
    )
    assert_refused(response, "body.reason")


def test_a_tickets_reason_that_is_not_unicode_text_is_refused(client: TestClient) -> None:
    # JSON's unpaired escape: once issued, the ticket's reason failed the audit batch of every stream
    # opened with it, and of every other caller's read in that batch.
    response = client.post(
        "/v1/stream-tickets",
        content='{"reason": "complaint \\ud800 review"}',
        headers={**supervisor(), "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert [error["location"] for error in response.json()["errors"]] == ["body.reason"]
    assert "Unicode" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize("route", ["context", "timeline"])
@pytest.mark.parametrize("character", CONTROL_CHARACTERS)
def test_a_reads_reason_with_a_control_character_is_refused(
    client: TestClient, migrated: DatabaseSettings, route: str, character: str
) -> None:
    headers = {**supervisor(), **stated(f"complaint{character}review")}
    response = client.get(f"/v1/citizens/{CITIZEN}/{route}", headers=headers)
    assert_refused(response, "header.X-Access-Reason")
    assert audited(migrated) == []


def test_a_reason_typed_in_utf_8_is_taken_as_it_was_typed(
    client: TestClient, migrated: DatabaseSettings
) -> None:
    # Headers reach the app decoded as Latin-1: a dash's UTF-8 bytes (E2 80 93) arrive as "\u00e2", then two
    # C1 characters. Read back as UTF-8, the reason is what the supervisor typed, and recorded so.
    typed = "Cwyn \u2013 cyf 12"  # Welsh, with an en dash
    response = client.get(
        f"/v1/citizens/{CITIZEN}/context",
        headers={**supervisor(), **stated(typed.encode().decode("latin-1"))},
    )
    assert response.status_code == 200, response.text
    # A stream reads the header the same way.
    headers = {**supervisor(), **stated(typed.encode().decode("latin-1"))}
    with client.websocket_connect(f"/v1/citizens/{CITIZEN}/stream", headers=headers) as websocket:
        assert websocket.receive_json()["type"] == "snapshot"
    assert [record.reason for record in audited(migrated)] == [typed, typed]


@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize("character", CONTROL_CHARACTERS)
def test_an_exports_or_erasures_reason_with_a_control_character_is_refused(
    client: TestClient, migrated: DatabaseSettings, method: str, character: str
) -> None:
    # An admin answering a citizen's request states why as well; the reason goes into the audit trail.
    path = f"/v1/citizens/{CITIZEN}" + ("/export" if method == "GET" else "")
    headers = {**credentials.admin(), **stated(f"subject access{character}request")}
    response = client.request(method, path, headers=headers)
    assert_refused(response, "header.X-Access-Reason")
    assert audited(migrated) == []


@pytest.mark.parametrize(("path", "parameter"), [("/v1/admin/api-keys", "client"), ("/v1/audit", "actor")])
@pytest.mark.parametrize("character", CONTROL_CHARACTERS)
def test_a_filter_with_a_control_character_is_refused(
    client: TestClient, path: str, parameter: str, character: str
) -> None:
    response = client.get(path, params={parameter: f"a{character}b"}, headers=credentials.admin())
    assert_refused(response, f"query.{parameter}")
    assert client.get(path, params={parameter: "a b"}, headers=credentials.admin()).status_code == 200


@pytest.mark.parametrize("key_id", ["\x00", "abc\x00def", "0123456789abcdef\n", "x" * 40])
@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_a_key_id_that_no_key_can_have_is_refused_before_the_database(
    client: TestClient, key_id: str, method: str
) -> None:
    path = f"/v1/admin/api-keys/{quote(key_id, safe='')}" + ("/rotate" if method == "POST" else "")
    response = client.request(method, path, headers=credentials.admin())
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert [error["location"] for error in response.json()["errors"]] == ["path.key_id"]


@pytest.fixture(params=[True, False], ids=["autocommit", "transactions"])
def engine(migrated: DatabaseSettings, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """An engine on the test's database: in autocommit, as the app gives the auditor, and with
    transactions."""
    created = create_db_engine(migrated, autocommit=request.param)
    yield created
    created.dispose()


@contextmanager
def audit_trail_locked(engine: Engine) -> Iterator[None]:
    """The audit table locked against writes by another connection, until the block ends."""
    if engine.dialect.name == "postgresql":
        url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(url) as postgres:
            postgres.execute("LOCK TABLE audit_records IN ACCESS EXCLUSIVE MODE")
            yield
        return
    sqlite = sqlite3.connect(str(engine.url.database), isolation_level=None)
    try:
        sqlite.execute("BEGIN IMMEDIATE")  # the database's write lock; readers go on
        yield
        sqlite.execute("ROLLBACK")
    finally:
        sqlite.close()


@pytest.mark.parametrize(
    ("sql_database", "refused_reason", "error"),
    [
        # SQLite stores a NUL in text: PostgreSQL is the database that refuses a record for its data.
        pytest.param("postgresql", "nul\x00", DataError, id="postgresql-nul"),
        # No validated value holds a lone surrogate (models/security.py); neither driver can encode one.
        pytest.param("postgresql", "lone \ud800", UnicodeEncodeError, id="postgresql-surrogate"),
        pytest.param("sqlite", "lone \ud800", UnicodeEncodeError, id="sqlite-surrogate"),
    ],
    indirect=["sql_database"],
)
async def test_a_record_the_database_refuses_fails_only_its_own_caller(
    engine: Engine, refused_reason: str, error: type[Exception]
) -> None:
    # The records that wait while a batch is written go into the next one together: the table is held
    # locked while the first record is written, so that every other record, the refused one among them,
    # shares one batch.
    auditor = Auditor(engine, pseudonym_key="k" * 32)
    caller = Caller(kind="agent", id="S-1", roles=frozenset({AgentRole.supervisor}))

    def read(citizen_id: str, reason: str) -> "asyncio.Future[access.Decision]":
        return asyncio.ensure_future(
            auditor.decide_and_record(
                caller,
                AuditAction.context_read,
                lambda held: access.read_citizen(caller, held_enquiry=held, reason=reason),
                citizen_id=citizen_id,
                client_address=None,
            )
        )

    with audit_trail_locked(engine):
        first = read("C-0", "first")
        await asyncio.sleep(0.2)  # the writer took the first record and waits for the lock
        rest = [
            read(f"C-{number}", refused_reason if number == 3 else f"read {number}") for number in range(1, 6)
        ]
        await asyncio.sleep(0.2)
    results = await asyncio.wait_for(asyncio.gather(first, *rest, return_exceptions=True), timeout=30)
    refused = [number for number, result in enumerate(results) if isinstance(result, Exception)]
    assert refused == [3]
    assert isinstance(results[3], error)
    assert all(isinstance(result, access.Decision) and result.allowed for result in results[:3] + results[4:])
    with Session(engine) as session:
        stored = session.exec(select(AuditRecord.reason).order_by(col(AuditRecord.id))).all()
    assert stored == ["first", "read 1", "read 2", "read 4", "read 5"]
