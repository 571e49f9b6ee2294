"""The stream protocol on one API app: resume, heartbeats, lifetime, presence, enquiry streams."""

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, cast

import pytest
import redis
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from api.app import create_app
from api.enquiries import completion_event
from api.settings import ApiSettings
from api.streaming import ERASED, LIFETIME_OVER, SHUTTING_DOWN, AccessEnded, Erased, Resync, Subscription
from context.keys import CitizenKeys
from context.settings import RedisSettings, TimelineSettings
from context.store import ProjectionWriter
from models.database import DatabaseSettings
from models.enquiries import EnquiryComplete
from models.tables import Enquiry
from tests import access
from tests.conftest import wait_until
from tests.factories import example_data, make_event, writes_for

AppFactory = Callable[..., TestClient]


@pytest.fixture
def app_client(redis_settings: RedisSettings, database_settings: DatabaseSettings) -> Iterator[AppFactory]:
    clients: list[TestClient] = []

    def build(**api: Any) -> TestClient:
        client = TestClient(
            create_app(api=ApiSettings(**api), redis_settings=redis_settings, database=database_settings),
            headers=access.supervisor(),
        )
        client.__enter__()
        clients.append(client)
        # Streams opened before the process subscribes to changes get a re-sync snapshot once it has;
        # waiting for readiness keeps each test's message sequence exact.
        wait_until(lambda: client.get("/readyz").status_code == 200, what="readiness", timeout_s=10)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def writer(redis_client: "redis.Redis", key_prefix: str) -> ProjectionWriter:
    return ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings())


def receive(websocket: WebSocketTestSession, *types: str) -> dict[str, Any]:
    """The next message of one of `types`, skipping heartbeats and presence updates."""
    while True:
        message: dict[str, Any] = websocket.receive_json()
        if message["type"] in types:
            return message
        assert message["type"] in {"heartbeat", "presence"}, message


def test_a_resumed_stream_gets_exactly_the_missed_changes(
    app_client: AppFactory, writer: ProjectionWriter
) -> None:
    client = app_client()
    writer.apply_batch(writes_for(*(make_event("C-S1", minutes_ago=50 - n) for n in range(3))))
    with client.websocket_connect("/v1/citizens/C-S1/stream") as websocket:
        snapshot = receive(websocket, "snapshot")["context"]
    epoch, seen = snapshot["epoch"], snapshot["version"]
    missed = [make_event("C-S1", minutes_ago=10 - n) for n in range(4)]
    writer.apply_batch(writes_for(*missed))
    with client.websocket_connect(f"/v1/citizens/C-S1/stream?epoch={epoch}&version={seen}") as websocket:
        assert receive(websocket, "resumed", "snapshot") == {
            "type": "resumed",
            "citizen_id": "C-S1",
            "epoch": epoch,
            "version": seen,
        }
        changes = [receive(websocket, "change") for _ in missed]
        live = make_event("C-S1", minutes_ago=1)
        writer.apply_batch(writes_for(live))
        after = receive(websocket, "change")
    assert [c["version"] for c in changes] == [seen + 1, seen + 2, seen + 3, seen + 4]
    assert [c["event"]["id"] for c in changes] == [e.id for e in missed]
    assert (after["version"], after["event"]["id"]) == (seen + 5, live.id)


@pytest.mark.parametrize(
    ("epoch", "version"), [("another-epoch", 1), (None, 99)], ids=["epoch-changed", "version-from-the-future"]
)
def test_a_resume_that_cannot_be_honoured_gets_a_snapshot(
    app_client: AppFactory, writer: ProjectionWriter, epoch: str | None, version: int
) -> None:
    writer.apply_batch(writes_for(make_event("C-S2")))
    current = writer.current_epoch()
    client = app_client()
    with client.websocket_connect(
        f"/v1/citizens/C-S2/stream?epoch={epoch or current}&version={version}"
    ) as ws:
        snapshot = receive(ws, "snapshot", "resumed")
    assert snapshot["type"] == "snapshot"
    assert (snapshot["context"]["epoch"], snapshot["context"]["version"]) == (current, 1)


def test_a_resume_beyond_the_change_log_gets_a_snapshot(
    redis_client: "redis.Redis", key_prefix: str, app_client: AppFactory
) -> None:
    short = ProjectionWriter(redis_client, prefix=key_prefix, timeline=TimelineSettings(change_log_length=2))
    short.apply_batch(writes_for(*(make_event("C-S3", minutes_ago=10 - n) for n in range(5))))
    client = app_client()
    with client.websocket_connect(f"/v1/citizens/C-S3/stream?epoch={short.current_epoch()}&version=1") as ws:
        assert receive(ws, "snapshot", "resumed")["type"] == "snapshot"


def test_heartbeats_carry_the_position(app_client: AppFactory, writer: ProjectionWriter) -> None:
    writer.apply_batch(writes_for(make_event("C-S4")))
    client = app_client(stream_heartbeat_s=0.1)
    with client.websocket_connect("/v1/citizens/C-S4/stream") as websocket:
        snapshot = receive(websocket, "snapshot")["context"]
        heartbeat = receive(websocket, "heartbeat")
    assert heartbeat == {"type": "heartbeat", "epoch": snapshot["epoch"], "version": 1, "live": True}


def test_a_citizen_whose_keys_began_again_is_re_synced_not_taken_for_duplicates(
    app_client: AppFactory, writer: ProjectionWriter, redis_client: "redis.Redis", key_prefix: str
) -> None:
    # Their keys expired while the stream was open; the first event since began them again at version 1,
    # which the stream, at version 3, took for a change it had sent, and every later one built on what was
    # gone.
    writer.apply_batch(writes_for(*(make_event("C-S15", minutes_ago=30 - n) for n in range(3))))
    client = app_client(stream_heartbeat_s=0.2)
    with client.websocket_connect("/v1/citizens/C-S15/stream") as websocket:
        assert receive(websocket, "snapshot")["context"]["version"] == 3
        redis_client.delete(*CitizenKeys(key_prefix, writer.current_epoch(), "C-S15").all())
        fresh = make_event("C-S15", minutes_ago=1)
        writer.apply_batch(writes_for(fresh))
        messages = [websocket.receive_json() for _ in range(4)]  # heartbeats come between, 0.2 s apart
    snapshots = [message["context"] for message in messages if message["type"] == "snapshot"]
    assert [(snapshot["version"], [e["id"] for e in snapshot["timeline"]]) for snapshot in snapshots] == [
        (1, [fresh.id])
    ]


def test_a_stream_past_its_lifetime_is_asked_to_reconnect(
    app_client: AppFactory, writer: ProjectionWriter
) -> None:
    writer.apply_batch(writes_for(make_event("C-S5")))
    client = app_client(stream_max_lifetime_s=0.3)
    with client.websocket_connect("/v1/citizens/C-S5/stream") as websocket:
        snapshot = receive(websocket, "snapshot")["context"]
        reconnect = receive(websocket, "reconnect")
        with pytest.raises(WebSocketDisconnect) as closed:
            websocket.receive_json()
    assert reconnect == {"type": "reconnect", "reason": "lifetime", "epoch": snapshot["epoch"], "version": 1}
    assert closed.value.code == 4001


def test_each_stream_sees_who_else_views_the_citizen(app_client: AppFactory) -> None:
    client = app_client()
    with client.websocket_connect("/v1/citizens/C-S6/stream", headers=access.supervisor("agent-a")) as first:
        receive(first, "snapshot")
        assert receive(first, "presence")["viewers"] == []
        with client.websocket_connect(
            "/v1/citizens/C-S6/stream", headers=access.supervisor("agent-b")
        ) as second:
            receive(second, "snapshot")
            assert receive(second, "presence")["viewers"] == ["agent-a"]
            assert receive(first, "presence")["viewers"] == ["agent-b"]
        assert receive(first, "presence")["viewers"] == []


def test_an_enquiry_stream_ends_when_the_enquiry_is_completed(
    app_client: AppFactory, writer: ProjectionWriter
) -> None:
    client = app_client()
    created = client.post(
        "/v1/enquiries", json={"citizen_id": "C-S7", "channel": "phone"}, headers=access.agent("a1")
    )
    assert created.status_code == 201
    enquiry = created.json()
    with client.websocket_connect(f"/v1/enquiries/{enquiry['id']}/stream", headers=access.agent("a1")) as ws:
        assert receive(ws, "snapshot")["context"]["citizen_id"] == "C-S7"
        table_row = Enquiry(**{**enquiry, "started_at": datetime.fromisoformat(enquiry["started_at"])})
        done = completion_event(table_row, EnquiryComplete(outcome="resolved"), at=datetime.now(UTC))
        writer.apply_batch(writes_for(done))
        change = receive(ws, "change")
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert change["event"]["type"] == "enquiry.completed"
    assert closed.value.code == 4410


def test_an_enquiry_completion_a_stream_missed_ends_it_at_the_snapshot_that_holds_it(
    app_client: AppFactory, writer: ProjectionWriter
) -> None:
    # The change saying so was lost to the stream (a slow client's overflow, the subscription lost): the
    # snapshot it re-synced from held the completion, and the stream stayed open until its lifetime.
    client = app_client()
    created = client.post(
        "/v1/enquiries", json={"citizen_id": "C-S13", "channel": "phone"}, headers=access.agent("a1")
    )
    enquiry = created.json()
    with client.websocket_connect(f"/v1/enquiries/{enquiry['id']}/stream", headers=access.agent("a1")) as ws:
        receive(ws, "snapshot")
        table_row = Enquiry(**{**enquiry, "started_at": datetime.fromisoformat(enquiry["started_at"])})
        done = completion_event(table_row, EnquiryComplete(outcome="resolved"), at=datetime.now(UTC))
        writer.apply_batch(writes_for(done), publish=False)  # no change reaches the stream
        writer.announce_epoch(writer.current_epoch())  # every stream re-syncs
        resynced = receive(ws, "snapshot")["context"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert resynced["timeline"][0]["type"] == "enquiry.completed"
    assert closed.value.code == 4410


def test_an_erasure_announced_while_the_subscription_was_lost_ends_the_stream_at_its_resync(
    app_client: AppFactory, writer: ProjectionWriter, redis_client: "redis.Redis"
) -> None:
    # The message announcing it never reached the API: a supervisor's stream (no enquiry to lapse) went on
    # showing an empty context until its lifetime, and then reopened.
    client = app_client()
    writer.apply_batch(writes_for(make_event("C-S14", minutes_ago=5)))
    with client.websocket_connect("/v1/citizens/C-S14/stream") as ws:
        receive(ws, "snapshot")
        writer.erase("C-S14", epoch=writer.current_epoch(), publish=False)  # as if published unheard
        redis_client.client_kill_filter(_type="pubsub")  # the API's subscription is lost, then restored
        with pytest.raises(WebSocketDisconnect) as closed:
            receive(ws, "snapshot")  # closed instead of re-synced to an empty context
    assert closed.value.code == 4411


def test_only_the_api_can_end_an_enquiry_stream(app_client: AppFactory, writer: ProjectionWriter) -> None:
    client = app_client()
    created = client.post(
        "/v1/enquiries", json={"citizen_id": "C-S12", "channel": "phone"}, headers=access.agent("a1")
    )
    enquiry = created.json()
    forged = make_event(
        "C-S12",
        type_="enquiry.completed",
        source="/crm/plugin",
        data=example_data("enquiry.completed", enquiry_id=enquiry["id"]),
    )
    with client.websocket_connect(f"/v1/enquiries/{enquiry['id']}/stream", headers=access.agent("a1")) as ws:
        receive(ws, "snapshot")
        writer.apply_batch(writes_for(forged))
        assert receive(ws, "change")["event"]["source"] == "/crm/plugin"
        table_row = Enquiry(**{**enquiry, "started_at": datetime.fromisoformat(enquiry["started_at"])})
        writer.apply_batch(
            writes_for(completion_event(table_row, EnquiryComplete(outcome="resolved"), at=datetime.now(UTC)))
        )
        assert receive(ws, "change")["event"]["source"] == "/citizen-context/enquiries"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 4410


def test_an_unknown_enquiry_stream_is_closed_with_4404(app_client: AppFactory) -> None:
    client = app_client()
    with (
        client.websocket_connect("/v1/enquiries/nope/stream") as ws,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        ws.receive_json()
    assert closed.value.code == 4404


def test_a_profile_change_reaches_the_stream(app_client: AppFactory, writer: ProjectionWriter) -> None:
    client = app_client()
    with client.websocket_connect("/v1/citizens/C-S8/stream") as websocket:
        receive(websocket, "snapshot")
        update = make_event(
            "C-S8",
            type_="profile.updated",
            data={"channel": "system", "summary": "Needs BSL", "communication_needs": ["bsl-interpreter"]},
        )
        writer.apply_batch(writes_for(update))
        change = receive(websocket, "change")
    assert change["profile"]["communication_needs"] == ["bsl-interpreter"]


def test_each_change_carries_the_summary_after_it(app_client: AppFactory, writer: ProjectionWriter) -> None:
    client = app_client()
    with client.websocket_connect("/v1/citizens/C-S10/stream") as websocket:
        receive(websocket, "snapshot")
        calls = [make_event("C-S10", type_="call.started", minutes_ago=60 - n) for n in range(3)]
        summaries = []
        for call in calls:
            writer.apply_batch(writes_for(call))
            message = receive(websocket, "change")
            assert "summary" in message, message
            summaries.append(message["summary"])
    assert [s["contacts_7d"] for s in summaries] == [{"phone": 1}, {"phone": 2}, {"phone": 3}]
    assert [s["repeat_contact"] for s in summaries] == [False, False, True]


def test_metrics_count_streams_and_requests(app_client: AppFactory) -> None:
    client = app_client()
    client.get("/v1/citizens/C-S9/context")
    with client.websocket_connect("/v1/citizens/C-S9/stream") as websocket:
        receive(websocket, "snapshot")
        body = client.get("/metrics").text
    assert (
        'citizen_context_api_request_seconds_count{method="GET",route="/v1/citizens/{citizen_id}/context"'
        in body
    )
    assert "citizen_context_api_streams_open 1.0" in body
    assert 'citizen_context_api_stream_messages_total{type="snapshot"}' in body


def test_a_snapshot_is_the_context_rest_answers_nulls_included(
    app_client: AppFactory, writer: ProjectionWriter
) -> None:
    client = app_client()
    writer.apply_batch(writes_for(make_event("C-S12", minutes_ago=5)))
    answered = client.get("/v1/citizens/C-S12/context").json()
    with client.websocket_connect("/v1/citizens/C-S12/stream") as websocket:
        snapshot = receive(websocket, "snapshot")["context"]
    assert snapshot == answered
    # Unknown, so null in both (the stream left such fields out, unlike REST and the OpenAPI schema).
    assert snapshot["profile"]["preferred_language"] is None
    assert snapshot["summary"]["open_cases"] == []


def test_a_gap_is_filled_with_every_change_held(
    app_client: AppFactory, writer: ProjectionWriter, redis_client: "redis.Redis", key_prefix: str
) -> None:
    # Filled from the change log, each change carries the profile as it stands now: had the fill stopped at
    # the change that showed the gap, the later changes' own messages, with the profile as it stood then,
    # would show an earlier profile again (here a language since replaced).
    client = app_client()
    writer.apply_batch(writes_for(make_event("C-S13", minutes_ago=9)))

    def profile_update(language: str, minutes_ago: float) -> Any:
        data = {"channel": "system", "summary": "Profile updated", "preferred_language": language}
        return make_event("C-S13", type_="profile.updated", minutes_ago=minutes_ago, data=data)

    later = [make_event("C-S13", minutes_ago=8), make_event("C-S13", minutes_ago=7)]
    later += [profile_update("pl", 6), profile_update("cy", 5)]
    with client.websocket_connect("/v1/citizens/C-S13/stream") as websocket:
        assert receive(websocket, "snapshot")["context"]["version"] == 1
        for event in later:  # versions 2 to 5, announced below as they would have been, but for version 2
            writer.apply_batch(writes_for(event), publish=False)
        epoch = writer.current_epoch()
        events = CitizenKeys(key_prefix, epoch, "C-S13").events
        for version, event, language in ((3, later[1], None), (4, later[2], "pl"), (5, later[3], "cy")):
            change: dict[str, Any] = {"citizen_id": "C-S13", "epoch": epoch, "version": version}
            if language:
                change["profile"] = {"preferred_language": language}
            stored = cast(str, redis_client.hget(events, event.dedup_key))
            redis_client.publish(f"{key_prefix}:changes", f"{json.dumps(change)}\n{stored}")
        received = [receive(websocket, "change") for _ in range(4)]
    assert [message["version"] for message in received] == [2, 3, 4, 5]
    languages = [message.get("profile", {}).get("preferred_language") for message in received]
    assert languages == [None, None, "cy", "cy"]


def test_a_profile_only_change_streams_live_and_on_resume(
    app_client: AppFactory, writer: ProjectionWriter
) -> None:
    """A profile update too old for the timeline still changes the profile: the change has no event."""
    client = app_client()
    old_update = make_event(
        "C-S11",
        type_="profile.updated",
        minutes_ago=200 * 24 * 60,
        data={"channel": "system", "summary": "Needs large print", "communication_needs": ["large-print"]},
    )
    with client.websocket_connect("/v1/citizens/C-S11/stream") as websocket:
        snapshot = receive(websocket, "snapshot")["context"]
        writer.apply_batch(writes_for(make_event("C-S11", minutes_ago=5), old_update))
        live = [receive(websocket, "change") for _ in range(2)]
    assert "event" not in live[1]
    assert live[1]["profile"]["communication_needs"] == ["large-print"]
    epoch = writer.current_epoch()
    with client.websocket_connect(
        f"/v1/citizens/C-S11/stream?epoch={epoch}&version={snapshot['version']}"
    ) as ws:
        assert receive(ws, "resumed", "snapshot")["type"] == "resumed"
        resumed = [receive(ws, "change") for _ in range(2)]
    assert [c["version"] for c in resumed] == [1, 2]
    assert resumed[1]["profile"]["communication_needs"] == ["large-print"]


async def test_an_erasure_is_never_lost_to_an_overflowing_queue() -> None:
    subscription = Subscription("C-Q", queue_size=2)
    subscription.offer(ERASED)
    for _ in range(5):  # overflow: the queue is emptied and asks for a re-sync
        subscription.offer(Resync("overflow"))
    assert await subscription.get(0.1) is ERASED


async def test_a_queued_item_is_returned_even_with_no_time_to_wait() -> None:
    subscription = Subscription("C-Q", queue_size=2)
    assert await subscription.get(0) is None
    subscription.offer(Resync("overflow"))
    assert await subscription.get(0) == Resync("overflow")
    assert await subscription.get(0) is None


async def test_access_ended_is_never_lost_to_an_overflowing_queue() -> None:
    subscription = Subscription("C-Q", queue_size=2)
    subscription.offer(AccessEnded(4410, "enquiry ended"))
    for _ in range(5):
        subscription.offer(Resync("overflow"))
    assert await subscription.get(0) == AccessEnded(4410, "enquiry ended")


@pytest.mark.parametrize("ending", [ERASED, AccessEnded(4403, "access revoked")])
async def test_an_erasure_or_a_lapse_is_not_replaced_by_a_reconnect(ending: Erased | AccessEnded) -> None:
    """A shutdown's or the lifetime's "reconnect" arriving after it would bring the client back."""
    subscription = Subscription("C-Q", queue_size=2)
    subscription.offer(ending)
    subscription.offer(SHUTTING_DOWN)
    subscription.offer(LIFETIME_OVER)
    assert await subscription.get(0) == ending
    later = Subscription("C-Q", queue_size=2)
    later.offer(LIFETIME_OVER)
    later.offer(ending)
    assert await later.get(0) == ending
