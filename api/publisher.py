"""Publishing events to Kafka from the API (REST ingestion, completed enquiries)."""

import threading

from kafka import KafkaProducer
from kafka.errors import KafkaError

from events.producer import create_producer, partition_keys, publish
from events.settings import KafkaSettings
from events.topics import reachable
from models.events import CloudEvent


class PublishUnavailable(Exception):
    """Kafka did not acknowledge the events; nothing can be promised about them, so the caller retries."""


class EventPublisher:
    """A Kafka producer created on first use, so the API starts (and serves reads) while Kafka is down."""

    def __init__(self, kafka: KafkaSettings, *, default_region: str = "GB", timeout_s: float = 10.0) -> None:
        self._kafka = kafka
        self._default_region = default_region
        self._timeout_s = timeout_s
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()

    def publish_all(self, events: list[CloudEvent]) -> None:
        """Send the events and wait until the broker has every one (blocking: call from a worker thread)."""
        try:
            producer = self._get()
            # Keyed together: an event naming its citizen by an identifier that an earlier one teaches
            # follows that one on its partition (see partition_keys).
            keys = partition_keys(events, default_region=self._default_region)
            topic = self._kafka.topic
            futures = [
                publish(producer, topic, event, key=key) for event, key in zip(events, keys, strict=True)
            ]
            producer.flush(timeout=self._timeout_s)
            for future in futures:
                future.get(timeout=self._timeout_s)
        except KafkaError as error:
            raise PublishUnavailable(str(error)) from error

    def close(self) -> None:
        """Flush and close the producer, if one was made."""
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=self._timeout_s)
                self._producer = None

    def _get(self) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                # kafka-python spends its whole bootstrap timeout (and leaks the sockets it tried) before
                # giving up on unreachable brokers; a plain TCP probe answers "unavailable" at once.
                if not any(reachable(server) for server in self._kafka.bootstrap_list):
                    raise PublishUnavailable("no Kafka bootstrap server accepts connections")
                self._producer = create_producer(
                    self._kafka.bootstrap_list, max_block_ms=int(self._timeout_s * 1000)
                )
            return self._producer
