"""Streams across real API processes: a replica killed, a rolling restart, Redis restarted, a slow client."""

import json
import signal
from typing import Any

import httpx
import pytest
import redis
import websockets.sync.client as ws_client
from websockets.exceptions import ConnectionClosed

from context.settings import RedisSettings, TimelineSettings, redis_client_options
from context.store import ProjectionWriter
from ops.servers import RedisServer
from tests import access
from tests.conftest import Stack, free_port, wait_until
from tests.factories import make_event, next_message, writes_for


def ws_url(port: int, citizen: str, query: str = "") -> str:
    return f"ws://127.0.0.1:{port}/v1/citizens/{citizen}/stream{query}"


def writer_for(stack: Stack, url: str | None = None) -> ProjectionWriter:
    settings = RedisSettings(key_prefix=stack.env["CITIZEN_CONTEXT_REDIS_KEY_PREFIX"])
    client = redis.Redis.from_url(url or str(settings.url), **redis_client_options())
    return ProjectionWriter(client, prefix=settings.key_prefix, timeline=TimelineSettings())


def test_clients_of_a_killed_replica_resume_on_another_with_no_gap(stack: Stack) -> None:
    first = stack.api()
    other_port = free_port()
    stack.api(other_port)
    writer = writer_for(stack)
    writer.apply_batch(writes_for(*(make_event("C-R1", minutes_ago=60 - n) for n in range(3))))
    received: list[dict[str, Any]] = []
    with ws_client.connect(
        additional_headers=access.supervisor(), uri=ws_url(stack.api_port, "C-R1"), open_timeout=5
    ) as websocket:
        snapshot = next_message(websocket, "snapshot")["context"]
        writer.apply_batch(writes_for(make_event("C-R1", minutes_ago=30)))
        received.append(next_message(websocket, "change"))
        first.stop(kill=True)
        # While the client is disconnected, more changes land.
        missed = [make_event("C-R1", minutes_ago=20 - n) for n in range(3)]
        writer.apply_batch(writes_for(*missed))
    epoch, version = snapshot["epoch"], received[-1]["version"]
    with ws_client.connect(
        additional_headers=access.supervisor(),
        uri=ws_url(other_port, "C-R1", f"?epoch={epoch}&version={version}"),
        open_timeout=5,
    ) as ws:
        assert next_message(ws, "resumed", "snapshot")["type"] == "resumed"
        received += [next_message(ws, "change") for _ in missed]
    versions = [message["version"] for message in received]
    assert versions == list(range(snapshot["version"] + 1, snapshot["version"] + 5))
    assert [m["event"]["id"] for m in received[1:]] == [e.id for e in missed]


def test_a_rolling_restart_tells_streams_to_reconnect(stack: Stack) -> None:
    api = stack.api()
    writer = writer_for(stack)
    writer.apply_batch(writes_for(make_event("C-R2")))
    with ws_client.connect(
        additional_headers=access.supervisor(), uri=ws_url(stack.api_port, "C-R2"), open_timeout=5
    ) as websocket:
        snapshot = next_message(websocket, "snapshot")["context"]
        assert api.process is not None
        api.process.send_signal(signal.SIGTERM)
        reconnect = next_message(websocket, "reconnect")
        try:
            websocket.recv(timeout=10)
            closed_with = None
        except ConnectionClosed as closed:
            closed_with = closed.rcvd.code if closed.rcvd else None
    assert reconnect == {"type": "reconnect", "reason": "shutdown", "epoch": snapshot["epoch"], "version": 1}
    assert closed_with == 1012
    # Uvicorn re-raises the signal once it has shut down gracefully, so the exit is "by SIGTERM".
    assert api.process.wait(timeout=30) in {0, -signal.SIGTERM}


def test_streams_recover_by_themselves_after_redis_restarts(stack: Stack, own_redis: RedisServer) -> None:
    url = f"redis://127.0.0.1:{own_redis.port}/0"
    stack.env["CITIZEN_CONTEXT_REDIS_URL"] = url
    stack.env["CITIZEN_CONTEXT_API_STREAM_HEARTBEAT_S"] = "0.5"
    stack.api()
    writer = writer_for(stack, url)
    writer.apply_batch(writes_for(make_event("C-R3", minutes_ago=5)))
    with ws_client.connect(
        additional_headers=access.supervisor(), uri=ws_url(stack.api_port, "C-R3"), open_timeout=5
    ) as websocket:
        next_message(websocket, "snapshot")
        own_redis.down()
        # Heartbeats say that live updates are paused (one sent just before the loss may still say live).
        while next_message(websocket, "heartbeat", timeout=20)["live"]:
            pass
        own_redis.up()
        # The stream is not left silent: it re-syncs from a snapshot once the subscription is back.
        resync = next_message(websocket, "snapshot", timeout=20)
        assert resync["context"]["version"] == 1
        late = make_event("C-R3", minutes_ago=1)
        writer.apply_batch(writes_for(late))
        change = next_message(websocket, "change")
    assert (change["version"], change["event"]["id"]) == (2, late.id)


def test_a_slow_client_is_resynced_and_memory_stays_bounded(stack: Stack) -> None:
    stack.env["CITIZEN_CONTEXT_API_STREAM_QUEUE_SIZE"] = "8"
    stack.api()
    writer = writer_for(stack)
    bulky = {
        "channel": "phone",
        "summary": "A long call",
        "call_id": "CALL-X",
        "duration_s": 1,
        "note": "x" * 4000,
    }
    # max_queue=1: the client library reads no further ahead than one message, so TCP pushes back.
    with ws_client.connect(
        additional_headers=access.supervisor(),
        uri=ws_url(stack.api_port, "C-R4"),
        open_timeout=5,
        max_queue=1,
    ) as websocket:
        next_message(websocket, "snapshot")
        total = 0
        for start in range(0, 6000, 500):
            events = [
                make_event("C-R4", minutes_ago=0.001 * (6000 - n), data=bulky)
                for n in range(start, start + 500)
            ]
            total += sum(r.applied for r in writer.apply_batch(writes_for(*events)))
        metrics = f"{stack.api_url}/metrics"
        wait_until(
            lambda: 'citizen_context_api_stream_resyncs_total{reason="overflow"}' in httpx.get(metrics).text,
            what="the overflow re-sync",
        )
        last_version = 0
        saw_resync = False
        while last_version < total:
            message = json.loads(websocket.recv(timeout=20))
            if message["type"] == "snapshot":
                saw_resync = True
                last_version = message["context"]["version"]
            elif message["type"] == "change":
                assert message["version"] == last_version + 1
                last_version = message["version"]
    assert saw_resync
    assert last_version == total


def test_a_client_message_over_the_body_limit_closes_its_stream(stack: Stack) -> None:
    stack.api()
    writer_for(stack).apply_batch(writes_for(make_event("C-BIG", minutes_ago=5)))
    with ws_client.connect(
        additional_headers=access.supervisor(), uri=ws_url(stack.api_port, "C-BIG"), open_timeout=5
    ) as websocket:
        next_message(websocket, "snapshot")
        websocket.send("x" * 100_000)  # the stream reads nothing its client sends; 64 KiB is the limit
        with pytest.raises(ConnectionClosed) as closed:
            _read_until_closed(websocket)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009  # message too big


def _read_until_closed(websocket: ws_client.ClientConnection) -> None:
    while True:
        websocket.recv(timeout=10)


def test_each_replica_says_where_it_listens(stack: Stack) -> None:
    other_port = free_port()
    for port, replica in ((stack.api_port, stack.api()), (other_port, stack.api(other_port))):
        started = next(line for line in replica.log().splitlines() if "api started" in line)
        assert f"listening='http://127.0.0.1:{port}'" in started
