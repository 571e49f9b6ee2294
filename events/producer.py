"""Publishing CloudEvents to Kafka in structured mode, keyed by citizen so each citizen stays in order."""

from kafka import KafkaProducer
from kafka.producer.future import FutureRecordMetadata

from context.identity import named_identifiers
from events.codec import encode_structured
from models.events import CloudEvent


def create_producer(
    bootstrap_servers: list[str], *, max_block_ms: int = 60_000, max_request_size: int = 1_048_576
) -> KafkaProducer:
    """A producer that loses nothing it acknowledged: all in-sync replicas, idempotent retries."""
    return KafkaProducer(
        max_request_size=max_request_size,
        bootstrap_servers=bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_block_ms=max_block_ms,
        client_id="citizen-context-producer",
    )


def publish(
    producer: KafkaProducer, topic: str, event: CloudEvent, *, default_region: str = "GB"
) -> FutureRecordMetadata:
    """Send one event; the returned future completes when the broker has it (or fails)."""
    value, headers = encode_structured(event)
    return producer.send(
        topic, key=partition_key(event, default_region=default_region), value=value, headers=headers
    )


def partition_key(event: CloudEvent, *, default_region: str = "GB") -> bytes:
    """The message key: the citizen id, or else the normalised identifier the event names them by.

    Normalising keeps "07700 900123" and "+447700900123" on the same partition, hence in order.
    """
    if event.subject is not None:
        return event.subject.encode()
    identifiers = named_identifiers(event, default_region=default_region)
    return (f"{identifiers[0][0]}:{identifiers[0][1]}" if identifiers else event.id).encode()
