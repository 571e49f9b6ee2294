"""A Kafka record as the pipeline sees it, independent of the client library."""

from dataclasses import dataclass, field

Header = tuple[str, bytes]


@dataclass(frozen=True, slots=True)
class IncomingRecord:
    """One record read from a topic: where it came from and exactly what it held."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[Header] = field(default_factory=list)

    @classmethod
    def from_consumer_record(cls, record: object) -> "IncomingRecord":
        """Adapt a kafka-python ConsumerRecord."""
        return cls(
            topic=record.topic,  # type: ignore[attr-defined]
            partition=record.partition,  # type: ignore[attr-defined]
            offset=record.offset,  # type: ignore[attr-defined]
            key=record.key,  # type: ignore[attr-defined]
            value=record.value,  # type: ignore[attr-defined]
            headers=[(name, raw or b"") for name, raw in (record.headers or [])],  # type: ignore[attr-defined]
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that cannot become part of any context, and why."""

    record: IncomingRecord
    reason: str
    detail: str
