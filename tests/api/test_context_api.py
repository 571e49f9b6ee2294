"""REST and WebSocket behaviour of one API app against the real Redis and database."""

from collections.abc import Iterator

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from context.settings import RedisSettings, TimelineSettings
from context.store import ProjectionWriter
from models.database import DatabaseSettings, create_db_engine
from tests import access
from tests.api.test_citizen_rights import served
from tests.conftest import free_port, wait_until
from tests.factories import make_event, writes_for


@pytest.fixture
def client(redis_settings: RedisSettings, database_settings: DatabaseSettings) -> Iterator[TestClient]:
    app = create_app(redis_settings=redis_settings, database=database_settings)
    with TestClient(app, headers=access.supervisor()) as test_client:
        wait_until(lambda: test_client.get("/readyz").status_code == 200, what="readiness", timeout_s=10)
        yield test_client


@pytest.fixture
def writer(redis_client: "redis.Redis", key_prefix: str) -> ProjectionWriter:
    return ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())


def test_healthz_and_readyz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    # Ready once the process's subscription to live changes is in place, moments after start.
    wait_until(lambda: client.get("/readyz").status_code == 200, what="readiness", timeout_s=10)
    ready = client.get("/readyz")
    assert ready.json() == {"status": "ready", "checks": {"redis": "ok", "database": "ok", "changes": "ok"}}
    # Load balancers that probe with HEAD get the same answers, without a body.
    for path in ("/healthz", "/readyz"):
        head = client.head(path)
        assert (head.status_code, head.content) == (200, b"")


def test_every_get_route_answers_head_as_a_get_without_the_body(
    client: TestClient, writer: ProjectionWriter
) -> None:
    # RFC 9110: a general-purpose server supports HEAD wherever it serves GET; FastAPI answered 405.
    writer.apply_batch(writes_for(make_event("C-HEAD-1")))
    path = "/v1/citizens/C-HEAD-1/context"
    got = client.get(path)
    head = client.head(path)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["etag"] == got.headers["etag"]
    assert head.headers["content-type"] == got.headers["content-type"] == "application/json"
    assert client.head(path, headers={"If-None-Match": got.headers["etag"]}).status_code == 304
    listed = client.head("/v1/enquiries", headers=access.agent("A-head"))
    assert (listed.status_code, listed.content) == (200, b"")
    # Refused as a GET would be, with the same problem's headers; a route without GET still refuses HEAD.
    anonymous = client.head(path, headers={"Authorization": ""})
    assert (anonymous.status_code, anonymous.content) == (401, b"")
    assert anonymous.headers["content-type"] == "application/problem+json"
    refused = client.head("/v1/events")
    assert (refused.status_code, refused.headers["allow"]) == (405, "POST")
    # A streamed answer too: its headers, no body.
    export = client.head("/v1/audit", params={"format": "jsonl"}, headers=access.admin())
    assert (export.status_code, export.content) == (200, b"")
    assert export.headers["content-type"] == "application/x-ndjson"
    # Metrics report the request as the client made it.
    metrics = client.get("/metrics").text
    assert (
        'citizen_context_api_request_seconds_count{method="HEAD",route="/v1/citizens/{citizen_id}/context"'
        in metrics
    )


def test_request_metrics_name_the_route_or_mount_that_served_each_request(client: TestClient) -> None:
    # Only the API's own routes are recorded in the request's scope: the OpenAPI document and the desk's
    # files were counted as "unmatched", with the paths nothing serves.
    for path in ("/openapi.json", "/desk/", "/desk/no-such-file.js", "/no-such-page"):
        client.get(path)
    client.head("/desk/")
    metrics = client.get("/metrics").text
    for method, route, status in (
        ("GET", "/openapi.json", 200),
        ("GET", "/desk", 200),
        ("HEAD", "/desk", 200),
        ("GET", "/desk", 404),
        ("GET", "unmatched", 404),
    ):
        assert f'{{method="{method}",route="{route}",status="{status}"}}' in metrics


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        # HEAD is served wherever GET is, so Allow says so.
        ("PUT", "/v1/citizens/C-1/context", "GET, HEAD"),
        # Two routes serve /v1/enquiries (GET lists, POST begins): Starlette named the first one's only.
        ("PATCH", "/v1/enquiries", "GET, HEAD, POST"),
        ("PUT", "/v1/citizens/C-1", "DELETE"),
        # The desk's files (a mount) say what they serve themselves.
        ("POST", "/desk/index.html", "GET, HEAD"),
    ],
)
def test_a_method_not_allowed_lists_every_method_the_path_is_served_with(
    client: TestClient, method: str, path: str, allow: str
) -> None:
    refused = client.request(method, path)
    assert refused.status_code == 405
    assert refused.headers["allow"] == allow
    assert refused.headers["content-type"] == "application/problem+json"


def test_a_head_is_answered_without_a_body_by_a_real_server(
    redis_settings: RedisSettings, database_settings: DatabaseSettings
) -> None:
    app = create_app(redis_settings=redis_settings, database=database_settings)
    with served(app) as url:
        head = httpx.head(f"{url}/v1/citizens/C-HEAD-2/context", headers=access.supervisor(), timeout=5)
        then = httpx.get(f"{url}/healthz", timeout=5)  # the connection's next answer is whole
    assert (head.status_code, head.content) == (200, b"")
    assert int(head.headers["content-length"]) > 0  # the GET's own length, as HEAD says it
    assert then.json() == {"status": "ok"}


def test_readyz_reports_an_unreachable_redis(database_settings: DatabaseSettings) -> None:
    unreachable = RedisSettings(url="redis://127.0.0.1:1/0")
    with TestClient(
        create_app(redis_settings=unreachable, database=database_settings), headers=access.supervisor()
    ) as client:
        ready = client.get("/readyz")
        context = client.get("/v1/citizens/C-1/context")
        # What needs only SQL still works: the rate limits (in Redis) are waived, not everything refused.
        enquiries = client.get("/v1/enquiries")
    assert enquiries.status_code == 200
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"redis": "unavailable", "database": "ok", "changes": "unavailable"}
    assert context.status_code == 503
    assert context.headers["content-type"] == "application/problem+json"
    assert context.headers["retry-after"] == "1"


def test_a_database_that_cannot_be_reached_is_a_503_problem_not_a_500(
    redis_settings: RedisSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    # A PostgreSQL failover, SQLite locked past its busy timeout, the pool's wait run out: try again.
    unreachable = DatabaseSettings(url=f"postgresql+psycopg://citizen:context@127.0.0.1:{free_port()}/none")
    with TestClient(
        create_app(redis_settings=redis_settings, database=unreachable), headers=access.supervisor()
    ) as client:
        enquiries = client.get("/v1/enquiries")
        context = client.get("/v1/citizens/C-1/context")  # its audit record cannot be written
    for response in (enquiries, context):
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"] == "2"
        assert response.json()["detail"] == "The database is unavailable; try again shortly."
    assert "error=OperationalError" in capsys.readouterr().out


def test_sqlite_locked_past_its_busy_timeout_is_a_503_whose_log_names_the_drivers_code(
    redis_settings: RedisSettings, database_settings: DatabaseSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    # Another writer holds SQLite's write lock for longer than the busy timeout (5 s): try again.
    holder = create_db_engine(database_settings, autocommit=True)
    try:
        with (
            TestClient(create_app(redis_settings=redis_settings, database=database_settings)) as client,
            holder.connect() as holding,
        ):
            holding.exec_driver_sql("BEGIN IMMEDIATE")
            capsys.readouterr()
            response = client.post(
                "/v1/enquiries", json={"citizen_id": "C-LOCKED", "channel": "phone"}, headers=access.agent()
            )
            holding.exec_driver_sql("ROLLBACK")
    finally:
        holder.dispose()
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "2"
    output = capsys.readouterr().out
    assert "database unavailable" in output
    assert "driver_code=SQLITE_BUSY" in output
    # The code, never the driver's message or the statement, which would quote the citizen.
    assert "C-LOCKED" not in output
    assert "database is locked" not in output


def test_context_returns_the_timeline_newest_first_with_the_version(
    client: TestClient, writer: ProjectionWriter
) -> None:
    older, newer = make_event("C-10", minutes_ago=5), make_event("C-10", minutes_ago=1)
    writer.apply_batch(writes_for(newer, older))
    body = client.get("/v1/citizens/C-10/context").json()
    assert body["version"] == 2
    assert [event["id"] for event in body["timeline"]] == [newer.id, older.id]
    assert "dataschema" not in body["timeline"][0]


def test_an_invalid_citizen_id_is_a_problem_not_a_crash(client: TestClient) -> None:
    response = client.get("/v1/citizens/has%20space/context")
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert problem["errors"][0]["location"] == "path.citizen_id"


def test_an_unknown_route_is_a_problem(client: TestClient) -> None:
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["title"] == "Not Found"


def test_stream_sends_a_snapshot_then_each_change_in_order(
    client: TestClient, writer: ProjectionWriter
) -> None:
    first = make_event("C-11", minutes_ago=10)
    writer.apply_batch(writes_for(first))
    with client.websocket_connect("/v1/citizens/C-11/stream") as websocket:
        snapshot = websocket.receive_json()
        assert snapshot["type"] == "snapshot"
        assert snapshot["context"]["version"] == 1
        assert [event["id"] for event in snapshot["context"]["timeline"]] == [first.id]
        presence = websocket.receive_json()
        assert presence == {"type": "presence", "citizen_id": "C-11", "viewers": []}
        later = [make_event("C-11", minutes_ago=m) for m in (3, 2, 1)]
        writer.apply_batch(writes_for(*later))
        changes = [websocket.receive_json() for _ in later]
    assert [change["type"] for change in changes] == ["change"] * 3
    assert [change["version"] for change in changes] == [2, 3, 4]
    assert [change["event"]["id"] for change in changes] == [event.id for event in later]


def test_stream_rejects_an_invalid_citizen_id(client: TestClient) -> None:
    from starlette.websockets import WebSocketDisconnect

    with (
        client.websocket_connect("/v1/citizens/a%7Bb/stream") as websocket,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        websocket.receive_json()
    assert closed.value.code == 4400


@pytest.mark.parametrize("version", ["abc", "-1"])
@pytest.mark.parametrize("path", ["/v1/citizens/C-1/stream", "/v1/enquiries/E-1/stream"])
def test_a_stream_with_an_invalid_query_closes_with_the_invalid_request_code_naming_the_parameter(
    client: TestClient, path: str, version: str
) -> None:
    from starlette.websockets import WebSocketDisconnect

    with client.websocket_connect(
        f"{path}?version={version}", subprotocols=["citizen-context.v1"]
    ) as websocket:
        # Accepted, with the project's subprotocol, so that a browser sees the close code.
        assert websocket.accepted_subprotocol == "citizen-context.v1"
        with pytest.raises(WebSocketDisconnect) as closed:
            websocket.receive_json()
    assert closed.value.code == 4400
    assert closed.value.reason == "invalid query.version"


@pytest.mark.parametrize("path", ["/", "/v1/citizens/C-1/streams", "/v1/no-such-stream"])
def test_a_stream_to_a_path_that_is_no_stream_closes_as_unknown(client: TestClient, path: str) -> None:
    from starlette.websockets import WebSocketDisconnect

    with client.websocket_connect(path, subprotocols=["citizen-context.v1"]) as websocket:
        assert websocket.accepted_subprotocol == "citizen-context.v1"
        with pytest.raises(WebSocketDisconnect) as closed:
            websocket.receive_json()
    assert (closed.value.code, closed.value.reason) == (4404, "no such stream")
    # The HTTP side of the same paths is untouched.
    assert client.get(path).status_code == 404


@pytest.mark.parametrize("path", ["/v1/citizens/C-1/stream", "/v1/enquiries/E-1/stream"])
def test_a_plain_http_request_to_a_stream_is_told_to_upgrade(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 426
    assert response.headers["upgrade"] == "websocket"
    assert response.headers["content-type"] == "application/problem+json"
    assert "WebSocket" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/desk", "/desk/", "/desk/index.html"])
def test_a_stream_opened_under_the_desk_closes_as_unknown(client: TestClient, path: str) -> None:
    from starlette.websockets import WebSocketDisconnect

    with client.websocket_connect(path) as websocket, pytest.raises(WebSocketDisconnect) as closed:
        websocket.receive_json()
    assert (closed.value.code, closed.value.reason) == (4404, "no such stream")


def test_openapi_describes_the_context_route(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert "/v1/citizens/{citizen_id}/context" in document["paths"]


def test_openapi_lists_the_answers_every_route_may_give_as_problems(client: TestClient) -> None:
    # The stores unavailable (503) on every route of the API; a body unreadable (400), too large (413) or not
    # JSON (415) on every route that reads one: each of them answers so.
    document = client.get("/openapi.json").json()
    operations = [
        (f"{method.upper()} {path}", operation)
        for path, methods in document["paths"].items()
        if path.startswith("/v1/")
        for method, operation in methods.items()
    ]
    assert len(operations) > 10
    for name, operation in operations:
        responses = operation["responses"]
        expected = {"503"} | ({"400", "413", "415"} if "requestBody" in operation else set())
        if name == "POST /v1/events":
            expected = {"503", "413", "415"}  # it reads its body itself: unreadable is a 422 there
        assert expected <= set(responses), name
        for status in expected:
            assert "application/problem+json" in responses[status]["content"], (name, status)


def test_an_unexpected_error_is_a_500_problem_and_its_text_is_not_logged(
    redis_settings: RedisSettings, database_settings: DatabaseSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(redis_settings=redis_settings, database=database_settings)

    @app.get("/boom/{citizen_id}")
    async def boom(citizen_id: str) -> None:
        raise RuntimeError(f"personal data of {citizen_id}")

    with TestClient(app, raise_server_exceptions=False, headers=access.supervisor()) as client:
        response = client.get("/boom/C-SECRET-1")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "personal data" not in response.text
    captured = capsys.readouterr()
    assert "RuntimeError" in captured.out + captured.err
    assert "C-SECRET-1" not in captured.out + captured.err
