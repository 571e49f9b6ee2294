"""The Kafka consumer loop that turns the interactions topic into the Redis projection.

Discipline: auto-commit is off; offsets are committed only after Redis has every event of the batch,
so a crash at any point redelivers the batch, and the idempotent write path makes redelivery harmless.
One KafkaConsumer per process: kafka-python's consumer is not thread-safe.
"""

import random
import threading
import time

import redis
import structlog
from kafka import KafkaConsumer
from kafka.errors import CommitFailedError, KafkaError

from context.store import ProjectionWriter
from events.codec import InvalidEvent, decode_record
from events.health import ConsumerHealth
from events.settings import KafkaSettings
from models.events import CloudEvent

log = structlog.get_logger("consumer")

REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
CHECK_INTERVAL_S = 5.0


def create_consumer(kafka: KafkaSettings) -> KafkaConsumer:
    """A group member reading the interactions topic from the earliest uncommitted offset."""
    return KafkaConsumer(
        kafka.topic,
        bootstrap_servers=kafka.bootstrap_list,
        group_id=kafka.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=kafka.max_poll_records,
        session_timeout_ms=kafka.session_timeout_ms,
        heartbeat_interval_ms=kafka.heartbeat_interval_ms,
        client_id="citizen-context-consumer",
    )


class ProjectionConsumer:
    """Polls batches, decodes them, applies them to Redis, then commits."""

    def __init__(
        self,
        *,
        consumer: KafkaConsumer,
        writer: ProjectionWriter,
        redis_client: "redis.Redis",
        health: ConsumerHealth,
        poll_timeout_ms: int,
    ) -> None:
        self._consumer = consumer
        self._writer = writer
        self._redis = redis_client
        self._health = health
        self._poll_timeout_ms = poll_timeout_ms
        self._next_check = 0.0

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set; the batch in hand is finished (or left uncommitted) first."""
        while not stop.is_set():
            self._check_dependencies()
            batches = self._consumer.poll(timeout_ms=self._poll_timeout_ms)
            records = [record for partition_records in batches.values() for record in partition_records]
            if not records:
                continue
            events = self._decode(records)
            if not self._apply_until_done(events, stop):
                log.info("stopping with batch uncommitted", records=len(records))
                return
            self._commit(len(records))

    def _decode(self, records: list[object]) -> list[CloudEvent]:
        events = []
        for record in records:
            try:
                events.append(decode_record(record.value, record.headers or ()))  # type: ignore[attr-defined]
            except InvalidEvent as error:
                # Skipped, never fatal. The dead-letter topic keeps these records for inspection and
                # redrive; until then the log names exactly which record was skipped and why.
                self._health.invalid += 1
                log.warning(
                    "invalid event skipped",
                    topic=record.topic,  # type: ignore[attr-defined]
                    partition=record.partition,  # type: ignore[attr-defined]
                    offset=record.offset,  # type: ignore[attr-defined]
                    reason=error.reason,
                    detail=error.detail,
                )
        return events

    def _apply_until_done(self, events: list[CloudEvent], stop: threading.Event) -> bool:
        """Apply the batch, retrying with backoff while Redis is unreachable; False if stopped first."""
        delay = 0.1
        while True:
            try:
                results = self._writer.apply_batch(events)
            except REDIS_ERRORS as error:
                self._health.redis_ok = False
                log.warning("redis unavailable, retrying", error=str(error), retry_in_s=round(delay, 2))
                if stop.wait(delay):
                    return False
                delay = min(delay * 2, 5.0) * random.uniform(0.8, 1.2)  # noqa: S311 (jitter, not crypto)
                continue
            self._health.redis_ok = True
            self._health.applied += sum(result.applied for result in results)
            return True

    def _commit(self, count: int) -> None:
        try:
            self._consumer.commit()
        except CommitFailedError as error:
            # The group rebalanced while this batch was applied: its new owner will redeliver it, which
            # the idempotent write path absorbs. Nothing is lost; carry on with the new assignment.
            log.warning("commit refused after rebalance", records=count, error=str(error))

    def _check_dependencies(self) -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + CHECK_INTERVAL_S
        try:
            self._redis.ping()
            self._health.redis_ok = True
        except REDIS_ERRORS:
            self._health.redis_ok = False
        try:
            self._consumer.topics()
            self._health.kafka_ok = True
        except KafkaError:
            self._health.kafka_ok = False
        self._health.last_check = now
