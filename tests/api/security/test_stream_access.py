"""How a stream proves its caller, and how it ends when access does."""

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from api.enquiries import completion_event
from api.security import api_keys
from api.security.settings import SecuritySettings
from context.settings import RedisSettings, TimelineSettings
from context.store import ProjectionWriter
from events.settings import KafkaSettings
from models.database import DatabaseSettings, create_db_engine
from models.enquiries import EnquiryComplete
from models.security import Scope
from models.tables import AgentRole, Enquiry
from tests import access
from tests.conftest import wait_until
from tests.database_faults import DatabaseOutage
from tests.factories import close_code, make_event, writes_for


@pytest.fixture
def client(
    redis_settings: RedisSettings,
    database_settings: DatabaseSettings,
    redis_client: "redis.Redis",
    kafka_topic: str,
) -> Iterator[TestClient]:
    writer = ProjectionWriter(redis_client, prefix=redis_settings.key_prefix, timeline=TimelineSettings())
    writer.apply_batch(writes_for(make_event("C-T1", minutes_ago=1)))
    security = SecuritySettings(access_check_s=0.2, stream_ticket_ttl_s=2, clock_skew_s=0)
    app = create_app(
        redis_settings=redis_settings,
        database=database_settings,
        security=security,
        kafka=KafkaSettings(topic=kafka_topic),
    )
    with TestClient(app) as test_client:
        yield test_client


def start_enquiry(client: TestClient, agent: str, citizen: str = "C-T1") -> str:
    response = client.post(
        "/v1/enquiries", json={"citizen_id": citizen, "channel": "chat"}, headers=access.agent(agent)
    )
    assert response.status_code == 201
    enquiry_id: str = response.json()["id"]
    return enquiry_id


def ticket(client: TestClient, headers: dict[str, str], **body: str) -> str:
    response = client.post("/v1/stream-tickets", headers=headers, json=body or None)
    assert response.status_code == 201
    assert response.json()["expires_in_s"] == 2
    value: str = response.json()["ticket"]
    return value


def test_a_ticket_opens_one_stream_once(client: TestClient) -> None:
    start_enquiry(client, "agent-t")
    once = ticket(client, access.agent("agent-t"))
    with client.websocket_connect(f"/v1/citizens/C-T1/stream?ticket={once}") as websocket:
        assert websocket.receive_json()["type"] == "snapshot"
    with client.websocket_connect(f"/v1/citizens/C-T1/stream?ticket={once}") as websocket:
        assert close_code(websocket) == 4401


def test_a_ticket_expires_within_its_lifetime(
    client: TestClient, redis_client: "redis.Redis", key_prefix: str
) -> None:
    start_enquiry(client, "agent-t")
    late = ticket(client, access.agent("agent-t"))  # valid for 2 s here
    keys = redis_client.keys(f"{key_prefix}:stream-ticket:*")
    assert len(keys) == 1
    wait_until(lambda: not redis_client.exists(keys[0]), what="the ticket expired", timeout_s=5)
    with client.websocket_connect(f"/v1/citizens/C-T1/stream?ticket={late}") as websocket:
        assert close_code(websocket) == 4401


def test_a_refused_stream_says_why_in_its_close_reason(client: TestClient) -> None:
    from starlette.websockets import WebSocketDisconnect

    def closed(path: str) -> tuple[int, str]:
        with client.websocket_connect(path) as websocket, pytest.raises(WebSocketDisconnect) as ended:
            websocket.receive_json()
        return ended.value.code, ended.value.reason

    start_enquiry(client, "agent-t")
    once = ticket(client, access.agent("agent-t"))
    with client.websocket_connect(f"/v1/citizens/C-T1/stream?ticket={once}") as websocket:
        assert websocket.receive_json()["type"] == "snapshot"
    # As the REST answers' details say it, without naming anything the caller did not send.
    assert closed(f"/v1/citizens/C-T1/stream?ticket={once}") == (
        4401,
        "The stream ticket is unknown, used or expired.",
    )
    assert closed("/v1/citizens/C-T1/stream") == (
        4401,
        "Sign in: open the stream with ?ticket= or the bearer.<credential> subprotocol.",
    )
    supervisor = ticket(client, access.bearer(access.token("sup-t", AgentRole.supervisor)))
    assert closed(f"/v1/citizens/C-T1/stream?ticket={supervisor}") == (
        4403,
        "A supervisor viewing a citizen without an enquiry must state a reason "
        "(X-Access-Reason, or ?reason= on a stream).",
    )
    stranger = ticket(client, access.agent("agent-u"))
    assert closed(f"/v1/citizens/C-T1/stream?ticket={stranger}") == (
        4403,
        "You hold no active enquiry for this citizen.",
    )


def test_a_supervisors_ticket_carries_their_reason(client: TestClient) -> None:
    supervisor = access.bearer(access.token("sup-t", AgentRole.supervisor))
    without = ticket(client, supervisor)
    with client.websocket_connect(f"/v1/citizens/C-T1/stream?ticket={without}") as websocket:
        assert close_code(websocket) == 4403
    reasoned = ticket(client, supervisor, reason="safeguarding review")
    with client.websocket_connect(f"/v1/citizens/C-T1/stream?ticket={reasoned}") as websocket:
        assert websocket.receive_json()["type"] == "snapshot"


def test_the_bearer_subprotocol_opens_a_stream_and_is_answered(client: TestClient) -> None:
    start_enquiry(client, "agent-t")
    protocols = ["citizen-context.v1", f"bearer.{access.token('agent-t')}"]
    with client.websocket_connect("/v1/citizens/C-T1/stream", subprotocols=protocols) as websocket:
        assert websocket.accepted_subprotocol == "citizen-context.v1"
        assert websocket.receive_json()["type"] == "snapshot"
    with client.websocket_connect("/v1/citizens/C-T1/stream", subprotocols=["bearer.forged"]) as websocket:
        assert close_code(websocket) == 4401


def test_an_agents_stream_ends_when_their_enquiry_does(client: TestClient) -> None:
    enquiry = start_enquiry(client, "agent-t")
    with client.websocket_connect("/v1/citizens/C-T1/stream", headers=access.agent("agent-t")) as websocket:
        assert websocket.receive_json()["type"] == "snapshot"
        # No consumer runs here, so no completion event reaches the stream: the access check ends it.
        completed = client.post(
            f"/v1/enquiries/{enquiry}/complete", json={"outcome": "resolved"}, headers=access.agent("agent-t")
        )
        assert completed.status_code == 200
        assert close_code(websocket) == 4410


def complete(client: TestClient, writer: ProjectionWriter, enquiry_id: str, agent: str) -> None:
    """Complete an enquiry through the API, and put its completion on the timeline as the consumer would
    (none runs here)."""
    response = client.post(
        f"/v1/enquiries/{enquiry_id}/complete", json={"outcome": "resolved"}, headers=access.agent(agent)
    )
    assert response.status_code == 200
    body = response.json()
    row = Enquiry(**{**body, "started_at": datetime.fromisoformat(body["started_at"])})
    done = completion_event(row, EnquiryComplete(outcome="resolved"), at=datetime.now(UTC))
    writer.apply_batch(writes_for(done))


def next_change(websocket: Any) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = websocket.receive_json()
        if message["type"] == "change":
            return message


def test_an_agents_citizen_stream_lasts_while_they_hold_another_enquiry_for_the_citizen(
    client: TestClient, redis_client: "redis.Redis", redis_settings: RedisSettings
) -> None:
    # An agent with two enquiries open for one citizen (a call, then a chat) completes the newer one, under
    # which the stream was opened: their view of the citizen stays, as their access does.
    writer = ProjectionWriter(redis_client, prefix=redis_settings.key_prefix, timeline=TimelineSettings())
    older = start_enquiry(client, "agent-t")
    newer = start_enquiry(client, "agent-t")
    with client.websocket_connect("/v1/citizens/C-T1/stream", headers=access.agent("agent-t")) as websocket:
        assert websocket.receive_json()["type"] == "snapshot"
        complete(client, writer, newer, "agent-t")
        assert next_change(websocket)["event"]["data"]["enquiry_id"] == newer
        time.sleep(1.0)  # five passes of the access checks (every 0.2 s)
        still = make_event("C-T1")
        writer.apply_batch(writes_for(still))
        assert next_change(websocket)["event"]["id"] == still.id
        # Its last enquiry over: closed by the completion's change, or by the access checks before it came.
        complete(client, writer, older, "agent-t")
        assert close_code(websocket) == 4410
    # The view went on under the older enquiry: the audit trail says so.
    trail = client.get("/v1/audit", params={"citizen_id": "C-T1"}, headers=access.admin()).json()["records"]
    opened = [(r["actor_id"], r["enquiry_id"]) for r in trail if r["action"] == "stream.opened"]
    assert opened == [("agent-t", newer), ("agent-t", older)]


def test_an_enquirys_own_stream_ends_with_it_whatever_else_its_agent_holds(
    client: TestClient, redis_client: "redis.Redis", redis_settings: RedisSettings
) -> None:
    writer = ProjectionWriter(redis_client, prefix=redis_settings.key_prefix, timeline=TimelineSettings())
    start_enquiry(client, "agent-t")
    followed = start_enquiry(client, "agent-t")
    with client.websocket_connect(f"/v1/enquiries/{followed}/stream", headers=access.agent("agent-t")) as ws:
        assert ws.receive_json()["type"] == "snapshot"
        complete(client, writer, followed, "agent-t")  # by its change, or by the access checks first
        assert close_code(ws) == 4410


def test_a_completion_met_while_the_database_is_away_closes_the_citizens_stream_to_be_tried_again(
    client: TestClient,
    redis_client: "redis.Redis",
    redis_settings: RedisSettings,
    database_settings: DatabaseSettings,
) -> None:
    # Which other enquiry the agent holds cannot be read: "try again later" (1013), as for any store away;
    # the reconnection is authorised afresh (under another enquiry if the agent holds one, else refused).
    writer = ProjectionWriter(redis_client, prefix=redis_settings.key_prefix, timeline=TimelineSettings())
    enquiry = start_enquiry(client, "agent-t")
    outage = DatabaseOutage(database_settings, sqlite_table="enquiries")
    with client.websocket_connect("/v1/citizens/C-T1/stream", headers=access.agent("agent-t")) as websocket:
        assert websocket.receive_json()["type"] == "snapshot"
        row = Enquiry(id=enquiry, agent_id="agent-t", citizen_id="C-T1", channel="chat")
        outage.begin()
        try:
            done = completion_event(row, EnquiryComplete(outcome="resolved"), at=datetime.now(UTC))
            writer.apply_batch(writes_for(done))  # as the consumer would once the API had published it
            assert next_change(websocket)["event"]["data"]["enquiry_id"] == enquiry
            assert close_code(websocket) == 1013
        finally:
            outage.restore()


def test_a_stream_ends_when_its_token_expires(client: TestClient) -> None:
    start_enquiry(client, "agent-t")
    # A token's expiry is stored in whole seconds, so a one-second token may already be spent when the
    # stream opens; three seconds leave at least two for the snapshot on a busy machine.
    short = access.token("agent-t", ttl=timedelta(seconds=3))
    with client.websocket_connect("/v1/citizens/C-T1/stream", headers=access.bearer(short)) as websocket:
        assert websocket.receive_json()["type"] == "snapshot"
        assert close_code(websocket) == 4401


def test_a_stream_without_credentials_is_closed_as_unauthenticated(client: TestClient) -> None:
    with client.websocket_connect("/v1/citizens/C-T1/stream") as websocket:
        assert close_code(websocket) == 4401


def test_a_ticket_opens_nothing_once_its_key_is_revoked(
    client: TestClient, database_settings: DatabaseSettings
) -> None:
    issued = access.new_key(database_settings, Scope.context_read)
    pending = ticket(client, {"X-API-Key": issued.key})
    engine = create_db_engine(database_settings)
    try:
        api_keys.revoke_key(engine, by=access.OPERATOR, key_id=issued.record.id)
    finally:
        engine.dispose()
    with client.websocket_connect(f"/v1/citizens/C-T1/stream?ticket={pending}") as websocket:
        assert close_code(websocket) == 4401
