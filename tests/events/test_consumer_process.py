"""The consumer process through the real servers: dead letters, redrive, kcat, Redis restarts, rebuild."""

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import websockets.sync.client as ws_client
from kafka import KafkaProducer

from context.keys import generation_pattern
from events.deadletter import dead_letter_topic, read_dead_letters
from events.producer import create_producer, publish
from events.settings import KafkaSettings
from events.topics import admin_client
from models.taxonomy import ERASURE_TYPE
from ops.servers import KafkaServer, RedisServer
from ops.settings import ServicesSettings
from tests import access
from tests.conftest import Process, Stack, free_port, wait_until
from tests.factories import example_data, make_event, next_message

BOOTSTRAP = KafkaSettings().bootstrap_list


def context(stack: Stack, citizen: str) -> dict[str, Any]:
    response = httpx.get(
        f"{stack.api_url}/v1/citizens/{citizen}/context", headers=access.supervisor(), timeout=5
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def version(stack: Stack, citizen: str) -> int:
    """The citizen's version, or -1 while the API cannot answer (during a Redis restart)."""
    response = httpx.get(
        f"{stack.api_url}/v1/citizens/{citizen}/context", headers=access.supervisor(), timeout=5
    )
    return int(response.json()["version"]) if response.status_code == 200 else -1


def cli(stack: Stack, *args: str) -> str:
    return stack.cli(*args)


VALID: dict[str, Any] = {
    "specversion": "1.0",
    "source": "/tests",
    "type": "call.ended",
    "subject": "C-DLQ",
    "time": "2026-11-27T09:15:00Z",
    "data": example_data("call.ended"),
}


def bad_records() -> dict[str, tuple[bytes | None, list[tuple[str, bytes]]]]:
    """One record for each reason a record is dead-lettered, by reason."""

    def structured(**changes: Any) -> bytes:
        return json.dumps({**VALID, "id": str(uuid.uuid4()), **changes}).encode()

    binary_headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"b-1"),
        ("ce_source", b"/tests"),
        ("ce_type", b"call.ended"),
        ("ce_subject", b"C-DLQ"),
        ("ce_time", b"2026-11-27T09:15:00Z"),
    ]
    return {
        "empty": (None, []),
        "not-json": (b"\x00\xff", []),
        "not-an-object": (b"[1, 2]", []),
        "bad-header": (b"{}", [*binary_headers[:-1], ("ce_time", b"\xff\xfe")]),
        "bad-data": (b"\xff\xfe", [*binary_headers, ("content-type", b"text/plain")]),
        "invalid": (structured(time="last tuesday"), []),
        "reserved": (structured(type=ERASURE_TYPE, data={"channel": "system", "summary": "Erased."}), []),
        "invalid-data": (structured(data={"channel": "phone", "summary": "no call id"}), []),
        "no-citizen": (structured(subject=None), []),
        "invalid-identifier": (structured(subject=None, citizenemail="not-an-email"), []),
        "unresolved-identity": (structured(subject=None, citizenphone="07700 900777"), []),
    }


def test_every_unusable_record_is_dead_lettered_with_its_reason_and_can_be_redriven(
    stack: Stack, producer: KafkaProducer, kafka_topic: str
) -> None:
    consumer = stack.consumer()
    stack.api()
    records = bad_records()
    for value, headers in records.values():
        producer.send(kafka_topic, key=b"k", value=value, headers=headers)
    producer.flush(timeout=10)
    wait_until(
        lambda: len(list(read_dead_letters(BOOTSTRAP, kafka_topic))) == len(records), what="every dead letter"
    )
    assert consumer.alive
    letters = {letter.reason: letter for letter in read_dead_letters(BOOTSTRAP, kafka_topic)}
    assert set(letters) == set(records)
    for reason, (value, headers) in records.items():
        letter = letters[reason]
        assert letter.record.value == value, reason
        assert letter.original_headers == headers, reason
        assert letter.record.topic == kafka_topic
        assert letter.record.offset >= 0
        assert letter.dead_lettered_at
        assert letter.detail

    listing = cli(stack, "dlq", "list")
    assert f"{len(records)} records" in listing
    assert all(reason in listing for reason in records)
    assert "07700" not in listing  # positions and reasons only, never the content
    # Only what a plain `dlq redrive` sends is pending: the records' own faults were listed as pending too.
    states = {line.split()[5].rstrip(":"): line.split()[2] for line in listing.splitlines()[:-1]}
    assert states == {reason: "held" for reason in records} | {"unresolved-identity": "pending"}
    assert f", 1 pending, {len(records) - 1} held (their own faults" in listing

    # The phone number becomes known; redriving the unresolved event now lands it in the timeline.
    teacher = make_event(
        "C-DLQ", type_="profile.updated", data=example_data("profile.updated", phone="07700900777")
    )
    publish(producer, kafka_topic, teacher)
    producer.flush(timeout=10)
    wait_until(lambda: context(stack, "C-DLQ")["version"] == 1, what="the profile update applied")
    assert "redrove 1 record" in cli(stack, "dlq", "redrive", "--reason", "unresolved-identity")
    wait_until(lambda: context(stack, "C-DLQ")["version"] == 2, what="the redriven event applied")
    # By default only what a retry can mend is redriven: the others would only come back, run after run.
    assert "redrove 0 records" in cli(stack, "dlq", "redrive")
    assert json.loads(records["unresolved-identity"][0] or b"")["id"] in {
        e["id"] for e in context(stack, "C-DLQ")["timeline"]
    }
    metrics = httpx.get(f"http://127.0.0.1:{stack.health_port}/metrics", timeout=5).text
    assert 'citizen_context_events_dead_lettered_total{reason="unresolved-identity"} 1.0' in metrics
    assert "citizen_context_events_applied_total 2.0" in metrics
    assert f'topic="{kafka_topic}"}}' in metrics.split("citizen_context_consumer_lag{", 1)[1]
    assert "citizen_context_batch_seconds_count" in metrics


def kcat_publish(topic: str, value: str, headers: list[str]) -> None:
    """Publish one record keyed C-KCAT with Debian's kcat, another Kafka client than the project's."""
    options = [option for header in headers for option in ("-H", header)]
    subprocess.run(
        ["kcat", "-P", "-b", BOOTSTRAP[0], "-t", topic, "-k", "C-KCAT", *options],
        input=value.encode(),
        check=True,
        timeout=30,
    )


def test_kcat_publishes_in_both_modes(stack: Stack, kafka_topic: str) -> None:
    stack.consumer()
    stack.api()
    structured = json.dumps({**VALID, "id": "kcat-structured", "subject": "C-KCAT"})
    kcat_publish(kafka_topic, structured, ["content-type=application/cloudevents+json"])
    data = json.dumps(example_data("chat.message"))
    binary_headers = [
        "ce_specversion=1.0",
        "ce_id=kcat-binary",
        "ce_source=/webchat",
        "ce_type=chat.message",
        "ce_subject=C-KCAT",
        "ce_time=2026-11-27T10:00:00+01:00",
        "content-type=application/json",
    ]
    kcat_publish(kafka_topic, data, binary_headers)
    wait_until(lambda: context(stack, "C-KCAT")["version"] == 2, what="both kcat events applied")
    timeline = context(stack, "C-KCAT")["timeline"]
    assert [e["id"] for e in timeline] == ["kcat-structured", "kcat-binary"]
    assert timeline[1]["data"] == json.loads(data)


def test_redis_restarted_mid_stream_loses_and_duplicates_nothing(
    stack: Stack, producer: KafkaProducer, kafka_topic: str, own_redis: RedisServer
) -> None:
    stack.env["CITIZEN_CONTEXT_REDIS_URL"] = f"redis://127.0.0.1:{own_redis.port}/0"
    stack.consumer()
    stack.api()
    citizens = [f"C-RR-{n}" for n in range(4)]
    first = [make_event(citizens[n % 4], minutes_ago=300 - n) for n in range(100)]
    for event in first:
        publish(producer, kafka_topic, event)
    producer.flush(timeout=10)
    wait_until(
        lambda: sum(context(stack, c)["version"] for c in citizens) == 100, what="first events applied"
    )

    own_redis.down()
    health = f"http://127.0.0.1:{stack.health_port}/readyz"
    second = [make_event(citizens[n % 4], minutes_ago=200 - n) for n in range(100)]
    for event in second + first[:10]:  # with redeliveries of already-applied events
        publish(producer, kafka_topic, event)
    producer.flush(timeout=10)
    wait_until(lambda: httpx.get(health, timeout=5).status_code == 503, what="consumer reports Redis down")
    assert httpx.get(f"{stack.api_url}/readyz", timeout=5).status_code == 503

    own_redis.up()
    wait_until(lambda: httpx.get(health, timeout=5).status_code == 200, what="consumer recovers by itself")
    wait_until(
        lambda: sum(context(stack, c)["version"] for c in citizens) == 200, what="second events applied"
    )
    for citizen in citizens:
        body = httpx.get(
            f"{stack.api_url}/v1/citizens/{citizen}/context", headers=access.supervisor(), timeout=5
        ).json()
        ids = [e["id"] for e in body["timeline"]]
        assert len(ids) == len(set(ids)) == 50
        assert body["version"] == 50


def test_rebuild_equals_live_and_streams_move_to_the_new_epoch(
    stack: Stack, producer: KafkaProducer, kafka_topic: str, redis_client: "redis.Redis", key_prefix: str
) -> None:
    stack.consumer()
    stack.api()
    citizens = [f"C-RB-{n}" for n in range(5)]
    profiles = [
        make_event(
            citizen,
            type_="profile.updated",
            minutes_ago=600,
            data=example_data("profile.updated", phone=f"07700 90010{n}", email=None),
        )
        for n, citizen in enumerate(citizens)
    ]
    events = [
        make_event(citizen, type_=t, minutes_ago=500 - 10 * i, data=example_data(t))
        for citizen in citizens
        for i, t in enumerate(["call.started", "case.opened", "payment.failed", "chat.message"])
    ]
    # Callers known only by the phone number their profile taught (published once the profiles are in).
    callers = [
        make_event(citizen, minutes_ago=5).model_copy(
            update={"subject": None, "citizenphone": f"+447700 90010{n}"}
        )
        for n, citizen in enumerate(citizens)
    ]
    for event in profiles + events + events[:7]:
        publish(producer, kafka_topic, event)
    producer.flush(timeout=10)
    expected = len(profiles) + len(events)
    wait_until(lambda: sum(context(stack, c)["version"] for c in citizens) == expected, what="live applied")
    for event in callers:
        publish(producer, kafka_topic, event)
    producer.flush(timeout=10)
    expected += len(callers)
    wait_until(
        lambda: sum(context(stack, c)["version"] for c in citizens) == expected, what="callers applied"
    )
    live = {c: context(stack, c) for c in citizens}
    old_epoch = live[citizens[0]]["epoch"]

    url = stack.api_url.replace("http", "ws", 1) + f"/v1/citizens/{citizens[0]}/stream"
    with ws_client.connect(additional_headers=access.supervisor(), uri=url, open_timeout=5) as websocket:
        assert next_message(websocket, "snapshot")["context"]["epoch"] == old_epoch
        output = cli(stack, "rebuild", "--grace", "0")
        assert f"{len(profiles) + len(events) + 7 + len(callers)} records replayed" in output
        resync = next_message(websocket, "snapshot", "change")
    assert resync["type"] == "snapshot"
    new_epoch = resync["context"]["epoch"]
    assert new_epoch != old_epoch

    for citizen in citizens:
        rebuilt = context(stack, citizen)
        assert rebuilt["epoch"] == new_epoch
        for part in ("timeline", "profile", "summary"):
            assert rebuilt[part] == live[citizen][part], (citizen, part)
    assert list(redis_client.scan_iter(match=generation_pattern(key_prefix, old_epoch))) == []

    # The live consumer now writes to the new generation.
    late = make_event(citizens[0], minutes_ago=1)
    publish(producer, kafka_topic, late)
    producer.flush(timeout=10)
    wait_until(lambda: context(stack, citizens[0])["timeline"][0]["id"] == late.id, what="live after rebuild")


def test_a_record_redriven_and_dead_lettered_again_is_known_for_it(
    stack: Stack, producer: KafkaProducer, kafka_topic: str
) -> None:
    # A redrive whose cause was not mended made new letters each run, without a word.
    stack.consumer()
    value, headers = bad_records()["unresolved-identity"]
    producer.send(kafka_topic, key=b"k", value=value, headers=headers).get(timeout=10)

    def letters() -> int:
        return len(list(read_dead_letters(BOOTSTRAP, kafka_topic)))

    wait_until(lambda: letters() == 1, what="the dead letter")
    first = cli(stack, "dlq", "redrive")
    assert "redrove 1 record" in first
    assert "redriven again" not in first
    assert "warning" not in first
    wait_until(lambda: letters() == 2, what="the letter back")

    listing = cli(stack, "dlq", "list").splitlines()
    assert "(back after" not in listing[0]
    assert listing[1].endswith("(back after 1 redrive)")
    second = cli(stack, "dlq", "redrive")
    assert "redriven again: " in second
    assert "(unresolved-identity): back after 1 redrive\n" in second
    assert "warning: 1 of them came back after an earlier redrive" in second
    wait_until(lambda: letters() == 3, what="the letter back again")
    listing = cli(stack, "dlq", "list").splitlines()
    # The earlier letter still shows what it came back after: its landing was not replaced by the next.
    assert listing[1].endswith("(back after 1 redrive)")
    assert listing[2].endswith("(back after 2 redrives)")


def test_a_record_at_the_brokers_size_limit_is_still_dead_lettered(stack: Stack, kafka_topic: str) -> None:
    consumer = stack.consumer()
    # Just under the broker's default 1 MiB limit: with the dead-letter headers added it is over it.
    big_producer = create_producer(BOOTSTRAP, max_request_size=2 * 1024 * 1024)
    try:
        big_producer.send(kafka_topic, key=b"k", value=b"x" * 1_048_400).get(timeout=30)
    finally:
        big_producer.close()
    wait_until(lambda: len(list(read_dead_letters(BOOTSTRAP, kafka_topic))) == 1, what="the big dead letter")
    [letter] = read_dead_letters(BOOTSTRAP, kafka_topic)
    assert letter.reason == "not-json"
    assert len(letter.record.value or b"") == 1_048_400
    assert consumer.alive


@pytest.fixture
def own_kafka(tmp_path: Path) -> Iterator[KafkaServer]:
    """A Kafka broker of this test's own, which the test may stop and start."""
    port, controller = free_port(), free_port()
    server = KafkaServer(
        ServicesSettings(data_dir=tmp_path / "own", kafka_controller_port=controller),
        KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}", topic="citizen.interactions"),
    )
    server.up()
    yield server
    server.down()


def test_kafka_stopped_and_restarted_does_not_stop_the_consumer(
    stack: Stack, own_kafka: KafkaServer, key_prefix: str
) -> None:
    bootstrap = [f"127.0.0.1:{own_kafka.port}"]
    stack.env["CITIZEN_CONTEXT_KAFKA_BOOTSTRAP_SERVERS"] = bootstrap[0]
    stack.env["CITIZEN_CONTEXT_KAFKA_TOPIC"] = "citizen.interactions"
    consumer = stack.consumer()
    stack.api()
    health = f"http://127.0.0.1:{stack.health_port}/readyz"

    def publish_all(events: list[Any]) -> None:
        own_producer = create_producer(bootstrap)
        try:
            for event in events:
                publish(own_producer, "citizen.interactions", event)
            own_producer.flush(timeout=30)
        finally:
            own_producer.close()

    publish_all([make_event("C-KR", minutes_ago=10)])
    wait_until(lambda: context(stack, "C-KR")["version"] == 1, what="first event applied")
    own_kafka.down()
    wait_until(lambda: httpx.get(health, timeout=5).status_code == 503, what="consumer reports Kafka down")
    assert consumer.alive
    own_kafka.up()
    wait_until(lambda: httpx.get(health, timeout=5).status_code == 200, what="consumer recovers by itself")
    publish_all([make_event("C-KR", minutes_ago=5)])
    wait_until(lambda: context(stack, "C-KR")["version"] == 2, what="consumption resumes", timeout_s=90)
    assert consumer.alive


def test_a_consumer_started_while_kafka_is_unreachable_waits_then_stops_cleanly(stack: Stack) -> None:
    nobody = f"127.0.0.1:{free_port()}"  # nothing listens there
    # And a variable misspelt, which the consumer names as it starts.
    misspelt = {"CITIZEN_CONTEXT_KAFKA_TOPICS": "x"}
    env = {**stack.env, "CITIZEN_CONTEXT_KAFKA_BOOTSTRAP_SERVERS": nobody, **misspelt}
    consumer = Process(["consume"], env, stack.tmp_path / "consumer.log").start()
    stack.processes.append(consumer)
    readyz = f"http://127.0.0.1:{stack.health_port}/readyz"

    def kafka_reported_unavailable() -> bool:
        try:
            answer = httpx.get(readyz, timeout=2)
        except httpx.HTTPError:
            return False  # not serving yet
        return answer.status_code == 503 and answer.json()["checks"]["kafka"] == "unavailable"

    wait_until(kafka_reported_unavailable, what="readiness saying Kafka is unavailable", process=consumer)
    assert consumer.alive
    # SIGTERM while waiting for Kafka: a clean exit. Sent twice, as `timeout` does (to the process, then
    # to its group): one stop, said once.
    consumer.process.terminate()  # type: ignore[union-attr]
    assert consumer.stop() == 0
    log = consumer.log()
    assert "kafka unreachable at start" in log
    warning = next(line for line in log.splitlines() if "CITIZEN_CONTEXT_KAFKA_TOPICS" in line)
    assert "no such setting (misspelt?): ignored" in warning
    assert log.count("stop requested") == 1
    assert log.count("consumer stopped") == 1
    assert "Traceback" not in log


def test_a_consumer_stopped_while_its_group_waits_for_a_crashed_member_leaves_within_seconds(
    stack: Stack,
) -> None:
    # The group's own session timeout (the settings' default), not the test stack's short one: the
    # coordinator then holds the group's rebalance for a crashed member long enough to hold a LeaveGroup.
    env = {name: value for name, value in stack.env.items() if "SESSION_TIMEOUT" not in name}
    crashed = Process(["consume"], env, stack.tmp_path / "crashed.log").start()
    stack.processes.append(crashed)
    wait_until(
        lambda: "consumer started" in crashed.log(), what="the first consumer started", process=crashed
    )
    time.sleep(5)  # long enough to join the group and take its partitions
    crashed.stop(kill=True)
    successor = Process(["consume"], env, stack.tmp_path / "successor.log").start()
    stack.processes.append(successor)
    wait_until(lambda: "consumer started" in successor.log(), what="its successor started", process=successor)
    time.sleep(3)  # asking to join, while the coordinator waits for the crashed member
    successor.process.terminate()  # type: ignore[union-attr]
    # Leaving the group waits 5 s at most: before, kafka-python's request timeout held the SIGTERM 30 s
    # (make run's Ctrl-C then waited as long).
    assert successor.process.wait(timeout=20) == 0  # type: ignore[union-attr]
    assert "consumer stopped" in successor.log()


def test_a_dead_letter_topic_deleted_while_the_consumer_runs_is_made_again(
    stack: Stack, producer: KafkaProducer, kafka_topic: str
) -> None:
    # Deleted to empty it, the topic was waited for as if Kafka were down, for ever: readiness said Kafka
    # was unavailable and every valid event queued behind the letter.
    consumer = stack.consumer()
    value, headers = bad_records()["not-json"]

    def letters() -> int:
        return len(list(read_dead_letters(BOOTSTRAP, kafka_topic)))

    producer.send(kafka_topic, key=b"k", value=value, headers=headers).get(timeout=10)
    wait_until(lambda: letters() == 1, what="the first letter")
    admin = admin_client(BOOTSTRAP)
    try:
        admin.delete_topics([dead_letter_topic(kafka_topic)])
        wait_until(lambda: dead_letter_topic(kafka_topic) not in admin.list_topics(), what="the topic gone")
    finally:
        admin.close()

    producer.send(kafka_topic, key=b"k", value=value, headers=headers).get(timeout=10)
    publish(producer, kafka_topic, make_event("C-AFTER"))
    producer.flush(timeout=10)
    wait_until(
        lambda: letters() >= 1, what="the letter in the topic made again", timeout_s=90, process=consumer
    )
    wait_until(lambda: stack.applied() == 1, what="the valid event after it applied")
    # The second record's letter; twice, should the send waited out have gone through once the topic was
    # back, as the retry did (README, Kafka topics).
    assert {letter.record.offset for letter in read_dead_letters(BOOTSTRAP, kafka_topic)} == {1}
    assert "dead-letter topic was missing: created it again" in consumer.log()
    assert consumer.alive
