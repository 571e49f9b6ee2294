"""A citizen's rights through real processes: a complete export, and an erasure that survives a rebuild; and
the export streamed, its audit trail read a page at a time, against the real Redis and SQL."""

import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

import httpx
import pydantic
import pytest
import redis
import uvicorn
import websockets.sync.client as ws_client
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from websockets.exceptions import ConnectionClosed

from api import citizen_rights
from api.app import create_app
from api.publisher import EventPublisher
from context.keys import CitizenKeys, erasure_mark_key
from context.settings import RedisSettings, TimelineSettings, redis_client_options
from context.store import ProjectionWriter
from events.settings import KafkaSettings
from models import audit_repository, enquiry_repository
from models.audit_repository import AuditFilter
from models.database import DatabaseSettings, create_db_engine
from models.rights import CitizenExport, RecordedView
from models.tables import AuditRecord
from tests import access
from tests.conftest import Stack, free_port, wait_until
from tests.database_faults import DatabaseOutage
from tests.factories import example_data, make_event, writes_for
from tests.logs import capture_module_logs

PHONE, EMAIL = "+447700900777", "erase.me@example.org"


@pytest.fixture
def publisher(stack: Stack) -> Iterator[EventPublisher]:
    kafka = EventPublisher(KafkaSettings(topic=stack.env["CITIZEN_CONTEXT_KAFKA_TOPIC"]))
    yield kafka
    kafka.close()


def held_in_redis(stack: Stack, *needles: str) -> list[str]:
    """Every key of the stack's prefix whose name or value mentions one of `needles`, but for erasure marks
    (a citizen's id and when they were erased: what keeps their earlier events from coming back)."""
    prefix = stack.env["CITIZEN_CONTEXT_REDIS_KEY_PREFIX"]
    client = redis.Redis.from_url(str(RedisSettings().url), **redis_client_options())
    found = []
    try:
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            if key.startswith(f"{prefix}:erased:"):
                continue
            if any(needle in f"{key} {_values(client, key)}" for needle in needles):
                found.append(key)
    finally:
        client.close()
    return found


def _values(client: "redis.Redis", key: str) -> object:
    kind = client.type(key)
    if kind == "hash":
        return client.hgetall(key)
    if kind == "set":
        return client.smembers(key)
    if kind == "zset":
        return client.zrange(key, 0, -1)
    if kind == "list":
        return client.lrange(key, 0, -1)
    return client.get(key)


def held_in_sql(stack: Stack, *needles: str) -> list[str]:
    """Every row of every table that mentions one of `needles`."""
    engine = create_db_engine(DatabaseSettings(url=stack.env["CITIZEN_CONTEXT_DATABASE_URL"]))
    found = []
    try:
        with engine.connect() as connection:
            for table in ("agents", "enquiries", "api_keys", "audit_records"):
                for row in connection.execute(text(f"SELECT * FROM {table}")):  # noqa: S608 (fixed names)
                    if any(needle in str(tuple(row)) for needle in needles):
                        found.append(f"{table}: {tuple(row)}")
    finally:
        engine.dispose()
    return found


def test_export_then_erasure_then_rebuild_leaves_nothing_of_the_citizen(
    stack: Stack, publisher: EventPublisher
) -> None:
    stack.consumer()
    stack.api()
    api = stack.api_url
    citizen, neighbour = "C-ERASE-1", "C-KEEP-1"
    profile = make_event(
        citizen, type_="profile.updated", data=example_data("profile.updated", phone=PHONE, email=EMAIL)
    )
    history = [
        profile,
        make_event(citizen, minutes_ago=30),
        make_event(citizen, type_="case.opened", minutes_ago=20),
    ]
    kept = make_event(neighbour, minutes_ago=10)
    publisher.publish_all([*history, kept])
    supervisor = access.supervisor()

    def version(who: str) -> int:
        response = httpx.get(f"{api}/v1/citizens/{who}/context", headers=supervisor, timeout=5)
        return int(response.json()["version"]) if response.status_code == 200 else -1

    wait_until(lambda: version(citizen) >= 3 and version(neighbour) >= 1, what="events applied")

    agent = access.agent("agent-rights")
    enquiry = httpx.post(
        f"{api}/v1/enquiries", json={"phone": PHONE, "channel": "phone"}, headers=agent, timeout=5
    )
    assert enquiry.status_code == 201, enquiry.text
    assert httpx.get(f"{api}/v1/citizens/{citizen}/context", headers=agent, timeout=5).status_code == 200
    completion = httpx.post(
        f"{api}/v1/enquiries/{enquiry.json()['id']}/complete",
        json={"outcome": "resolved", "notes": "Explained the payment plan."},
        headers=agent,
        timeout=10,
    )
    assert completion.status_code == 200
    wait_until(lambda: version(citizen) >= 4, what="the completion applied")

    admin = access.admin()
    exported = httpx.get(f"{api}/v1/citizens/{citizen}/export", headers=admin, timeout=10)
    assert exported.status_code == 200
    copy = exported.json()
    completed_id = f"enquiry-{enquiry.json()['id']}-completed"
    # Everything held, and only that: this citizen's events, identifiers, enquiry and viewers.
    assert {event["id"] for event in copy["timeline"]} == {event.id for event in history} | {completed_id}
    assert copy["identifiers"] == ["case:HB-4471", f"email:{EMAIL}", f"phone:{PHONE}"]
    assert copy["profile"]["preferred_language"] == "cy"
    assert [e["notes"] for e in copy["enquiries"]] == ["Explained the payment plan."]
    views = [(view["actor_id"], view["action"]) for view in copy["views"]]
    assert ("agent-rights", "context.read") in views
    assert ("S-test", "context.read") in views
    assert views[-1] == ("AD-test", "export")  # the export itself is recorded, and included
    assert neighbour not in exported.text
    assert kept.id not in exported.text

    applied_before = stack.applied()
    erased = httpx.delete(f"{api}/v1/citizens/{citizen}", headers=admin, timeout=10)
    assert erased.status_code == 200, erased.text
    receipt = erased.json()
    assert receipt["enquiries_removed"] == 1
    # Not `keys_removed`: the consumer applies the erasure record too, and may remove the keys first. What
    # counts is that nothing is held afterwards, whoever removed it.
    assert citizen not in erased.text
    needles = (citizen, PHONE, EMAIL, "Explained the payment plan")
    assert held_in_redis(stack, *needles) == []
    assert held_in_sql(stack, *needles) == []
    # What is left is the mark: when the citizen was erased, until no earlier record can come back.
    mark = erasure_mark_key(stack.env["CITIZEN_CONTEXT_REDIS_KEY_PREFIX"], citizen)
    marks = redis.Redis.from_url(str(RedisSettings().url), **redis_client_options())
    try:
        assert int(cast(str, marks.get(mark))) > 0
        assert marks.ttl(mark) > 0
    finally:
        marks.close()
    lookup = httpx.get(f"{api}/v1/citizens/lookup", params={"phone": PHONE}, headers=supervisor, timeout=5)
    assert lookup.status_code == 404

    # The consumer applies the erasure record too; then the projection is rebuilt from the whole topic,
    # which still holds the citizen's events before their erasure.
    # The API signed its record, so its consumer applies it: unsigned, it would be dead-lettered.
    wait_until(lambda: stack.applied() > applied_before, what="the erasure record applied")
    readiness = httpx.get(f"http://127.0.0.1:{stack.health_port}/readyz", timeout=5).json()
    assert readiness["events_invalid"] == 0
    wait_until(
        lambda: held_in_redis(stack, *needles) == [] and version(neighbour) >= 1, what="erasure consumed"
    )
    replayed = stack.cli("rebuild", "--grace", "0")
    assert re.search(r"\b0 skipped", replayed), replayed  # the erasure record among those applied
    assert version(neighbour) >= 1
    assert held_in_redis(stack, *needles) == []
    assert held_in_sql(stack, *needles) == []
    # The trail keeps its records, under a pseudonym: the erasure itself among them.
    trail = httpx.get(f"{api}/v1/audit", params={"citizen_id": citizen}, headers=admin, timeout=5).json()
    assert [record["action"] for record in trail["records"]][-1] == "erasure"
    assert {record["citizen"] for record in trail["records"]} == {receipt["citizen"]}
    # And no log of any process named the citizen.
    for process in stack.processes:
        assert citizen not in process.log()
        assert PHONE not in process.log()


def test_an_erasure_kafka_did_not_record_says_what_was_and_was_not_erased(
    redis_settings: RedisSettings, writer: ProjectionWriter, migrated: DatabaseSettings, key_prefix: str
) -> None:
    # A topic the broker does not have: the erasure record waits its whole timeout (10 s), then fails.
    missing = KafkaSettings(topic=f"test.missing.{uuid.uuid4().hex[:12]}")
    citizen = "C-ERASE-UNRECORDED"
    writer.apply_batch(writes_for(make_event(citizen)))
    engine = create_db_engine(migrated)
    try:
        with Session(engine) as session:
            enquiry_repository.create_enquiry(session, agent_id="A-1", citizen_id=citizen, channel="phone")
        with TestClient(
            create_app(redis_settings=redis_settings, database=migrated, kafka=missing)
        ) as client:
            response = client.delete(f"/v1/citizens/{citizen}", headers=access.admin())
        with Session(engine) as session:
            left = enquiry_repository.citizen_enquiries(session, citizen_id=citizen)
    finally:
        engine.dispose()
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "2"
    # The enquiries go first (none can be completed after the erasure's time): the answer says so, and
    # that the context was not erased.
    assert response.json()["detail"] == (
        "Kafka did not acknowledge the erasure's record, so the citizen's context may not be erased (the "
        "record may still arrive, and erase it); their enquiries may have been deleted already. Retry: an "
        "erasure can be repeated."
    )
    assert left == []
    assert writer.client.exists(CitizenKeys(key_prefix, writer.current_epoch(), citizen).timeline)


def test_an_erasure_recorded_while_redis_is_away_is_answered_202_and_completed_by_the_consumer(
    stack: Stack, publisher: EventPublisher, migrated: DatabaseSettings
) -> None:
    stack.consumer()
    citizen = "C-ERASE-LATER"
    profile = make_event(
        citizen, type_="profile.updated", data=example_data("profile.updated", phone=PHONE, email=EMAIL)
    )
    publisher.publish_all([profile, make_event(citizen, minutes_ago=5)])
    wait_until(lambda: held_in_redis(stack, citizen) != [], what="the citizen's events applied")
    engine = create_db_engine(migrated)
    try:
        with Session(engine) as session:
            enquiry_repository.create_enquiry(session, agent_id="A-1", citizen_id=citizen, channel="phone")
        # The API's Redis is away once the erasure's record is in Kafka; the consumer's is not.
        away = RedisSettings(
            url="redis://127.0.0.1:1/0", key_prefix=stack.env["CITIZEN_CONTEXT_REDIS_KEY_PREFIX"]
        )
        kafka = KafkaSettings(topic=stack.env["CITIZEN_CONTEXT_KAFKA_TOPIC"])
        with TestClient(create_app(redis_settings=away, database=migrated, kafka=kafka)) as client:
            response = client.delete(f"/v1/citizens/{citizen}", headers=access.admin())
        with Session(engine) as session:
            trail = audit_repository.read_records(session, where=AuditFilter(), limit=10)
            left = enquiry_repository.citizen_enquiries(session, citizen_id=citizen)
    finally:
        engine.dispose()

    assert response.status_code == 202, response.text
    receipt = response.json()
    assert (receipt["status"], receipt["keys_removed"], receipt["enquiries_removed"]) == ("recorded", None, 1)
    assert left == []
    # Recorded as done, not failed: the record in Kafka makes the erasure certain.
    assert [(record.action, record.outcome) for record in trail] == [("erasure", "allowed")]
    # The consumer applies the API's signed record, and erases what the API could not.
    wait_until(lambda: held_in_redis(stack, citizen, PHONE, EMAIL) == [], what="the consumer's erasure")
    readiness = httpx.get(f"http://127.0.0.1:{stack.health_port}/readyz", timeout=5).json()
    assert readiness["events_invalid"] == 0


def test_an_erasure_redis_refuses_after_its_record_is_in_kafka_is_answered_202(
    redis_settings: RedisSettings,
    writer: ProjectionWriter,
    migrated: DatabaseSettings,
    key_prefix: str,
    kafka_topic: str,
) -> None:
    # Not Redis away but an error of its own (a key of the citizen's holding another type): the record is in
    # Kafka all the same, so the erasure is recorded, not failed.
    citizen = "C-ERASE-REFUSED"
    writer.apply_batch(writes_for(make_event(citizen)))
    writer.client.set(CitizenKeys(key_prefix, writer.current_epoch(), citizen).identifiers, "not a set")
    app = create_app(redis_settings=redis_settings, database=migrated, kafka=KafkaSettings(topic=kafka_topic))
    with TestClient(app) as client:
        response = client.delete(f"/v1/citizens/{citizen}", headers=access.admin())
    engine = create_db_engine(migrated)
    try:
        with Session(engine) as session:
            trail = audit_repository.read_records(session, where=AuditFilter(), limit=10)
    finally:
        engine.dispose()
    assert response.status_code == 202, response.text
    assert (response.json()["status"], response.json()["keys_removed"]) == ("recorded", None)
    assert [(record.action, record.outcome) for record in trail] == [("erasure", "allowed")]


def test_an_erasure_closes_the_citizens_open_streams(stack: Stack, publisher: EventPublisher) -> None:
    stack.consumer()
    stack.api()
    publisher.publish_all([make_event("C-ERASE-2")])
    url = stack.api_url.replace("http", "ws", 1) + "/v1/citizens/C-ERASE-2/stream"
    with ws_client.connect(url, additional_headers=access.supervisor(), open_timeout=5) as websocket:
        assert "snapshot" in str(websocket.recv(timeout=5))
        assert (
            httpx.delete(
                f"{stack.api_url}/v1/citizens/C-ERASE-2", headers=access.admin(), timeout=10
            ).status_code
            == 200
        )
        assert close_code(websocket) == 4411


def close_code(websocket: "ws_client.ClientConnection") -> int:
    """Read until the server closes the connection; its close code."""
    try:
        while True:
            websocket.recv(timeout=10)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else -1


# The export, its views a few at a time: every test's trail spans several pages.
VIEWS_PER_PAGE = 3


@pytest.fixture
def rights_app(redis_settings: RedisSettings, migrated: DatabaseSettings, kafka_topic: str) -> FastAPI:
    """The API in this process, on SQLite and on PostgreSQL."""
    return create_app(
        redis_settings=redis_settings, database=migrated, kafka=KafkaSettings(topic=kafka_topic)
    )


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(citizen_rights, "VIEWS_PER_PAGE", VIEWS_PER_PAGE)
    return VIEWS_PER_PAGE


@pytest.fixture
def writer(redis_client: "redis.Redis", key_prefix: str) -> ProjectionWriter:
    return ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())


@pytest.fixture
def views_pages_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many records each read of a citizen's audit records returned, in order (the real reads)."""
    read = audit_repository.read_records
    pages: list[int] = []

    def counting_pages(session: Session, *, where: AuditFilter, limit: int) -> list[AuditRecord]:
        records = read(session, where=where, limit=limit)
        if where.citizen is not None:
            pages.append(len(records))
        return records

    monkeypatch.setattr(audit_repository, "read_records", counting_pages)
    return pages


def viewed_by(
    client: TestClient | httpx.Client, writer: ProjectionWriter, citizen: str, viewers: list[str]
) -> None:
    """The citizen held in Redis, and their context read by each of `viewers` (a supervisor) in turn."""
    profile = make_event(
        citizen, type_="profile.updated", data=example_data("profile.updated", phone=PHONE, email=EMAIL)
    )
    writer.apply_batch(writes_for(profile, make_event(citizen, minutes_ago=5)))
    for viewer in viewers:
        response = client.get(f"/v1/citizens/{citizen}/context", headers=access.supervisor(viewer))
        assert response.status_code == 200, response.text


def test_an_export_of_more_views_than_a_page_has_every_view_in_the_trails_order(
    rights_app: FastAPI, writer: ProjectionWriter, small_pages: int
) -> None:
    citizen = "C-EXPORT-PAGES"
    viewers = [f"S-view-{n}" for n in range(2 * small_pages + 1)]
    with TestClient(rights_app) as client:
        viewed_by(client, writer, citizen, viewers)
        response = client.get(f"/v1/citizens/{citizen}/export", headers=access.admin())
        trail = client.get(
            "/v1/audit", params={"citizen_id": citizen, "limit": 100}, headers=access.admin()
        ).json()["records"]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    export = CitizenExport.model_validate_json(response.content)
    # The pieces make one document, byte for byte the one the model encodes (and the schema describes).
    assert export.model_dump_json().encode() == response.content
    assert export.citizen_id == citizen
    assert export.version == 2
    assert export.identifiers == [f"email:{EMAIL}", f"phone:{PHONE}"]
    assert len(export.timeline) == 2
    assert [(view.actor_id, view.action) for view in export.views] == [
        *((viewer, "context.read") for viewer in viewers),
        ("AD-test", "export"),
    ]
    # Every record of the trail, oldest first, as the trail itself lists them.
    assert [view.model_dump(mode="json") for view in export.views] == [
        RecordedView.model_validate(record).model_dump(mode="json") for record in trail
    ]


class BodyPieces:
    """The app, noting as each piece of an export's body is sent how many pages of views had been read."""

    def __init__(self, app: ASGIApp, pages_read: list[int]) -> None:
        self.app = app
        self._pages_read = pages_read
        self.pages_read_when_sent: list[int] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def noting_send(message: Message) -> None:
            piece = message["type"] == "http.response.body" and message.get("body")
            if piece and scope["path"].endswith("/export"):
                self.pages_read_when_sent.append(len(self._pages_read))
            await send(message)

        await self.app(scope, receive, noting_send)


def test_an_export_reads_its_views_a_page_at_a_time_each_sent_before_the_next_is_read(
    rights_app: FastAPI, writer: ProjectionWriter, small_pages: int, views_pages_read: list[int]
) -> None:
    citizen = "C-EXPORT-BOUNDED"
    viewers = [f"S-view-{n}" for n in range(2 * small_pages + 1)]  # with the export's own: 3 pages
    app = BodyPieces(rights_app, views_pages_read)
    with TestClient(app) as client:
        viewed_by(client, writer, citizen, viewers)
        response = client.get(f"/v1/citizens/{citizen}/export", headers=access.admin())
    assert response.status_code == 200, response.text
    assert len(CitizenExport.model_validate_json(response.content).views) == len(viewers) + 1
    # What one export held of the trail at a time: a page, never the whole of it.
    assert views_pages_read == [small_pages, small_pages, 2]
    # The opening with the first page (read before the status, so a failure there is still a 503), then
    # each page sent before the next is read, then the close.
    assert app.pages_read_when_sent == [1, 2, 3, 3]


class AuditTrailOutage:
    """The database failing its readers (tests/database_faults.py) from just before the `at_page`-th read of
    a citizen's audit records until `restore()`."""

    def __init__(self, database: DatabaseSettings, monkeypatch: pytest.MonkeyPatch, *, at_page: int) -> None:
        self._outage = DatabaseOutage(database, sqlite_table="audit_records")
        self._read = audit_repository.read_records
        self._at_page = at_page
        self._pages = 0
        monkeypatch.setattr(audit_repository, "read_records", self.read_records)

    def read_records(self, session: Session, *, where: AuditFilter, limit: int) -> list[AuditRecord]:
        if where.citizen is not None:
            self._pages += 1
            if self._pages == self._at_page:
                self._outage.begin()
        return self._read(session, where=where, limit=limit)

    def restore(self) -> None:
        self._outage.restore()


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """`app` behind a real HTTP server (uvicorn) in this process; its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, name="export-server", daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="API served")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_the_database_failing_while_an_export_streams_cuts_its_body_and_the_server_carries_on(
    rights_app: FastAPI,
    writer: ProjectionWriter,
    migrated: DatabaseSettings,
    small_pages: int,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    citizen = "C-EXPORT-CUT"
    outage = AuditTrailOutage(migrated, monkeypatch, at_page=2)
    pieces: list[bytes] = []
    logs = capture_module_logs(monkeypatch, citizen_rights)
    with served(rights_app) as api, httpx.Client(base_url=api, timeout=10) as client:
        viewed_by(client, writer, citizen, [f"S-view-{n}" for n in range(small_pages)])
        with client.stream("GET", f"/v1/citizens/{citizen}/export", headers=access.admin()) as response:
            # The status was sent with the first page; the second page's read failed.
            assert response.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):  # the connection dropped: no last chunk
                pieces.extend(response.iter_bytes())
        outage.restore()
        again = client.get(f"/v1/citizens/{citizen}/export", headers=access.admin())
    received = b"".join(pieces)

    # What arrived is the document's start, its first page of views, and no close: no JSON parser takes
    # it for a whole export.
    assert received.startswith(f'{{"citizen_id":"{citizen}",'.encode())
    assert received.count(b'"action":"context.read"') == small_pages
    assert not received.endswith(b"]}")
    with pytest.raises(json.JSONDecodeError):
        json.loads(received)
    with pytest.raises(pydantic.ValidationError):
        CitizenExport.model_validate_json(received)
    # Logged, naming neither the citizen nor the query.
    cut = next(entry for entry in logs.entries if entry["event"] == "citizen export cut short")
    assert cut["log_level"] == "error"
    assert cut["error"] == "OperationalError"
    assert cut["views_sent"] == small_pages
    assert citizen not in str(logs.entries)
    assert citizen not in caplog.text
    # The server carries on: the next export is whole, the cut one among its views.
    assert again.status_code == 200, again.text
    views = CitizenExport.model_validate_json(again.content).views
    assert [view.action for view in views][-2:] == ["export", "export"]


def test_the_database_failing_before_an_export_starts_is_a_503_problem(
    rights_app: FastAPI, writer: ProjectionWriter, migrated: DatabaseSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    citizen = "C-EXPORT-503"
    with TestClient(rights_app) as client:
        viewed_by(client, writer, citizen, ["S-view"])
        # The database fails at the first page of views, which is read before the status is sent.
        outage = AuditTrailOutage(migrated, monkeypatch, at_page=1)
        try:
            response = client.get(f"/v1/citizens/{citizen}/export", headers=access.admin())
        finally:
            outage.restore()
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "2"
    assert response.json()["detail"] == "The database is unavailable; try again shortly."


def test_redis_unavailable_for_an_export_is_a_503_problem(database_settings: DatabaseSettings) -> None:
    unreachable = RedisSettings(url="redis://127.0.0.1:1/0")
    with TestClient(create_app(redis_settings=unreachable, database=database_settings)) as client:
        response = client.get("/v1/citizens/C-EXPORT-503/export", headers=access.admin())
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
