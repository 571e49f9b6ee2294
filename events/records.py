"""A Kafka record as the pipeline sees it, independent of the client library.

The write path's per-event types (Decoded, EventWrite, ApplyResult) are dataclasses that are not frozen: a
frozen dataclass sets each field through object.__setattr__, and building those per event cost the consumer
about a microsecond of its 50 per event. Nothing changes them once built.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Header = tuple[str, bytes]


class KafkaRecord(Protocol):
    """One record read from a topic, as the pipeline reads it: where it came from and exactly what it held.

    A kafka-python ConsumerRecord is one as it comes: copying each into another object cost the consumer
    about a microsecond per event. A header's value may be None (Kafka allows it).
    """

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]]: ...


def position(record: KafkaRecord) -> dict[str, Any]:
    """Where a record was read from, as log fields: what logs say of a record (its content may hold
    personal data)."""
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}


def polled_records(polled: Mapping[Any, Sequence[KafkaRecord]]) -> list[KafkaRecord]:
    """The records of a kafka-python poll (partition -> records), in partition order as it gives them."""
    return [record for records in polled.values() for record in records]


@dataclass(frozen=True, slots=True)
class IncomingRecord:
    """A record made here rather than read (tests, a record read back from the dead-letter topic)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[Header] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that cannot become part of any context, and why."""

    record: KafkaRecord
    reason: str
    detail: str
