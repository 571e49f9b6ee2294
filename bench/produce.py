"""Producers of the bench's load (run in worker processes): a whole topic at once, or a steady rate."""

import json
import random
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from kafka import KafkaProducer

from bench.workload import Workload, event_document, events, per_citizen, stamped_id, warm_up_id
from models.events import STRUCTURED_CONTENT_TYPE
from ops.servers import ensure_command

HEADERS = [("content-type", STRUCTURED_CONTENT_TYPE.encode())]


@dataclass(frozen=True)
class Produced:
    """What a producer sent."""

    count: int
    json_bytes: int
    seconds: float


def _producer(bootstrap: list[str], *, linger_ms: int) -> KafkaProducer:
    # As the project's own producer (events.producer): acknowledged by all in-sync replicas, idempotent.
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        batch_size=256 * 1024,
        client_id="citizen-context-bench",
    )


def produce_topic(
    bootstrap: list[str], topic: str, workload: Workload, count: int, per: int | None = None
) -> Produced:
    """Fill `topic` with `count` events (or `per` events for every citizen); returns once all are acked."""
    producer = _producer(bootstrap, linger_ms=20)
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


# librdkafka (through Debian's kcat) sends the paced load. The bench's freshness runs showed kafka-python's
# producer taking 0.51 to 0.69 of a core for 1,000 sends a second, one request each, on the two cores the
# measured path shares (README, Benchmarks); a publishing service runs on a machine of its own.
KCAT = ("kcat", "kcat")  # the command, and the Debian package that has it
# kcat connects and reads the topic's metadata as it starts; the first timed send waits this long for it.
KCAT_CONNECT_S = 1.0


def kcat_producer(bootstrap: list[str], topic: str) -> "subprocess.Popen[bytes]":
    """A kcat process sending each `key<TAB>value` line of its input as one record, at once.

    As the project's own producer (events.producer): acknowledged by all in-sync replicas, idempotent;
    sent as soon as written (librdkafka waits 5 ms for company by default), partitioned by key as the Java
    and kafka-python clients do.
    """
    command = ensure_command(*KCAT)
    return subprocess.Popen(
        [
            command,
            "-P",
            "-b",
            ",".join(bootstrap),
            "-t",
            topic,
            "-K",
            "\t",
            "-H",
            f"content-type={STRUCTURED_CONTENT_TYPE}",
            "-X",
            "acks=all",
            "-X",
            "enable.idempotence=true",
            "-X",
            "linger.ms=0",
            "-X",
            "topic.partitioner=murmur2_random",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def produce_paced(
    bootstrap: list[str],
    topic: str,
    citizens: list[int],
    rate_per_s: float,
    duration_s: float,
    seed: int,
    warm_up_s: float = 0.0,
) -> Produced:
    """Send `rate_per_s` events for `warm_up_s` and then `duration_s` seconds, open loop, to citizens drawn
    from `citizens`.

    Each event's id carries the wall-clock time of its send (see workload.stamped_id), except those of the
    warm-up, which are not timed (workload.warm_up_id). Sends go out as they are made (linger 0), as a
    publisher that cares about freshness would configure its producer; the send is the write to kcat.
    Returns once every event is acknowledged (what it returns counts the warm-up's sends too).
    """
    rng = random.Random(seed)  # noqa: S311 (test data, not crypto)
    warm_up = int(rate_per_s * warm_up_s)
    total = warm_up + int(rate_per_s * duration_s)
    size = 0
    producer = kcat_producer(bootstrap, topic)
    lines = producer.stdin
    if lines is None:  # never: it was started with stdin=PIPE
        raise RuntimeError("kcat has no input to write to")
    try:
        time.sleep(KCAT_CONNECT_S)
        started = time.perf_counter()
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
            # Compact JSON escapes every tab and line break inside its strings: one line, one record.
            value = json.dumps(document, separators=(",", ":")).encode()
            size += len(value)
            lines.write(document["subject"].encode() + b"\t" + value + b"\n")
            lines.flush()
        # The end of its input: kcat sends what it holds, waits for every acknowledgement, and exits.
        _, errors = producer.communicate(timeout=60)
    except (BrokenPipeError, subprocess.TimeoutExpired) as error:
        producer.kill()
        _, errors = producer.communicate()
        raise RuntimeError(f"kcat stopped sending: {errors.decode(errors='replace')[-1000:]}") from error
    if producer.returncode != 0:
        raise RuntimeError(f"kcat failed ({producer.returncode}): {errors.decode(errors='replace')[-1000:]}")
    return Produced(count=total, json_bytes=size, seconds=time.perf_counter() - started)
