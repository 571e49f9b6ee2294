"""What protects every request: rate limits, body limits, CORS, security headers, the audit trail's API."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from api.app import create_app
from api.security.settings import SecuritySettings
from context.settings import RedisSettings
from events.settings import KafkaSettings
from models.database import DatabaseSettings, create_db_engine, migrate
from models.security import Scope
from tests import access


def app_client(redis_settings: RedisSettings, database: DatabaseSettings, **security: Any) -> TestClient:
    return TestClient(
        create_app(redis_settings=redis_settings, database=database, security=SecuritySettings(**security))
    )


@pytest.fixture
def client(redis_settings: RedisSettings, database_settings: DatabaseSettings) -> Iterator[TestClient]:
    with app_client(
        redis_settings, database_settings, cors_origins=["https://desk.example.org"]
    ) as test_client:
        yield test_client


def test_an_agent_over_their_rate_gets_429_with_retry_after(
    redis_settings: RedisSettings, database_settings: DatabaseSettings
) -> None:
    with app_client(redis_settings, database_settings, agent_rate="3/minute") as client:
        headers = access.supervisor("busy-supervisor")
        statuses = [client.get("/v1/citizens/C-1/context", headers=headers).status_code for _ in range(4)]
        refused = client.get("/v1/citizens/C-1/context", headers=headers)
        others = client.get("/v1/citizens/C-1/context", headers=access.supervisor("calm-supervisor"))
    assert statuses == [200, 200, 200, 429]
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 20
    assert refused.headers["content-type"] == "application/problem+json"
    assert others.status_code == 200  # limits are per agent


def test_an_integrator_key_has_its_own_rate(
    redis_settings: RedisSettings, database_settings: DatabaseSettings
) -> None:
    with app_client(redis_settings, database_settings, key_rate="2/hour") as client:
        headers = access.integrator(database_settings, Scope.audit_read)
        statuses = [client.get("/v1/audit", headers=headers).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_bodies_over_the_limit_are_refused_before_they_are_read(client: TestClient) -> None:
    headers = access.agent("agent-big")
    declared = client.post(
        "/v1/enquiries", content=b"x" * 70_000, headers={**headers, "content-type": "application/json"}
    )
    assert declared.status_code == 413
    assert declared.headers["content-type"] == "application/problem+json"

    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b" " * 8192

    streamed = client.post(
        "/v1/enquiries", content=chunks(), headers={**headers, "content-type": "application/json"}
    )
    assert streamed.status_code == 413


def test_an_event_batch_over_its_limit_is_a_413_naming_it_and_no_error_in_the_log(
    client: TestClient, database_settings: DatabaseSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    headers = {**access.integrator(database_settings, Scope.events_write), "content-type": "application/json"}
    capsys.readouterr()

    def chunks() -> Iterator[bytes]:
        for _ in range(140):
            yield b" " * 8192  # 1,146,880 bytes in all, sent without a Content-Length

    for content in (b" " * 1_048_577, chunks()):
        response = client.post("/v1/events", content=content, headers=headers)
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"
        assert "larger than 1048576 bytes" in response.json()["detail"]
    # A body refused at its limit is the caller's mistake, answered as such: not an error of the API's.
    logged = capsys.readouterr()
    assert "unhandled error" not in logged.out + logged.err


def test_responses_carry_the_security_headers(client: TestClient) -> None:
    response = client.get("/v1/citizens/C-1/context", headers=access.supervisor())
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "strict-transport-security" not in response.headers  # only when served behind TLS
    assert "content-security-policy" not in client.get("/docs").headers  # its viewer loads from a CDN


def test_behind_a_proxy_prefix_the_headers_and_limits_hold(
    redis_settings: RedisSettings, database_settings: DatabaseSettings
) -> None:
    # Served under a prefix (uvicorn's --root-path), a request's path holds the prefix: the headers and
    # limits that go by route must see through it.
    app = create_app(redis_settings=redis_settings, database=database_settings)
    with TestClient(app, root_path="/api") as client:
        read = client.get("/api/v1/citizens/C-1/context", headers=access.supervisor())
        assert read.headers["cache-control"] == "no-store"
        assert "default-src 'none'" in read.headers["content-security-policy"]
        headers = {
            **access.integrator(database_settings, Scope.events_write),
            "content-type": "application/json",
        }
        larger_than_most = client.post("/api/v1/events", content=b" " * 100_000 + b"[]", headers=headers)
        assert larger_than_most.status_code == 422  # read, and judged: an empty batch (1 MiB is its limit)
        lookup = client.get(
            "/api/v1/citizens/lookup", params={"phone": "07700 900999"}, headers=access.supervisor()
        )
        assert lookup.headers["deprecation"] == "@1795996800"
        assert lookup.headers["link"] == '</api/v1/citizens/lookup>; rel="successor-version"'


def test_hsts_is_sent_when_behind_tls(
    redis_settings: RedisSettings, database_settings: DatabaseSettings
) -> None:
    with app_client(redis_settings, database_settings, hsts=True) as client:
        assert "max-age=" in client.get("/healthz").headers["strict-transport-security"]


def test_cors_allows_only_the_listed_origins(client: TestClient) -> None:
    preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    allowed = client.options("/v1/enquiries", headers={"Origin": "https://desk.example.org", **preflight})
    refused = client.options("/v1/enquiries", headers={"Origin": "https://evil.example", **preflight})
    assert allowed.headers["access-control-allow-origin"] == "https://desk.example.org"
    assert "access-control-allow-origin" not in refused.headers
    # HEAD is served wherever GET is (api/head.py): a script on the listed origin may ask it too.
    head = {**preflight, "Access-Control-Request-Method": "HEAD"}
    assert client.options("/v1/enquiries", headers={"Origin": "https://desk.example.org", **head}).is_success
    # A desk's script can read that a route it calls is deprecated, and what replaces it.
    answer = client.get(
        "/v1/citizens/lookup",
        params={"phone": "07700 900999"},
        headers={"Origin": "https://desk.example.org"},
    )
    exposed = {name.strip().lower() for name in answer.headers["access-control-expose-headers"].split(",")}
    assert {"deprecation", "link"} <= exposed


def test_the_audit_trail_filters_pages_and_exports_json_lines(client: TestClient) -> None:
    reader = access.supervisor("auditee")
    for citizen in ("C-A1", "C-A2", "C-A1"):
        assert client.get(f"/v1/citizens/{citizen}/context", headers=reader).status_code == 200
    admin = access.admin()
    page = client.get("/v1/audit", params={"citizen_id": "C-A1", "limit": 1}, headers=admin).json()
    assert len(page["records"]) == 1
    assert page["records"][0]["reason"] == access.REASON
    assert "C-A1" not in json.dumps(page)  # pseudonyms only
    rest = client.get("/v1/audit", params={"citizen_id": "C-A1", "after": page["next_after"]}, headers=admin)
    assert len(rest.json()["records"]) == 1
    assert rest.json()["next_after"] is None
    lines = client.get("/v1/audit", params={"actor": "auditee", "format": "jsonl"}, headers=admin)
    assert lines.headers["content-type"].startswith("application/x-ndjson")
    records = [json.loads(line) for line in lines.text.splitlines()]
    assert [record["action"] for record in records] == ["context.read"] * 3
    assert len({record["citizen"] for record in records}) == 2


def test_the_database_refuses_to_change_or_remove_audit_records(sql_database: DatabaseSettings) -> None:
    migrate(sql_database)
    engine = create_db_engine(sql_database)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO audit_records (at, actor_kind, actor_id, actor_role, action, outcome)"
                    " VALUES (CURRENT_TIMESTAMP, 'agent', 'a', 'agent', 'lookup', 'allowed')"
                )
            )
        statements = ["UPDATE audit_records SET actor_id = 'someone-else'", "DELETE FROM audit_records"]
        if engine.dialect.name == "postgresql":
            statements.append("TRUNCATE audit_records")  # which row triggers do not see
        for statement in statements:
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
                connection.execute(text(statement))
        with engine.connect() as connection:
            assert connection.execute(text("SELECT actor_id FROM audit_records")).scalars().all() == ["a"]
    finally:
        engine.dispose()


def test_audit_time_filters_understand_any_offset(client: TestClient) -> None:
    assert client.get("/v1/citizens/C-TZ/context", headers=access.supervisor("tz")).status_code == 200
    admin = access.admin()
    an_hour_ago_in_paris = (datetime.now(UTC) - timedelta(hours=1)).astimezone(timezone(timedelta(hours=2)))
    found = client.get(
        "/v1/audit", params={"actor": "tz", "since": an_hour_ago_in_paris.isoformat()}, headers=admin
    )
    later = client.get(
        "/v1/audit",
        params={
            "actor": "tz",
            "since": (datetime.now(UTC) + timedelta(minutes=5))
            .astimezone(timezone(timedelta(hours=-5)))
            .isoformat(),
        },
        headers=admin,
    )
    assert len(found.json()["records"]) == 1
    assert later.json()["records"] == []
    assert client.get("/v1/audit", params={"after": 2**64}, headers=admin).status_code == 422
    # A number is not read as Unix time (since=2026, the year, was 1970).
    refused = client.get("/v1/audit", params={"since": "2026"}, headers=admin)
    assert refused.status_code == 422
    assert [error["location"] for error in refused.json()["errors"]] == ["query.since"]


def test_audit_filters_that_could_only_find_nothing_are_refused_naming_the_parameter(
    client: TestClient,
) -> None:
    admin = access.admin()
    now = datetime.now(UTC)
    for params, location in (
        ({"citizen_id": "bad id"}, "query.citizen_id"),  # no citizen can have this id
        ({"since": now.isoformat(), "until": (now - timedelta(hours=1)).isoformat()}, "query.until"),
    ):
        response = client.get("/v1/audit", params=params, headers=admin)
        assert response.status_code == 422, params
        assert [error["location"] for error in response.json()["errors"]] == [location]


def test_an_erasure_that_could_not_happen_is_recorded_as_failed(
    redis_settings: RedisSettings, database_settings: DatabaseSettings
) -> None:
    unreachable = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    app = create_app(redis_settings=redis_settings, database=database_settings, kafka=unreachable)
    with TestClient(app) as client:
        admin = access.admin()
        assert client.delete("/v1/citizens/C-FAIL", headers=admin).status_code == 503
        records = client.get("/v1/audit", params={"citizen_id": "C-FAIL"}, headers=admin).json()["records"]
    assert [(r["action"], r["outcome"]) for r in records] == [("erasure", "failed")]


def test_the_api_key_header_takes_api_keys_only(client: TestClient) -> None:
    token = access.agent("agent-in-key-header")["Authorization"].removeprefix("Bearer ")
    for presented in (token, "nonsense"):
        response = client.get("/v1/enquiries", headers={"X-API-Key": presented})
        assert response.status_code == 401
        assert "X-API-Key holds no API key" in response.json()["detail"]
