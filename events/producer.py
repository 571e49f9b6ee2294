"""Publishing CloudEvents to Kafka in structured mode, keyed by citizen so each citizen stays in order."""

from collections.abc import Sequence

import structlog
from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.producer.future import FutureRecordMetadata

from context.identity import IdentifierKind, named_identifiers, taught_identifiers
from events.codec import encode_structured
from events.settings import RECONNECT_BACKOFF_MAX_MS
from models.events import CloudEvent

log = structlog.get_logger(__name__)

# kafka-python's default size of a batch of records for one partition.
BATCH_BYTES = 16_384


def create_producer(
    bootstrap_servers: list[str],
    *,
    max_block_ms: int = 60_000,
    max_request_size: int = 1_048_576,
    bootstrap_timeout_ms: int = 30_000,
    request_timeout_ms: int = 30_000,
) -> KafkaProducer:
    """A producer that loses nothing it acknowledged: all in-sync replicas, idempotent retries.

    It refuses a record larger than `max_request_size` itself, and never batches records past it: the
    broker's refusal of a batch too large for the topic is fatal to an idempotent producer (every later
    send fails too). Making it waits up to `bootstrap_timeout_ms` for a broker to take a connection, then
    up to `request_timeout_ms` for its first answers (as for every request after).
    """
    return KafkaProducer(
        bootstrap_timeout_ms=bootstrap_timeout_ms,
        request_timeout_ms=request_timeout_ms,
        max_request_size=max_request_size,
        batch_size=min(BATCH_BYTES, max_request_size),
        bootstrap_servers=bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_block_ms=max_block_ms,
        client_id="citizen-context-producer",
        reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
    )


def close_failed_producer(producer: KafkaProducer) -> None:
    """Close a producer that failed for good (kafka-python's idempotent producer, after an error it takes
    as fatal). Its sender fails whatever it still holds within a retry's backoff (100 ms), which closing
    waits for: told not to wait at all, close raises before closing, and leaks the sender's thread and
    sockets. One that still holds records after the wait (its brokers gone as well) cannot be closed
    either: that is logged, and its sender lives on until the process ends."""
    try:
        producer.close(timeout=2)
    except KafkaError as error:
        log.warning("failed producer did not close", error=type(error).__name__)


def publish(
    producer: KafkaProducer,
    topic: str,
    event: CloudEvent,
    *,
    default_region: str = "GB",
    key: bytes | None = None,
) -> FutureRecordMetadata:
    """Send one event, with `key` or else its own `partition_key`; the returned future completes when the
    broker has it (or fails)."""
    value, headers = encode_structured(event)
    if key is None:
        key = partition_key(event, default_region=default_region)
    return producer.send(topic, key=key, value=value, headers=headers)


def partition_key(event: CloudEvent, *, default_region: str = "GB") -> bytes:
    """The message key: the citizen id, or else the normalised identifier the event names them by.

    Normalising keeps "07700 900123" and "+447700900123" on the same partition, hence in order.
    """
    if event.subject is not None:
        return event.subject.encode()
    identifiers = named_identifiers(event, default_region=default_region)
    return (f"{identifiers[0][0]}:{identifiers[0][1]}" if identifiers else event.id).encode()


def partition_keys(events: Sequence[CloudEvent], *, default_region: str = "GB") -> list[bytes]:
    """The message keys of events published together, in their order.

    Each is `partition_key`, except for an event that names its citizen only by an identifier an earlier
    event of the same batch teaches (a profile update's phone number, then a call naming that number): it
    gets that event's key, so it goes to the same partition, after it. Keyed by the identifier, it could
    land on another partition, be read before the event that teaches the identifier, and be dead-lettered
    as unresolved. Every event teaches, as the consumer learns from every event it resolves: one named by
    an identifier passes its key on to the identifiers it teaches in turn.
    """
    learned: dict[tuple[IdentifierKind, str], bytes] = {}
    keys: list[bytes] = []
    for event in events:
        if event.subject is not None:
            key = event.subject.encode()
        else:
            named = named_identifiers(event, default_region=default_region)
            found = next((learned[identifier] for identifier in named if identifier in learned), None)
            key = found or partition_key(event, default_region=default_region)
        keys.append(key)
        for identifier in taught_identifiers(event, default_region=default_region):
            learned[identifier] = key
    return keys
