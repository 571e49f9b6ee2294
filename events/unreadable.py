"""Records the Kafka client cannot read: where they are, and reading past them.

kafka-python raises CorruptRecordError for a record it cannot parse: a header name that is not UTF-8 (which
other clients publish; Kafka does not check), or a batch whose checksum fails. From then on its fetcher
returns nothing more for that partition while still holding the broken records, so every later poll spins
and never returns (kafka-python 3.0): a consumer, and every consumer the group then gives the partition to,
would hang there. The partition is named only in the fetcher's own state; the record is at the partition's
position, every record before it having been returned.

The partition is then read again from that position by a reader of its own that takes a header name that
is not UTF-8 as it is (its bytes as surrogate escapes) rather than failing: the record and every record
after it in its batch arrive, to be judged as any other (the codec dead-letters the one that is wrong).
Stepping past the record alone would not do: kafka-python parses a batch from its start, so every later
record of the batch would fail as well. Only what even that reader cannot read (a corrupt batch) is given up,
a record at a time, by its position. Seeking the consumer past what was read makes its fetcher drop the
broken records it holds and fetch anew from there.
"""

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, SupportsIndex

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import CorruptRecordError, KafkaError
from kafka.record.default_records import DefaultRecordBatch

from events.records import KafkaRecord

# What the dead letter of a record given up says (its bytes are out of the client's reach: a tool that
# reads raw records finds it by its position).
UNREADABLE_DETAIL = (
    "the Kafka client could not read this record (a corrupt batch); the original is at dlq.topic, "
    "dlq.partition and dlq.offset"
)
# How long the reader of its own waits for the records at the position.
REREAD_TIMEOUT_S = 10.0


def unreadable_record(consumer: KafkaConsumer) -> tuple[TopicPartition, int] | None:
    """The partition and offset of the record that the consumer's last poll could not reach (a
    CorruptRecordError); None if the client's state does not say (a fetch the broker itself answered as
    corrupt, or another kafka-python version)."""
    fetcher: Any = getattr(consumer, "_fetcher", None)
    held = getattr(fetcher, "_next_partition_records", None)
    partition = getattr(held, "topic_partition", None)
    # Only records still held, failing at or before the partition's position, are the ones that failed (a
    # fetch the broker answered as corrupt leaves the partition read before it in that slot, drained). The
    # failure is before the position when the records wanted come after a bad one in the same batch: the
    # client parses a batch from its start.
    if not held or not isinstance(partition, TopicPartition):
        return None
    position = int(consumer.position(partition))
    failed_at = getattr(held, "next_fetch_offset", None)
    if not isinstance(failed_at, int) or failed_at > position:
        return None
    return partition, position


def drop_unreadable(consumer: KafkaConsumer) -> None:
    """Have the consumer's fetcher drop the records it holds and cannot read, so that its next poll fetches
    them anew (and fails on them again) rather than spinning on them."""
    held = getattr(getattr(consumer, "_fetcher", None), "_next_partition_records", None)
    if held:
        held.drain()


def reread(
    bootstrap_servers: list[str], partition: TopicPartition, offset: int, *, max_records: int
) -> Sequence[KafkaRecord] | None:
    """The records of `partition` from `offset` on (up to `max_records`), read by a reader of its own that
    takes header names that are not UTF-8. Empty when even that reader cannot read them (a corrupt batch);
    None when it could not tell (Kafka did not answer in time, or failed): the caller tries again later, as
    for any failed poll, rather than give up records it may well be able to read."""
    try:
        reader = KafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            max_poll_records=max_records,
            # Retention may have removed the position since: from the log's start then, never its end.
            auto_offset_reset="earliest",
            client_id="citizen-context-reread",
        )
    except KafkaError:
        return None
    try:
        reader.assign([partition])
        reader.seek(partition, offset)
        deadline = time.monotonic() + REREAD_TIMEOUT_S
        with lenient_header_names():
            while time.monotonic() < deadline:
                records = reader.poll(timeout_ms=500).get(partition, [])
                if records:
                    return list(records)
        return None
    except CorruptRecordError:
        return []
    except KafkaError:
        return None
    finally:
        reader.close()


def read_again(
    consumer: KafkaConsumer,
    bootstrap_servers: list[str],
    partition: TopicPartition,
    offset: int,
    *,
    max_records: int,
) -> dict[TopicPartition, Sequence[KafkaRecord]] | None:
    """`reread` for `consumer`, which is moved past what it read: the records, by partition, for the caller to
    use as a poll's. Empty when even the second reader cannot read them (the caller gives the record at
    `offset` up); None when Kafka did not answer it (the consumer's fetcher drops what it holds, so that its
    next poll meets the records again rather than spinning on them)."""
    records = reread(bootstrap_servers, partition, offset, max_records=max_records)
    if records is None:
        drop_unreadable(consumer)
        return None
    if records:
        consumer.seek(partition, records[-1].offset + 1)
        return {partition: records}
    return {}


def step_past(consumer: KafkaConsumer, partition: TopicPartition, offset: int) -> int:
    """Read on after the record at `offset` of `partition`; the next offset to read there."""
    consumer.seek(partition, offset + 1)
    return offset + 1


class _LenientBytes(bytearray):
    """A record batch's bytes whose slices decode as surrogate escapes where they are not UTF-8 (kafka-python
    decodes only header names from them). Every slice and index goes through Python here: only the reader
    of its own uses it, while it reads again."""

    def __getitem__(self, index: SupportsIndex | slice) -> Any:
        item = bytearray.__getitem__(self, index)
        return _LenientBytes(item) if isinstance(index, slice) else item

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return _LenientName(bytearray.decode(self, encoding, "surrogateescape"))


class _LenientName(str):
    """A header name read leniently, which encodes back to its own bytes (kafka-python measures each name's
    size by encoding it)."""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return str.encode(self, encoding, "surrogateescape")


# One lenient reading at a time per process: two overlapping would restore each other's patch.
_LENIENT = threading.Lock()


@contextmanager
def lenient_header_names() -> Iterator[None]:
    """While it lasts, record batches parsed in this process read header names that are not UTF-8 rather
    than failing. kafka-python parses records on the thread that polls, so a caller that polls nothing else
    meanwhile is the only one it touches."""
    with _LENIENT:
        yield from _patched()


def _patched() -> Iterator[None]:
    init, uncompress = DefaultRecordBatch.__init__, DefaultRecordBatch._maybe_uncompress

    def lenient_init(batch: DefaultRecordBatch, buffer: Any) -> None:
        init(batch, buffer)
        batch._buffer = _LenientBytes(batch._buffer)

    def lenient_uncompress(batch: DefaultRecordBatch) -> None:
        uncompress(batch)
        if not isinstance(batch._buffer, _LenientBytes):
            batch._buffer = _LenientBytes(batch._buffer)

    DefaultRecordBatch.__init__ = lenient_init
    DefaultRecordBatch._maybe_uncompress = lenient_uncompress
    try:
        yield
    finally:
        DefaultRecordBatch.__init__ = init
        DefaultRecordBatch._maybe_uncompress = uncompress
