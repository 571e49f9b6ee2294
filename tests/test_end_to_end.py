"""The thin slice through real processes: Kafka -> consumer process -> Redis -> REST and WebSocket."""

import threading
import time
from typing import Any, cast

import confluent_kafka
import httpx
import pytest
import websockets.sync.client as ws_client
from kafka import KafkaProducer

from events.deadletter import read_dead_letters
from events.producer import publish
from events.settings import KafkaSettings
from models.events import CloudEvent
from tests import access
from tests.conftest import Stack, wait_until
from tests.factories import make_event, next_message


def context_of(stack: Stack, citizen_id: str) -> dict[str, object]:
    response = httpx.get(
        f"{stack.api_url}/v1/citizens/{citizen_id}/context", headers=access.supervisor(), params={}, timeout=5
    )
    assert response.status_code == 200
    body: dict[str, object] = response.json()
    return body


def version_of(stack: Stack, citizen_id: str) -> int:
    version = context_of(stack, citizen_id)["version"]
    assert isinstance(version, int)
    return version


def test_an_event_travels_from_kafka_to_rest_and_a_live_stream(
    stack: Stack, producer: KafkaProducer, kafka_topic: str
) -> None:
    stack.consumer()
    stack.api()
    citizen = "C-E2E-1"
    url = stack.api_url.replace("http", "ws", 1) + f"/v1/citizens/{citizen}/stream"
    with ws_client.connect(additional_headers=access.supervisor(), uri=url, open_timeout=5) as websocket:
        snapshot = next_message(websocket, "snapshot")
        assert snapshot["type"] == "snapshot"
        assert snapshot["context"]["version"] == 0

        events = [make_event(citizen, minutes_ago=m) for m in (3, 2, 1)]
        for event in events:
            publish(producer, kafka_topic, event)
        producer.flush(timeout=10)

        changes = [next_message(websocket, "change") for _ in events]
    assert [change["version"] for change in changes] == [1, 2, 3]
    assert [change["event"]["id"] for change in changes] == [event.id for event in events]

    context = context_of(stack, citizen)
    assert context["version"] == 3
    assert [event["id"] for event in context["timeline"]] == [e.id for e in reversed(events)]  # type: ignore[attr-defined]


def publish_steadily(
    producer: KafkaProducer, topic: str, events: list[CloudEvent], done: threading.Event, per_second: float
) -> None:
    for event in events:
        publish(producer, topic, event)
        time.sleep(1 / per_second)
    producer.flush(timeout=30)
    done.set()


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_restarting_the_consumer_mid_stream_loses_and_duplicates_nothing(
    stack: Stack, producer: KafkaProducer, kafka_topic: str, kill: bool
) -> None:
    citizens = [f"C-R-{n}" for n in range(8)]
    events = [make_event(citizens[n % len(citizens)], minutes_ago=(400 - n) / 10) for n in range(400)]
    # Every event is published twice, as a retrying publisher would: the timeline must hold it once.
    events += events[::7]
    done = threading.Event()
    consumer = stack.consumer()
    stack.api()
    publisher = threading.Thread(
        target=publish_steadily, args=(producer, kafka_topic, events, done, 400.0), daemon=True
    )
    publisher.start()
    wait_until(lambda: sum(version_of(stack, c) for c in citizens) > 50, what="first events applied")
    exit_code = consumer.stop(kill=kill)
    if not kill:
        # SIGTERM: the batch in hand is finished and committed, then the process exits cleanly.
        assert exit_code == 0
        assert "consumer stopped" in consumer.log()
    applied_while_down = sum(version_of(stack, c) for c in citizens)
    stack.consumer()
    publisher.join(timeout=60)
    assert done.is_set()
    unique = {event.dedup_key for event in events}
    wait_until(lambda: sum(version_of(stack, c) for c in citizens) == len(unique), what="every event applied")
    assert applied_while_down < len(unique), "the restart did not happen mid-stream"
    for citizen in citizens:
        expected = sorted(
            (e for e in {e.dedup_key: e for e in events}.values() if e.subject == citizen),
            key=lambda e: e.time,
            reverse=True,
        )
        timeline = httpx.get(
            f"{stack.api_url}/v1/citizens/{citizen}/context", headers=access.supervisor(), timeout=5
        ).json()
        assert timeline["version"] == len(expected)
        assert [e["id"] for e in timeline["timeline"]] == [e.id for e in expected][:50]


def test_garbage_on_the_topic_does_not_stop_the_consumer(
    stack: Stack, producer: KafkaProducer, kafka_topic: str
) -> None:
    consumer = stack.consumer()
    stack.api()
    # A header without a value (Kafka allows it; kafka-python's producer does not send one) goes on to the
    # dead letter with an empty one.
    librdkafka = confluent_kafka.Producer({"bootstrap.servers": KafkaSettings().bootstrap_servers})
    librdkafka.produce(kafka_topic, key=b"C-G-1", value=b"\x00\xffnot an event", headers=[("trace", None)])
    assert librdkafka.flush(10) == 0
    producer.send(kafka_topic, key=b"C-G-1", value=b'{"specversion": "1.0", "id": "x"}')
    producer.send(kafka_topic, key=b"C-G-1", value=None)
    good = make_event("C-G-1")
    publish(producer, kafka_topic, good)
    producer.flush(timeout=10)
    wait_until(lambda: version_of(stack, "C-G-1") == 1, what="the valid event applied")

    def readiness() -> dict[str, Any]:
        answer = httpx.get(f"http://127.0.0.1:{stack.health_port}/readyz", timeout=5)
        return cast(dict[str, Any], answer.json())

    # The dead letters are published once Redis has applied the batch: a moment after the event shows.
    wait_until(lambda: readiness()["events_invalid"] == 3, what="three records dead-lettered")
    assert consumer.alive
    assert readiness()["status"] == "ready"
    log = consumer.log()
    assert log.count("record dead-lettered") == 3
    letters = list(read_dead_letters(KafkaSettings().bootstrap_list, kafka_topic))
    assert sorted(letter.reason for letter in letters) == ["empty", "invalid", "not-json"]
    assert sorted(letter.record.value or b"" for letter in letters) == sorted(
        [b"", b'{"specversion": "1.0", "id": "x"}', b"\x00\xffnot an event"]
    )
    (garbage,) = [letter for letter in letters if letter.reason == "not-json"]
    assert garbage.original_headers == [("trace", b"")]
