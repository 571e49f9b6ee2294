"""Enquiries over REST: start, list, read and complete, on SQLite and PostgreSQL, with the real Kafka."""

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from httpx2 import Response
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from api.app import create_app
from api.security.settings import SecuritySettings
from api.settings import ApiSettings
from context.settings import RedisSettings, TimelineSettings
from context.store import ProjectionWriter
from events.settings import KafkaSettings
from models.database import DatabaseSettings
from tests import access
from tests.conftest import topic_records
from tests.factories import close_code, example_data, make_event, writes_for

PROBLEM = "application/problem+json"


@pytest.fixture
def client(
    redis_settings: RedisSettings, migrated: DatabaseSettings, kafka_topic: str
) -> Iterator[TestClient]:
    app = create_app(redis_settings=redis_settings, database=migrated, kafka=KafkaSettings(topic=kafka_topic))
    with TestClient(app, headers=access.agent("agent-a")) as test_client:
        yield test_client


@pytest.fixture
def writer(redis_client: "redis.Redis", key_prefix: str) -> ProjectionWriter:
    return ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())


def agent(name: str) -> dict[str, str]:
    return access.agent(name)


def start(client: TestClient, who: str = "agent-a", **body: Any) -> Response:
    return client.post("/v1/enquiries", json={"channel": "phone", **body}, headers=agent(who))


def started(client: TestClient, who: str = "agent-a", **body: Any) -> dict[str, Any]:
    response = start(client, who, **body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def assert_problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["title"]
    return problem


def parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert moment.tzinfo is not None, value
    return moment


def test_start_by_citizen_id(client: TestClient) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    response = start(client, "agent-a", citizen_id="C-500", channel="chat")
    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == f"/v1/enquiries/{body['id']}"
    assert uuid.UUID(body["id"])
    assert body["citizen_id"] == "C-500"
    assert body["channel"] == "chat"
    assert body["agent_id"] == "agent-a"
    assert body["status"] == "active"
    assert before <= parse_time(body["started_at"]) <= datetime.now(UTC) + timedelta(seconds=5)
    assert (body["completed_at"], body["outcome"], body["notes"]) == (None, None, None)
    again = client.get(response.headers["location"], headers=agent("agent-a"))
    assert again.status_code == 200
    assert again.json() == body


def test_a_json_body_sent_as_another_type_is_a_415_and_json_still_works(client: TestClient) -> None:
    body = '{"citizen_id": "C-502", "channel": "phone"}'
    as_text = client.post(
        "/v1/enquiries", content=body, headers={**agent("agent-t"), "content-type": "text/plain"}
    )
    assert as_text.status_code == 415
    assert as_text.headers["content-type"] == "application/problem+json"
    assert "application/json" in as_text.json()["detail"]
    as_json = client.post(
        "/v1/enquiries", content=body, headers={**agent("agent-t"), "content-type": "application/json"}
    )
    assert as_json.status_code == 201
    # A JSON body that breaks the schema is still a 422 naming the field.
    wrong = client.post("/v1/enquiries", json={"citizen_id": "C-502"}, headers=agent("agent-t"))
    assert wrong.status_code == 422
    assert [error["location"] for error in wrong.json()["errors"]] == ["body.channel"]


def test_the_enquiry_belongs_to_the_agent_the_token_names(client: TestClient) -> None:
    anonymous = client.post(
        "/v1/enquiries", json={"citizen_id": "C-501", "channel": "phone"}, headers={"Authorization": ""}
    )
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert started(client, "agent-z", citizen_id="C-501")["agent_id"] == "agent-z"


@pytest.mark.parametrize(
    ("event_type", "field", "given"),
    [
        ("profile.updated", "phone", "07700 900123"),
        ("profile.updated", "phone", "+44 7700 900123"),
        ("profile.updated", "email", "ANNA.JONES@example.org"),
        ("case.opened", "case", "hb-4471"),
    ],
)
def test_start_by_an_identifier_the_projection_learnt(
    client: TestClient, writer: ProjectionWriter, event_type: str, field: str, given: str
) -> None:
    writer.apply_batch(writes_for(make_event("C-600", type_=event_type, data=example_data(event_type))))
    body = started(client, **{field: given})
    assert body["citizen_id"] == "C-600"
    assert body["status"] == "active"


def test_an_unknown_phone_is_a_404_problem(client: TestClient, writer: ProjectionWriter) -> None:
    writer.apply_batch(writes_for(make_event("C-601", type_="profile.updated")))
    problem = assert_problem(start(client, phone="07700 900999"), 404)
    assert "phone" in problem["detail"]
    assert client.get("/v1/enquiries", headers=agent("agent-a")).json() == {"enquiries": []}


@pytest.mark.parametrize(
    "body",
    [{"phone": "not a number"}, {"phone": "123"}, {"email": "nobody"}, {"case": "!?"}],
)
def test_a_malformed_identifier_is_a_422_problem(client: TestClient, body: dict[str, str]) -> None:
    assert_problem(start(client, **body), 422)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"citizen_id": "C-1", "phone": "07700 900123"},
        {"email": "a@example.org", "case": "HB-1"},
        {"citizen_id": ""},
    ],
)
def test_zero_or_two_identifiers_are_a_422_problem(client: TestClient, body: dict[str, str]) -> None:
    problem = assert_problem(start(client, **body), 422)
    assert problem["errors"]


@pytest.mark.parametrize(
    "body",
    [
        {"citizen_id": "has space", "channel": "phone"},
        {"citizen_id": "C-1", "channel": "Not A Channel"},
        {"citizen_id": "C-1"},
    ],
)
def test_an_invalid_start_body_is_a_422_problem(client: TestClient, body: dict[str, str]) -> None:
    response = client.post("/v1/enquiries", json=body)
    assert_problem(response, 422)


def test_list_shows_only_my_active_enquiries_newest_first(client: TestClient) -> None:
    mine = [started(client, "agent-a", citizen_id=f"C-70{n}") for n in range(3)]
    theirs = started(client, "agent-b", citizen_id="C-799")
    done = started(client, "agent-a", citizen_id="C-798")
    completed = client.post(
        f"/v1/enquiries/{done['id']}/complete", json={"outcome": "resolved"}, headers=agent("agent-a")
    )
    assert completed.status_code == 200, completed.text

    listed = client.get("/v1/enquiries", headers=agent("agent-a"))
    assert listed.status_code == 200
    assert [e["id"] for e in listed.json()["enquiries"]] == [e["id"] for e in reversed(mine)]
    assert all(e["agent_id"] == "agent-a" and e["status"] == "active" for e in listed.json()["enquiries"])
    assert [e["id"] for e in client.get("/v1/enquiries", headers=agent("agent-b")).json()["enquiries"]] == [
        theirs["id"]
    ]
    assert client.get("/v1/enquiries", headers=agent("agent-c")).json() == {"enquiries": []}


def test_completing_publishes_the_enquiry_completed_event(client: TestClient, kafka_topic: str) -> None:
    enquiry = started(client, "agent-a", citizen_id="C-800", channel="chat")
    before = datetime.now(UTC) - timedelta(seconds=5)
    response = client.post(
        f"/v1/enquiries/{enquiry['id']}/complete",
        json={"outcome": "callback-booked", "notes": "Will call back on Monday."},
        headers=agent("agent-a"),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == enquiry["id"]
    assert body["status"] == "completed"
    assert body["outcome"] == "callback-booked"
    assert body["notes"] == "Will call back on Monday."
    completed_at = parse_time(body["completed_at"])
    assert before <= completed_at <= datetime.now(UTC) + timedelta(seconds=5)
    assert parse_time(body["started_at"]) <= completed_at

    [record] = topic_records(kafka_topic)
    assert record.key == b"C-800"
    assert ("content-type", b"application/cloudevents+json") in record.headers
    event = json.loads(record.value)
    assert event["type"] == "enquiry.completed"
    assert event["subject"] == "C-800"
    assert event["data"]["enquiry_id"] == enquiry["id"]
    assert event["data"]["outcome"] == "callback-booked"
    assert event["data"]["notes"] == "Will call back on Monday."
    assert event["data"]["channel"] == "chat"

    stored = client.get(f"/v1/enquiries/{enquiry['id']}", headers=agent("agent-a")).json()
    assert stored == body
    assert client.get("/v1/enquiries", headers=agent("agent-a")).json() == {"enquiries": []}


def test_completing_without_notes_leaves_them_out(client: TestClient, kafka_topic: str) -> None:
    enquiry = started(client, citizen_id="C-801")
    response = client.post(
        f"/v1/enquiries/{enquiry['id']}/complete", json={"outcome": "resolved"}, headers=agent("agent-a")
    )
    assert response.status_code == 200
    assert response.json()["notes"] is None
    [record] = topic_records(kafka_topic)
    assert "notes" not in json.loads(record.value)["data"]


def test_completing_twice_is_a_409_and_publishes_once(client: TestClient, kafka_topic: str) -> None:
    enquiry = started(client, citizen_id="C-802")
    url = f"/v1/enquiries/{enquiry['id']}/complete"
    first = client.post(url, json={"outcome": "resolved", "notes": "first"}, headers=agent("agent-a"))
    assert first.status_code == 200
    second = client.post(url, json={"outcome": "referred", "notes": "second"}, headers=agent("agent-a"))
    assert_problem(second, 409)
    stored = client.get(f"/v1/enquiries/{enquiry['id']}").json()
    assert (stored["outcome"], stored["notes"]) == ("resolved", "first")
    assert len(topic_records(kafka_topic)) == 1


def test_another_agent_cannot_complete_it(client: TestClient, kafka_topic: str) -> None:
    enquiry = started(client, "agent-a", citizen_id="C-803")
    response = client.post(
        f"/v1/enquiries/{enquiry['id']}/complete", json={"outcome": "resolved"}, headers=agent("agent-b")
    )
    assert_problem(response, 403)
    assert client.get(f"/v1/enquiries/{enquiry['id']}").json()["status"] == "active"
    assert topic_records(kafka_topic) == []


def test_an_unknown_enquiry_is_a_404_problem(client: TestClient, kafka_topic: str) -> None:
    missing = str(uuid.uuid4())
    assert_problem(client.get(f"/v1/enquiries/{missing}"), 404)
    response = client.post(f"/v1/enquiries/{missing}/complete", json={"outcome": "resolved"})
    assert_problem(response, 404)
    assert topic_records(kafka_topic) == []


@pytest.mark.parametrize(
    "body",
    [{}, {"outcome": "Resolved"}, {"outcome": ""}, {"outcome": "resolved", "notes": "x" * 4001}],
)
def test_an_invalid_completion_is_a_422_problem(
    client: TestClient, kafka_topic: str, body: dict[str, str]
) -> None:
    enquiry = started(client, citizen_id="C-804")
    response = client.post(f"/v1/enquiries/{enquiry['id']}/complete", json=body, headers=agent("agent-a"))
    assert_problem(response, 422)
    assert client.get(f"/v1/enquiries/{enquiry['id']}").json()["status"] == "active"
    assert topic_records(kafka_topic) == []


def heartbeats_while_open(websocket: WebSocketTestSession, count: int) -> None:
    """Read the stream until `count` heartbeats came; a close meanwhile fails the test."""
    seen = 0
    while seen < count:
        try:
            message = websocket.receive_json()
        except WebSocketDisconnect as closed:
            pytest.fail(f"the stream closed ({closed.code}) after {seen} heartbeats")
        seen += message["type"] == "heartbeat"


def test_an_unacknowledged_completion_is_a_503_and_leaves_the_enquiry_active_for_a_retry(
    redis_settings: RedisSettings, migrated: DatabaseSettings, kafka_topic: str
) -> None:
    """Nothing is completed until Kafka has the event: the stream goes on, and the agent can retry."""
    unreachable = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    app = create_app(
        api=ApiSettings(stream_heartbeat_s=0.3),
        redis_settings=redis_settings,
        database=migrated,
        kafka=unreachable,
        security=SecuritySettings(access_check_s=0.1),
    )
    with TestClient(app, headers=agent("agent-a")) as c:
        enquiry = started(c, "agent-a", citizen_id="C-805")
        url = f"/v1/enquiries/{enquiry['id']}/complete"
        with c.websocket_connect(f"/v1/enquiries/{enquiry['id']}/stream", headers=agent("agent-a")) as ws:
            assert ws.receive_json()["type"] == "snapshot"
            response = c.post(url, json={"outcome": "resolved", "notes": "n"}, headers=agent("agent-a"))
            assert_problem(response, 503)
            assert response.headers["retry-after"] == "2"
            # Several access checks pass, and the enquiry's stream stays open: the enquiry is still active.
            heartbeats_while_open(ws, 3)
        stored = c.get(f"/v1/enquiries/{enquiry['id']}").json()
        listed = c.get("/v1/enquiries").json()["enquiries"]
        # Kafka may hold the unacknowledged event already: another outcome cannot replace it.
        other = c.post(url, json={"outcome": "referred"}, headers=agent("agent-a"))
    assert (stored["status"], stored["outcome"], stored["notes"]) == ("active", "resolved", "n")
    assert [e["id"] for e in listed] == [enquiry["id"]]  # a reloaded desk still finds it
    assert_problem(other, 409)
    assert topic_records(kafka_topic) == []

    reachable = KafkaSettings(topic=kafka_topic)
    with TestClient(
        create_app(redis_settings=redis_settings, database=migrated, kafka=reachable),
        headers=agent("agent-a"),
    ) as c:
        retry = c.post(url, json={"outcome": "resolved", "notes": "n"}, headers=agent("agent-a"))
        listed_after = c.get("/v1/enquiries").json()["enquiries"]
    assert retry.status_code == 200, retry.text
    completed = retry.json()
    assert (completed["status"], completed["outcome"], completed["notes"]) == ("completed", "resolved", "n")
    assert listed_after == []
    [record] = topic_records(kafka_topic)
    event = json.loads(record.value)
    assert event["id"] == f"enquiry-{enquiry['id']}-completed"
    assert (event["data"]["outcome"], event["data"]["notes"]) == ("resolved", "n")
    assert (
        parse_time(event["time"])
        == parse_time(completed["completed_at"])
        == parse_time(stored["completed_at"])
    )


def test_completing_again_with_the_same_outcome_is_a_200_and_publishes_once(
    client: TestClient, kafka_topic: str
) -> None:
    enquiry = started(client, citizen_id="C-807")
    url = f"/v1/enquiries/{enquiry['id']}/complete"
    first = client.post(url, json={"outcome": "resolved", "notes": "same"}, headers=agent("agent-a"))
    again = client.post(url, json={"outcome": "resolved", "notes": "same"}, headers=agent("agent-a"))
    assert (first.status_code, again.status_code) == (200, 200), again.text
    assert again.json() == first.json()
    assert len(topic_records(kafka_topic)) == 1


def test_concurrent_completions_complete_it_once(client: TestClient, kafka_topic: str) -> None:
    """Only one of several simultaneous completions wins; the others are told it is already completed."""
    enquiry = started(client, citizen_id="C-806")
    url = f"/v1/enquiries/{enquiry['id']}/complete"

    def complete(n: int) -> Response:
        return client.post(url, json={"outcome": f"outcome-{n}"}, headers=agent("agent-a"))

    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(complete, range(4)))
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200, 409, 409, 409], [r.text for r in responses]
    [winner] = [response.json() for response in responses if response.status_code == 200]
    assert client.get(f"/v1/enquiries/{enquiry['id']}").json()["outcome"] == winner["outcome"]
    # The timeline keeps the first event of an id: what it shows must be what the enquiry says.
    [record] = topic_records(kafka_topic)
    assert json.loads(record.value)["data"]["outcome"] == winner["outcome"]


def test_concurrent_completions_with_the_same_notes_are_one_completion(
    client: TestClient, kafka_topic: str
) -> None:
    enquiry = started(client, citizen_id="C-808")
    url = f"/v1/enquiries/{enquiry['id']}/complete"

    def complete(_n: int) -> Response:
        return client.post(url, json={"outcome": "resolved", "notes": "one"}, headers=agent("agent-a"))

    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(complete, range(4)))
    assert [response.status_code for response in responses] == [200] * 4, [r.text for r in responses]
    assert {response.json()["completed_at"] for response in responses} == {
        responses[0].json()["completed_at"]
    }
    # A request that found the completion under way published the same event again: one event id.
    events = [json.loads(record.value) for record in topic_records(kafka_topic)]
    assert {(e["id"], e["time"], e["data"]["notes"]) for e in events} == {
        (f"enquiry-{enquiry['id']}-completed", events[0]["time"], "one")
    }


def test_an_enquiry_id_in_upper_case_names_the_same_enquiry(client: TestClient, kafka_topic: str) -> None:
    # A UUID's hex digits may come in either case (RFC 9562): .NET and some databases write them upper-case.
    enquiry = started(client, "agent-a", citizen_id="C-801", channel="phone")
    upper = enquiry["id"].upper()
    assert upper != enquiry["id"]
    found = client.get(f"/v1/enquiries/{upper}", headers=agent("agent-a"))
    assert found.status_code == 200, found.text
    assert found.json()["id"] == enquiry["id"]
    with client.websocket_connect(f"/v1/enquiries/{upper}/stream", headers=agent("agent-a")) as ws:
        assert ws.receive_json()["type"] == "snapshot"
    completed = client.post(
        f"/v1/enquiries/{upper}/complete", json={"outcome": "resolved"}, headers=agent("agent-a")
    )
    assert completed.status_code == 200, completed.text
    assert (completed.json()["id"], completed.json()["status"]) == (enquiry["id"], "completed")
    [record] = topic_records(kafka_topic)
    assert json.loads(record.value)["data"]["enquiry_id"] == enquiry["id"]


MALFORMED_ENQUIRY_IDS = [
    "%00",
    "not-an-enquiry",
    "0b7e4a52-2f1c-4d39-9a57-63c1f0f5b8d2%00",
    "0b7e4a52-2f1c-4d39-9a57-63c1f0f5b8d2x",
]


@pytest.mark.parametrize("enquiry_id", MALFORMED_ENQUIRY_IDS)
def test_a_malformed_enquiry_id_is_a_422_problem_and_never_reaches_sql(
    client: TestClient, kafka_topic: str, enquiry_id: str
) -> None:
    for response in (
        client.get(f"/v1/enquiries/{enquiry_id}"),
        client.post(f"/v1/enquiries/{enquiry_id}/complete", json={"outcome": "resolved"}),
    ):
        problem = assert_problem(response, 422)
        assert [error["location"] for error in problem["errors"]] == ["path.enquiry_id"]
    with client.websocket_connect(f"/v1/enquiries/{enquiry_id}/stream", headers=agent("agent-a")) as ws:
        assert close_code(ws) == 4404
    assert topic_records(kafka_topic) == []


@pytest.mark.parametrize(
    "notes", ["\u0000", "before\u0000after", "bell\u0007", "\u001b[31mred", "next\u0085line"]
)
def test_notes_with_control_characters_are_a_422_problem(
    client: TestClient, kafka_topic: str, notes: str
) -> None:
    enquiry = started(client, citizen_id="C-809")
    response = client.post(
        f"/v1/enquiries/{enquiry['id']}/complete", json={"outcome": "resolved", "notes": notes}
    )
    problem = assert_problem(response, 422)
    assert [error["location"] for error in problem["errors"]] == ["body.notes"]
    stored = client.get(f"/v1/enquiries/{enquiry['id']}").json()
    assert (stored["status"], stored["outcome"], stored["notes"]) == ("active", None, None)
    assert topic_records(kafka_topic) == []


def test_notes_keep_their_tabs_and_line_breaks(client: TestClient, kafka_topic: str) -> None:
    notes = "Payslips received.\r\nTo do:\n\t- call back on Friday"
    enquiry = started(client, citizen_id="C-810")
    response = client.post(
        f"/v1/enquiries/{enquiry['id']}/complete", json={"outcome": "resolved", "notes": notes}
    )
    assert response.status_code == 200, response.text
    assert response.json()["notes"] == notes
    [record] = topic_records(kafka_topic)
    assert json.loads(record.value)["data"]["notes"] == notes


def test_finding_the_citizen_by_an_identifier_is_an_audited_lookup(
    client: TestClient, writer: ProjectionWriter, migrated: DatabaseSettings
) -> None:
    profile = make_event(
        "C-LOOK", type_="profile.updated", data=example_data("profile.updated", phone="07700 900444")
    )
    writer.apply_batch(writes_for(profile))
    found = started(client, "agent-l", phone="07700 900444")
    assert start(client, "agent-l", phone="07700 900445").status_code == 404
    started(client, "agent-l", citizen_id="C-LOOK")  # by id: no lookup
    admin = access.admin()
    records = client.get("/v1/audit", params={"actor": "agent-l"}, headers=admin).json()["records"]
    assert [(r["action"], r["enquiry_id"], r["citizen"] is not None) for r in records] == [
        ("lookup", found["id"], True),
        ("lookup", None, False),
    ]
