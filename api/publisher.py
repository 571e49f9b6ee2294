"""Publishing events to Kafka from the API (REST ingestion, completed enquiries, erasures)."""

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import structlog
from anyio import CapacityLimiter, to_thread
from kafka import KafkaProducer
from kafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError
from kafka.record.default_records import DefaultRecordBatchBuilder

from events.codec import encode_structured
from events.producer import close_failed_producer, create_producer, partition_keys
from events.settings import KafkaSettings
from events.topics import reachable, topic_max_bytes
from models.events import CloudEvent

log = structlog.get_logger("publisher")

# The largest record the producer sends (its max_request_size). The broker's own limit (message.max.bytes,
# a few bytes over 1 MiB by default) is no smaller unless an operator lowered it.
MAX_RECORD_BYTES = 1_048_576
# A publish holds a thread until Kafka acknowledges, up to the timeout (10 s) while it does not. Publishes
# get threads of their own, at most this many, so an outage cannot take the worker threads that every other
# route needs (API keys, enquiries, the audit): the others wait their turn without holding a thread.
PUBLISH_THREADS = 8
# After Kafka failed to acknowledge, publishing is refused at once for this long (as long as the Retry-After
# the routes send), rather than every request waiting out the timeout again.
PAUSE_AFTER_FAILURE_S = 2.0

# How kafka-python reports a record (or a batch) larger than the producer or the broker takes.
TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError)


class PublishUnavailable(Exception):
    """Kafka did not acknowledge the events; nothing can be promised about them, so the caller retries."""


class EventsTooLarge(Exception):
    """Events Kafka will never take, however often they are sent: `reasons` says why, by position.

    `others_sent` is False when this was found before anything was sent (none of the events was published),
    True when Kafka itself refused them and the others may have been published.
    """

    def __init__(self, reasons: dict[int, str], *, others_sent: bool) -> None:
        super().__init__("; ".join(f"event {index}: {reason}" for index, reason in reasons.items()))
        self.reasons = reasons
        self.others_sent = others_sent


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """An event as its record goes to the topic."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    # As the producer reckons it against its max_request_size (record batch v2, every broker since 0.11).
    size: int


class PublishCircuit:
    """Whether to try Kafka at all, shared by every publish of a process (thread-safe).

    Closed, publishes run side by side. One that Kafka does not acknowledge opens it: publishes are refused at
    once for `pause_s`, then a single publish tries (the others are still refused meanwhile), and its outcome
    closes the circuit or opens it again. A few lines of state rather than a dependency.
    """

    def __init__(self, *, pause_s: float) -> None:
        self._pause_s = pause_s
        self._lock = threading.Lock()
        self._open = False
        self._paused_until = 0.0
        self._trying = False

    def refuses(self) -> bool:
        """Whether a publish would be refused now (looked at before waiting for a thread)."""
        with self._lock:
            return self._refuses()

    @contextmanager
    def attempt(self) -> Iterator[None]:
        """Around one publish: PublishUnavailable at once while open; notes how the publish went."""
        with self._lock:
            if self._refuses():
                raise PublishUnavailable("Kafka failed to acknowledge just now; publishing is paused")
            # Open but past its pause: this publish is the one that tries.
            trial = self._open
            if trial:
                self._trying = True
        try:
            yield
        except PublishUnavailable:
            self._opened()
            raise
        else:
            self._closed()
        finally:
            if trial:
                with self._lock:
                    self._trying = False

    def _refuses(self) -> bool:
        return self._open and (self._trying or time.monotonic() < self._paused_until)

    def _opened(self) -> None:
        with self._lock:
            was_open, self._open = self._open, True
            self._paused_until = time.monotonic() + self._pause_s
        if not was_open:
            log.warning("publishing paused: Kafka did not acknowledge", pause_s=self._pause_s)

    def _closed(self) -> None:
        with self._lock:
            was_open, self._open = self._open, False
        if was_open:
            log.info("publishing resumed: Kafka acknowledged")


class EventPublisher:
    """A Kafka producer created on first use, so the API starts (and serves reads) while Kafka is down."""

    def __init__(self, kafka: KafkaSettings, *, default_region: str = "GB", timeout_s: float = 10.0) -> None:
        self._kafka = kafka
        self._default_region = default_region
        self._timeout_s = timeout_s
        self._producer: KafkaProducer | None = None
        # The largest record the topic takes, read when the producer is made (see _get).
        self._record_limit = MAX_RECORD_BYTES
        self._lock = threading.Lock()
        # When making a producer last failed (time.monotonic()).
        self._bootstrap_failed_at = float("-inf")
        self._circuit = PublishCircuit(pause_s=PAUSE_AFTER_FAILURE_S)
        self._threads = CapacityLimiter(PUBLISH_THREADS)

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        """Send the events and wait until the broker has every one, on one of the publisher's own threads
        (encoding a batch of 500 takes milliseconds: not on the event loop).

        EventsTooLarge before anything is sent when a record would be too large; PublishUnavailable at once
        while the circuit is open.
        """
        if self._circuit.refuses():
            raise PublishUnavailable("Kafka failed to acknowledge just now; publishing is paused")
        await to_thread.run_sync(self.publish_all, events, limiter=self._threads)

    def publish_all(self, events: Sequence[CloudEvent]) -> None:
        """As `publish`, blocking (call from a worker thread)."""
        with self._circuit.attempt():
            try:
                producer, limit = self._get()
            except KafkaError as error:
                # A broker that takes connections but cannot be bootstrapped (still starting, a wrong
                # advertised listener): unavailable, as for any failure to publish.
                raise PublishUnavailable(str(error)) from error
            self._send(producer, self.encode(events, limit=limit))

    def encode(self, events: Sequence[CloudEvent], *, limit: int = MAX_RECORD_BYTES) -> list[EncodedEvent]:
        """The events' records, or EventsTooLarge naming every one larger than `limit` (the largest record
        the topic takes)."""
        # Keyed together: an event naming its citizen by an identifier that an earlier one teaches follows
        # that one on its partition (see partition_keys).
        keys = partition_keys(events, default_region=self._default_region)
        encoded = []
        for event, key in zip(events, keys, strict=True):
            value, headers = encode_structured(event)
            size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
            encoded.append(EncodedEvent(key=key, value=value, headers=headers, size=size))
        # Judged before sending any: the producer would refuse only that record, after queueing the others.
        # The contract keeps every event under events.codec.MAX_EVENT_BYTES, so this refuses one only on a
        # topic that takes smaller records than that (an operator's limit).
        too_large = {
            index: f"encoded for Kafka it is {record.size} bytes; a record may be at most {limit}"
            for index, record in enumerate(encoded)
            if record.size > limit
        }
        if too_large:
            raise EventsTooLarge(too_large, others_sent=False)
        return encoded

    def close(self) -> None:
        """Flush and close the producer, if one was made."""
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=self._timeout_s)
                self._producer = None

    def _send(self, producer: KafkaProducer, encoded: list[EncodedEvent]) -> None:
        """Send the records and wait until Kafka has acknowledged each (PublishUnavailable if it did not)."""
        try:
            futures = []
            for index, record in enumerate(encoded):
                try:
                    future = producer.send(
                        self._kafka.topic, key=record.key, value=record.value, headers=record.headers
                    )
                except TOO_LARGE as error:
                    # `encode` judged its size as the producer does; permanent all the same, should they ever
                    # differ.
                    reason = f"the Kafka producer refused it as too large ({record.size} bytes)"
                    raise EventsTooLarge({index: reason}, others_sent=index > 0) from error
                futures.append(future)
            producer.flush(timeout=self._timeout_s)
            for future in futures:
                future.get(timeout=self._timeout_s)
        except TOO_LARGE as error:
            # The broker refused a record the topic's limit, as read, allowed: the limit was lowered since.
            # kafka-python's idempotent producer takes that for fatal and fails every later send, those of
            # other requests too: the next publish makes a new producer, reading the limit again. Which
            # records were refused for their own size cannot be told, so every caller is told to retry.
            self._replace(producer)
            raise PublishUnavailable("Kafka refused a record as too large for the topic") from error
        except KafkaError as error:
            raise PublishUnavailable(str(error)) from error

    def _replace(self, producer: KafkaProducer) -> None:
        with self._lock:
            if self._producer is producer:
                self._producer = None
        # Publishes still using it answer 503 (they would fail anyway): the caller retries.
        close_failed_producer(producer)

    def _get(self) -> tuple[KafkaProducer, int]:
        """The producer, and the largest record the topic takes (read when the producer is made)."""
        waiting_since = time.monotonic()
        with self._lock:
            if self._producer is None:
                if self._bootstrap_failed_at > waiting_since:
                    # Publishes that queued behind a bootstrap that failed meanwhile: each trying in turn
                    # made the last of them wait out every other's timeout first.
                    raise PublishUnavailable("Kafka could not be bootstrapped just now")
                try:
                    self._producer = self._make_producer()
                except (KafkaError, PublishUnavailable):
                    self._bootstrap_failed_at = time.monotonic()
                    raise
            return self._producer, self._record_limit

    def _make_producer(self) -> KafkaProducer:
        """A new producer, and the topic's record limit read again, each step within the publish timeout
        (kafka-python's own timeouts are 30 s a step: a broker that takes connections but does not answer,
        still starting say, held a request a minute and more)."""
        # kafka-python spends its whole bootstrap timeout (and leaks the sockets it tried) before giving up on
        # unreachable brokers; a plain TCP probe answers "unavailable" at once.
        if not any(reachable(server) for server in self._kafka.bootstrap_list):
            raise PublishUnavailable("no Kafka bootstrap server accepts connections")
        timeout_ms = int(self._timeout_s * 1000)
        # A broker that does not answer the limit's question in time fails the publish there: the producer
        # would wait for it again. One that answers gets the producer its whole timeout, however slowly.
        self._record_limit = topic_max_bytes(
            self._kafka.bootstrap_list,
            self._kafka.topic,
            at_most=MAX_RECORD_BYTES,
            timeout_ms=timeout_ms // 2,
            unanswered_is_error=True,
        )
        return create_producer(
            self._kafka.bootstrap_list,
            max_block_ms=timeout_ms,
            max_request_size=self._record_limit,
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
        )
