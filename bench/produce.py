"""Producers of the bench's load (run in worker processes): a whole topic at once, or a steady rate."""

import json
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError
from confluent_kafka import Producer as ConfluentProducer
from kafka import KafkaProducer

from bench.workers import Event
from bench.workload import (
    READY_ID,
    Workload,
    event_document,
    events,
    per_citizen,
    stamped_id,
    warm_up_id,
)
from models.events import STRUCTURED_CONTENT_TYPE

HEADERS: list[tuple[str, str | bytes | None]] = [("content-type", STRUCTURED_CONTENT_TYPE.encode())]


@dataclass(frozen=True)
class Produced:
    """What a producer sent."""

    count: int
    json_bytes: int
    seconds: float


def _filling_producer(bootstrap: list[str]) -> KafkaProducer:
    # As the project's own producer (events.producer): acknowledged by all in-sync replicas, idempotent;
    # sends wait up to 20 ms for company, as only the topic's content is measured, not when it came.
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        batch_size=256 * 1024,
        client_id="citizen-context-bench",
    )


def produce_topic(
    bootstrap: list[str], topic: str, workload: Workload, count: int, per: int | None = None
) -> Produced:
    """Fill `topic` with `count` events (or `per` events for every citizen); returns once all are acked."""
    producer = _filling_producer(bootstrap)
    started = time.perf_counter()
    sent = size = 0
    try:
        source = per_citizen(workload, per) if per is not None else events(workload, count)
        for key, value in source:
            producer.send(topic, key=key.encode(), value=value, headers=HEADERS)
            sent += 1
            size += len(value)
        producer.flush(timeout=300)
    finally:
        producer.close(timeout=30)
    return Produced(count=sent, json_bytes=size, seconds=time.perf_counter() - started)


# librdkafka (confluent-kafka) sends the paced load. The bench's freshness runs showed kafka-python's
# producer taking 0.51 to 0.69 of a core for 1,000 sends a second, one request each, on the two cores the
# measured path shares (README, Benchmarks); a publishing service runs on a machine of its own.
def paced_producer(bootstrap: list[str]) -> ConfluentProducer:
    """A producer that sends each event at once (librdkafka waits 5 ms for company by default).

    As the project's own producer (events.producer): acknowledged by all in-sync replicas, idempotent,
    partitioned by key as the Java and kafka-python clients do.
    """
    return ConfluentProducer(
        {
            "bootstrap.servers": ",".join(bootstrap),
            "client.id": "citizen-context-bench",
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 0,
            "partitioner": "murmur2_random",
        }
    )


# How long the producer may take to connect and send its first event before the paced sends begin.
READY_TIMEOUT_S = 30.0


class _Deliveries:
    """librdkafka's delivery reports (its `on_delivery` callback): the errors among them."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def __call__(self, error: KafkaError | None, _message: object) -> None:
        if error is not None:
            self.failed.append(str(error))


def _send(producer: ConfluentProducer, topic: str, document: dict[str, Any], deliveries: _Deliveries) -> int:
    """Send one event, keyed by its citizen, as the project's own producer would; its JSON size."""
    value = json.dumps(document, separators=(",", ":")).encode()
    producer.produce(
        topic, key=document["subject"].encode(), value=value, headers=HEADERS, on_delivery=deliveries
    )
    return len(value)


def _ready_to_send(producer: ConfluentProducer, topic: str, citizen: int) -> int:
    """Connect, with the topic's metadata, and have one untimed event acknowledged, so that the paced sends
    go out at once. Connected alone, a fresh idempotent producer's first event waited about half a second
    to be acknowledged in about a third of trials (4 of 12: 499 to 502 ms, against under a millisecond),
    and every change sent meanwhile arrived that much later: the fan-out figure, which has no warm-up, had
    its p99 at 100 to 650 ms in those runs."""
    producer.list_topics(topic, timeout=READY_TIMEOUT_S)
    rng = random.Random(0)  # noqa: S311 (test data, not crypto)
    document = event_document(
        event_id=READY_ID, citizen=citizen, type_="call.ended", moment=datetime.now(UTC), rng=rng
    )
    deliveries = _Deliveries()
    size = _send(producer, topic, document, deliveries)
    if producer.flush(READY_TIMEOUT_S) or deliveries.failed:
        raise RuntimeError(
            f"the producer's first event was not acknowledged within {READY_TIMEOUT_S} s: "
            f"{deliveries.failed[:1]}"
        )
    return size


def produce_paced(
    bootstrap: list[str],
    topic: str,
    citizens: list[int],
    rate_per_s: float,
    duration_s: float,
    seed: int,
    warm_up_s: float = 0.0,
    timing: Event | None = None,
) -> Produced:
    """Send `rate_per_s` events for `warm_up_s` and then `duration_s` seconds, open loop, to citizens drawn
    from `citizens`.

    Each event's id carries the wall-clock time of its send (see workload.stamped_id), except those of the
    warm-up, which are not timed (workload.warm_up_id). Sends go out as they are made (linger 0), as a
    publisher that cares about freshness would configure its producer. `timing` is set as the sends begin
    (the warm-up's first). Returns once every event is acknowledged (what it returns counts the warm-up's
    sends too, and the one untimed event sent first to be ready).
    """
    rng = random.Random(seed)  # noqa: S311 (test data, not crypto)
    warm_up = int(rate_per_s * warm_up_s)
    total = warm_up + int(rate_per_s * duration_s)
    deliveries = _Deliveries()
    producer = paced_producer(bootstrap)
    size = _ready_to_send(producer, topic, citizens[0])
    started = time.perf_counter()
    if timing is not None:
        timing.set()
    for seq in range(total):
        due = started + seq / rate_per_s
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        citizen = rng.choice(citizens)
        type_ = rng.choice(("call.ended", "chat.message", "email.received", "case.updated"))
        sent_ns = time.time_ns()
        document = event_document(
            event_id=stamped_id(sent_ns, seq) if seq >= warm_up else warm_up_id(seq),
            citizen=citizen,
            type_=type_,
            moment=datetime.now(UTC),
            rng=rng,
        )
        size += _send(producer, topic, document, deliveries)
        producer.poll(0)  # delivery reports so far (no wait)
    unsent = producer.flush(60)
    if unsent or deliveries.failed:
        raise RuntimeError(
            f"{unsent} events unacknowledged, {len(deliveries.failed)} failed: {deliveries.failed[:3]}"
        )
    # The first, untimed event is counted, though sent before `started`.
    return Produced(count=total + 1, json_bytes=size, seconds=time.perf_counter() - started)
