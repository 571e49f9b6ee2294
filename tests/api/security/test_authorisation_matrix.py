"""Every endpoint and both streams, against every kind of caller: exactly the documented answer.

One table: for each (endpoint, caller) the expected HTTP status or WebSocket close code. Each case runs on
a citizen of its own, whose timeline holds a marker; a refused call must not carry the marker (no data),
and every audited action must leave exactly one audit record (none for a caller who proved nothing).
"""

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import Session, col, func, select
from starlette.websockets import WebSocketDisconnect

from api.app import create_app
from api.security import api_keys
from api.security.settings import SecuritySettings
from context.settings import RedisSettings, TimelineSettings
from context.store import ProjectionWriter
from events.settings import KafkaSettings
from models.database import DatabaseSettings, create_db_engine
from models.security import Scope
from models.tables import AuditAction, AuditRecord
from tests.access import OPERATOR
from tests.factories import example_data, make_event, writes_for

ISSUER, AUDIENCE = "https://idp.test/realms/contact-centre", "citizen-context"
CURRENT_SECRET, RETIRED_SECRET = "current-signing-secret-for-tests-only", "retired-signing-secret-for-tests"
AGENT_A, AGENT_B, SUPERVISOR, ADMIN = "agent-a", "agent-b", "supervisor-s", "admin-x"

# The callers. "scoped" and "wrong-scope" keys are chosen per endpoint (the scope it needs, or all others).
UNAUTHENTICATED = ("none", "expired", "wrong-audience", "rotated-out", "revoked-key")
CALLERS = (
    *UNAUTHENTICATED,
    "wrong-scope",
    "scoped-key",
    "agent-without-enquiry",
    "agent-with-anothers-enquiry",
    "agent-with-enquiry",
    "supervisor-with-reason",
    "supervisor-without-reason",
    "admin",
)


def sign(subject: str, roles: list[str], *, kid: str = "current", **overrides: Any) -> str:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "roles": roles,
        "iat": now,
        "exp": now + timedelta(minutes=10),
        **overrides,
    }
    secret = CURRENT_SECRET if kid == "current" else RETIRED_SECRET
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid})


@dataclass
class Case:
    """One citizen with a marked event and agent A's active enquiry, plus a key to administer."""

    citizen: str
    phone: str
    marker: str
    enquiry_id: str
    spare_key_id: str


@dataclass(frozen=True)
class Endpoint:
    """A call, the scope an integrator needs for it (None: no key may), and what it audits."""

    name: str
    method: str  # GET, POST, DELETE, or WS
    path: str  # formatted with the case's fields
    scope: Scope | None
    audited: AuditAction | None
    allowed: frozenset[str]  # callers (besides "scoped-key" when scope is set) that succeed
    success: int  # status when allowed (WS: 0 = a snapshot arrives)
    body: Callable[[Case], Any] | None = None
    query: Callable[[Case], dict[str, str]] | None = None


READERS = frozenset({"agent-with-enquiry", "supervisor-with-reason"})
AGENTS = frozenset(
    {
        "agent-without-enquiry",
        "agent-with-anothers-enquiry",
        "agent-with-enquiry",
        "supervisor-with-reason",
        "supervisor-without-reason",
    }
)
EVERYONE = frozenset(CALLERS) - frozenset(UNAUTHENTICATED) - {"wrong-scope"}
ENDPOINTS = [
    Endpoint(
        "lookup",
        "GET",
        "/v1/citizens/lookup",
        Scope.context_read,
        AuditAction.lookup,
        AGENTS,
        200,
        query=lambda case: {"phone": case.phone},
    ),
    Endpoint(
        "context",
        "GET",
        "/v1/citizens/{citizen}/context",
        Scope.context_read,
        AuditAction.context_read,
        READERS,
        200,
    ),
    Endpoint(
        "timeline",
        "GET",
        "/v1/citizens/{citizen}/timeline",
        Scope.context_read,
        AuditAction.timeline_read,
        READERS,
        200,
    ),
    Endpoint(
        "citizen stream",
        "WS",
        "/v1/citizens/{citizen}/stream",
        Scope.context_read,
        AuditAction.stream_opened,
        READERS,
        0,
    ),
    Endpoint(
        "start enquiry",
        "POST",
        "/v1/enquiries",
        None,
        None,
        AGENTS,
        201,
        body=lambda case: {"citizen_id": case.citizen, "channel": "phone"},
    ),
    Endpoint("my enquiries", "GET", "/v1/enquiries", None, None, AGENTS, 200),
    Endpoint(
        "one enquiry",
        "GET",
        "/v1/enquiries/{enquiry_id}",
        None,
        None,
        frozenset({"agent-with-enquiry"}),
        200,
    ),
    Endpoint(
        "complete enquiry",
        "POST",
        "/v1/enquiries/{enquiry_id}/complete",
        None,
        None,
        frozenset({"agent-with-enquiry"}),
        200,
        body=lambda case: {"outcome": "resolved"},
    ),
    Endpoint(
        "enquiry stream",
        "WS",
        "/v1/enquiries/{enquiry_id}/stream",
        None,
        AuditAction.stream_opened,
        READERS,
        0,
    ),
    Endpoint("stream ticket", "POST", "/v1/stream-tickets", None, None, EVERYONE | {"wrong-scope"}, 201),
    Endpoint(
        "publish events",
        "POST",
        "/v1/events",
        Scope.events_write,
        None,
        frozenset(),
        202,
        body=lambda case: make_event(case.citizen).model_dump(mode="json", exclude_none=True),
    ),
    Endpoint(
        "export",
        "GET",
        "/v1/citizens/{citizen}/export",
        Scope.citizens_export,
        AuditAction.export,
        frozenset({"admin"}),
        200,
    ),
    Endpoint(
        "erase",
        "DELETE",
        "/v1/citizens/{citizen}",
        Scope.citizens_erase,
        AuditAction.erasure,
        frozenset({"admin"}),
        200,
    ),
    Endpoint("audit", "GET", "/v1/audit", Scope.audit_read, None, frozenset({"admin"}), 200),
    Endpoint(
        "create key",
        "POST",
        "/v1/admin/api-keys",
        None,
        None,
        frozenset({"admin"}),
        201,
        body=lambda case: {"client": f"client-{case.citizen}", "scopes": ["context:read"]},
    ),
    Endpoint("list keys", "GET", "/v1/admin/api-keys", None, None, frozenset({"admin"}), 200),
    Endpoint(
        "rotate key",
        "POST",
        "/v1/admin/api-keys/{spare_key_id}/rotate",
        None,
        None,
        frozenset({"admin"}),
        201,
    ),
    Endpoint(
        "revoke key", "DELETE", "/v1/admin/api-keys/{spare_key_id}", None, None, frozenset({"admin"}), 204
    ),
]


def expected(endpoint: Endpoint, caller: str) -> int:
    """The documented answer: an HTTP status, or for a stream a close code (0: it opens)."""
    stream = endpoint.method == "WS"
    if caller in UNAUTHENTICATED:
        return 4401 if stream else 401
    allowed = caller in endpoint.allowed or (caller == "scoped-key" and endpoint.scope is not None)
    if allowed:
        return endpoint.success
    return 4403 if stream else 403


@pytest.fixture
def database(database_settings: DatabaseSettings) -> DatabaseSettings:
    return database_settings


@pytest.fixture
def client(
    redis_settings: RedisSettings, database: DatabaseSettings, kafka_topic: str
) -> Iterator[TestClient]:
    security = SecuritySettings(
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwt_secrets={"current": SecretStr(CURRENT_SECRET)},
    )
    app = create_app(
        redis_settings=redis_settings,
        database=database,
        kafka=KafkaSettings(topic=kafka_topic),
        security=security,
    )
    with TestClient(app) as test_client:
        yield test_client


class Credentials:
    """Headers for each kind of caller; keys are made in the test's database as needed."""

    def __init__(self, database: DatabaseSettings) -> None:
        self._engine = create_db_engine(database)
        self._keys: dict[frozenset[Scope], str] = {}
        revoked = self._key(frozenset(Scope), client="revoked")
        api_keys.revoke_key(self._engine, by=OPERATOR, key_id=revoked.split("_")[1])
        self._revoked = revoked

    def _key(self, scopes: frozenset[Scope], *, client: str | None = None) -> str:
        if client is None and scopes in self._keys:
            return self._keys[scopes]
        name = client or f"integrator-{len(self._keys)}"
        issued = api_keys.create_key(
            self._engine, by=OPERATOR, client=name, scopes=sorted(scopes), ttl=timedelta(hours=1)
        )
        if client is None:
            self._keys[scopes] = issued.key
        return issued.key

    def spare_key(self) -> str:
        return api_keys.create_key(
            self._engine,
            by=OPERATOR,
            client=f"spare-{uuid.uuid4().hex[:8]}",
            scopes=[Scope.context_read],
            ttl=timedelta(hours=1),
        ).record.id

    def headers(self, caller: str, endpoint: Endpoint) -> dict[str, str]:
        past = datetime.now(UTC) - timedelta(minutes=5)
        tokens = {
            "expired": lambda: sign(AGENT_A, ["agent"], exp=past),
            "wrong-audience": lambda: sign(AGENT_A, ["agent"], aud="another-service"),
            "rotated-out": lambda: sign(AGENT_A, ["agent"], kid="retired"),
            "agent-without-enquiry": lambda: sign("agent-c", ["agent"]),
            "agent-with-anothers-enquiry": lambda: sign(AGENT_B, ["agent"]),
            "agent-with-enquiry": lambda: sign(AGENT_A, ["agent"]),
            "supervisor-with-reason": lambda: sign(SUPERVISOR, ["supervisor"]),
            "supervisor-without-reason": lambda: sign(SUPERVISOR, ["supervisor"]),
            "admin": lambda: sign(ADMIN, ["admin"]),
        }
        if caller == "none":
            return {}
        if caller == "revoked-key":
            return {"X-API-Key": self._revoked}
        if caller == "scoped-key":
            return {"X-API-Key": self._key(frozenset({endpoint.scope} if endpoint.scope else set(Scope)))}
        if caller == "wrong-scope":
            return {
                "X-API-Key": self._key(
                    frozenset(Scope) - {endpoint.scope} if endpoint.scope else frozenset(Scope)
                )
            }
        headers = {"Authorization": f"Bearer {tokens[caller]()}"}
        if caller == "supervisor-with-reason":
            headers["X-Access-Reason"] = "complaint review CR-1"
        return headers

    def dispose(self) -> None:
        self._engine.dispose()


def audit_count(database: DatabaseSettings, action: AuditAction) -> int:
    engine = create_db_engine(database)
    try:
        with Session(engine) as session:
            return session.exec(
                select(func.count()).select_from(AuditRecord).where(col(AuditRecord.action) == action)
            ).one()
    finally:
        engine.dispose()


def call(client: TestClient, endpoint: Endpoint, case: Case, headers: dict[str, str]) -> tuple[int, str]:
    """Make the call; (status or close code, everything the caller received)."""
    path = endpoint.path.format(**vars(case))
    if endpoint.method == "WS":
        try:
            with client.websocket_connect(path, headers=headers) as websocket:
                message = websocket.receive_text()
                return 0, message
        except WebSocketDisconnect as closed:
            return closed.code, closed.reason or ""
    response = client.request(
        endpoint.method,
        path,
        headers=headers,
        params=endpoint.query(case) if endpoint.query else None,
        json=endpoint.body(case) if endpoint.body else None,
    )
    return response.status_code, response.text


def test_every_endpoint_answers_every_caller_as_documented(
    client: TestClient,
    database: DatabaseSettings,
    redis_client: "redis.Redis",
    key_prefix: str,
) -> None:
    writer = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())
    credentials = Credentials(database)
    # Agent B holds an enquiry too, for someone else: an agent with an enquiry, just not this one.
    other = client.post(
        "/v1/enquiries",
        json={"citizen_id": "C-SOMEONE-ELSE", "channel": "chat"},
        headers={"Authorization": f"Bearer {sign(AGENT_B, ['agent'])}"},
    )
    assert other.status_code == 201
    mismatches: list[str] = []
    try:
        for number, (endpoint, caller) in enumerate(
            (endpoint, caller) for endpoint in ENDPOINTS for caller in CALLERS
        ):
            case = new_case(client, writer, credentials, number)
            headers = credentials.headers(caller, endpoint)
            before = audit_count(database, endpoint.audited) if endpoint.audited else 0
            got, received = call(client, endpoint, case, headers)
            want = expected(endpoint, caller)
            if got != want:
                mismatches.append(f"{endpoint.name} as {caller}: {got}, documented {want}: {received[:200]}")
            refused = want not in {0, 200, 201, 202, 204}
            if refused and case.marker in received:
                mismatches.append(f"{endpoint.name} as {caller}: refused, yet the citizen's data was sent")
            if endpoint.audited:
                records = audit_count(database, endpoint.audited) - before
                wanted = 0 if caller in UNAUTHENTICATED else 1
                if records != wanted:
                    mismatches.append(f"{endpoint.name} as {caller}: {records} audit records, not {wanted}")
    finally:
        credentials.dispose()
    assert not mismatches, "\n".join(mismatches)


def new_case(client: TestClient, writer: ProjectionWriter, credentials: Credentials, number: int) -> Case:
    citizen, phone = f"C-AUTHZ-{number}-{uuid.uuid4().hex[:6]}", f"+4477009{number:05d}"
    marker = f"MARKER-{uuid.uuid4().hex}"
    profile = make_event(citizen, type_="profile.updated", data=example_data("profile.updated", phone=phone))
    writer.apply_batch(
        writes_for(profile, make_event(citizen, data=example_data("call.ended", summary=marker)))
    )
    started = client.post(
        "/v1/enquiries",
        json={"citizen_id": citizen, "channel": "phone"},
        headers={"Authorization": f"Bearer {sign(AGENT_A, ['agent'])}"},
    )
    assert started.status_code == 201, started.text
    return Case(citizen, phone, marker, started.json()["id"], credentials.spare_key())
