"""`citizen-context consume`: one consumer process, from settings to a clean exit on SIGTERM."""

import os
import signal
import threading
from types import FrameType

import redis
import structlog
from kafka import KafkaConsumer
from kafka.errors import KafkaError

from context.settings import IdentitySettings, RedisSettings, TimelineSettings, redis_client_options
from context.store import ProjectionWriter
from events.consumer import ProjectionConsumer, create_consumer
from events.deadletter import DeadLetterPublisher
from events.health import ConsumerHealth, serve_health
from events.heap import prefer_prompt_switches, settle_heap
from events.producer import create_producer
from events.settings import ConsumerSettings, KafkaSettings
from events.signing import ErasureSigner, SigningSettings, signing_cautions
from events.topics import dead_letter_max_bytes, ensure_dead_letter_topic, ensure_topics, reachable

log = structlog.get_logger("consumer")

# How long the consumer waits, at most, between attempts to reach Kafka at start.
MAX_START_BACKOFF_S = 10.0
# The longest a stopping consumer waits to leave its group (see run_consumer's end).
LEAVE_GROUP_TIMEOUT_MS = 5_000


def run_consumer_process() -> None:
    """Run the consumer until SIGTERM or SIGINT, then finish the batch, commit and exit."""
    kafka = KafkaSettings()
    redis_settings = RedisSettings()
    consumer_settings = ConsumerSettings()
    signing = SigningSettings()  # before anything starts: a bad key is said now
    erasures = ErasureSigner.from_settings(signing)
    for caution in signing_cautions(signing, kafka_on_loopback=kafka.on_loopback):
        log.warning("erasure signing", caution=caution)
    stop = threading.Event()
    stop_on_signals(stop)

    health = ConsumerHealth()
    server = serve_health(health, host=consumer_settings.health_host, port=consumer_settings.health_port)
    redis_client = redis.Redis.from_url(str(redis_settings.url), **redis_client_options())
    clients = _connect_to_kafka(kafka, health, stop)
    try:
        if clients is None:
            return  # stopped before a broker answered
        consumer, producer = clients
        writer = ProjectionWriter(redis_client, prefix=redis_settings.key_prefix, timeline=TimelineSettings())
        # Readers never write; the first generation is named here, before anything is read or streamed.
        writer.current_epoch()
        settle_heap()
        prefer_prompt_switches()
        log.info(
            "consumer started",
            topic=kafka.topic,
            group=kafka.group_id,
            health=f"http://{consumer_settings.health_host}:{server.server_address[1]}/readyz",
        )
        ProjectionConsumer(
            consumer=consumer,
            writer=writer,
            dead_letters=producer,
            health=health,
            poll_timeout_ms=kafka.poll_timeout_ms,
            default_region=IdentitySettings().default_region,
            erasures=erasures,
            bootstrap=kafka.bootstrap_list,
        ).run(stop)
    finally:
        if clients is not None:
            # autocommit=False: only what run() committed after applying counts as consumed. Leaving the
            # group waits at most LEAVE_GROUP_TIMEOUT_MS: a coordinator busy with a rebalance (a crashed
            # predecessor's session still open) held a SIGTERM for the whole request timeout, 30 s; the
            # group then sees the departure when the session times out instead.
            clients[0].close(autocommit=False, timeout_ms=LEAVE_GROUP_TIMEOUT_MS)
            clients[1].close()
        redis_client.close()
        server.shutdown()
        log.info("consumer stopped", applied=health.applied, invalid=health.invalid)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_on_signals(stop: threading.Event) -> None:
    """Set `stop` on SIGTERM or SIGINT, and say so once, from a thread of its own (call it from the main
    thread: only there may Python's signal handling be set).

    A Python signal handler runs in the main thread between any two of its steps, even while that thread
    holds a lock: the stop event's own (held briefly around every `stop.wait`) or the logger's. A handler
    that set the event or logged would then wait for ever for a lock its own thread holds, and the process
    would hang on its first SIGTERM. So the handler does nothing: Python's C-level handler writes each
    signal's number to a pipe (`signal.set_wakeup_fd`), and the thread reading the pipe sets the event. Said
    once, as `timeout` and process managers may signal both the process and its group.
    """
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    for signum in STOP_SIGNALS:
        # Only a signal with a Python handler is written to the pipe; this one takes no lock.
        signal.signal(signum, _nothing)

    def watch() -> None:
        while received := os.read(read_end, 64):
            for signum in received:
                if signum in STOP_SIGNALS and not stop.is_set():
                    log.info("stop requested", signal=signal.Signals(signum).name)
                    stop.set()

    threading.Thread(target=watch, name="stop-signals", daemon=True).start()


def _nothing(_signum: int, _frame: FrameType | None) -> None:
    """A signal handler that does nothing (see `stop_on_signals`)."""


def _connect_to_kafka(
    kafka: KafkaSettings, health: ConsumerHealth, stop: threading.Event
) -> tuple[KafkaConsumer, DeadLetterPublisher] | None:
    """The topics ensured, the consumer and the dead-letter producer, once a broker answers; None if a stop
    came first. Meanwhile /readyz says Kafka is unavailable. A broker that does not even accept connections
    is probed (cheaply, and answering SIGTERM within a second) before kafka-python's clients are built:
    each of those waits out its whole bootstrap timeout first."""
    delay = 1.0
    while not stop.is_set():
        if any(reachable(server) for server in kafka.bootstrap_list):
            try:
                ensure_topics(kafka)
                consumer = create_consumer(kafka)
                try:
                    producer = dead_letter_publisher(kafka)
                except KafkaError:
                    consumer.close(autocommit=False, timeout_ms=LEAVE_GROUP_TIMEOUT_MS)
                    raise
                health.kafka_ok = True
                return consumer, producer
            except KafkaError as error:
                log.warning("kafka unavailable at start", error=type(error).__name__, retry_in_s=delay)
        else:
            log.warning("kafka unreachable at start", servers=kafka.bootstrap_servers, retry_in_s=delay)
        health.kafka_ok = False
        stop.wait(delay)
        delay = min(delay * 2, MAX_START_BACKOFF_S)
    return None


# How long a dead letter's send may wait for its topic's metadata or room in the buffer before it is retried
# (kafka-python's default is a minute): a SIGTERM waits for the send in hand.
DEAD_LETTER_MAX_BLOCK_MS = 10_000


def dead_letter_publisher(kafka: KafkaSettings) -> DeadLetterPublisher:
    """The dead-letter producer, each made with the dead-letter topic's limit as it stands then."""
    return DeadLetterPublisher(
        lambda: create_producer(
            kafka.bootstrap_list,
            max_request_size=dead_letter_max_bytes(kafka),
            max_block_ms=DEAD_LETTER_MAX_BLOCK_MS,
        ),
        # Only where a broker takes connections: with none, the topic cannot be told missing.
        restore_topic=lambda: any(map(reachable, kafka.bootstrap_list)) and ensure_dead_letter_topic(kafka),
    )
