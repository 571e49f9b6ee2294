"""A Kafka record as the pipeline sees it, independent of the client library."""

from dataclasses import dataclass, field
from typing import cast

Header = tuple[str, bytes]


# Not frozen, like the other per-event types of the write path (Decoded, EventWrite, ApplyResult): a frozen
# dataclass sets each field through object.__setattr__, and building these per event cost the consumer
# about a microsecond of its 50 per event. Nothing changes them once built.
@dataclass(slots=True)
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
        headers: list[tuple[str, bytes | None]] = record.headers or []  # type: ignore[attr-defined]
        if headers and any(raw is None for _name, raw in headers):
            headers = [(name, raw or b"") for name, raw in headers]
        return cls(
            record.topic,  # type: ignore[attr-defined]
            record.partition,  # type: ignore[attr-defined]
            record.offset,  # type: ignore[attr-defined]
            record.key,  # type: ignore[attr-defined]
            record.value,  # type: ignore[attr-defined]
            cast(list[Header], headers),
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that cannot become part of any context, and why."""

    record: IncomingRecord
    reason: str
    detail: str
