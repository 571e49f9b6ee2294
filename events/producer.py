"""Publishing CloudEvents to Kafka in structured mode, keyed by citizen so each citizen stays in order."""

from kafka import KafkaProducer

from events.codec import encode_structured
from models.events import CloudEvent


def create_producer(bootstrap_servers: list[str]) -> KafkaProducer:
    """A producer that loses nothing it acknowledged: all in-sync replicas, idempotent retries."""
    return KafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        client_id="citizen-context-producer",
    )


def publish(producer: KafkaProducer, topic: str, event: CloudEvent) -> None:
    """Send one event (asynchronously; call `producer.flush()` to wait for the broker)."""
    value, headers = encode_structured(event)
    producer.send(topic, key=partition_key(event), value=value, headers=headers)


def partition_key(event: CloudEvent) -> bytes:
    """The message key: the citizen id, or the identifier the event names the citizen by."""
    return (event.subject or next(iter(event.identifiers.values()), event.id)).encode()
