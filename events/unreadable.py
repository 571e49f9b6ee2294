"""Records the Kafka client cannot read: where they are, so that the consumer and a rebuild step past them.

kafka-python raises CorruptRecordError for a record it cannot parse: a header name that is not UTF-8 (which
other clients publish; Kafka does not check), or a batch whose checksum fails. From then on its fetcher
returns nothing more for that partition while still holding the broken records, so every later poll spins
and never returns (kafka-python 3.0): a consumer, and every consumer the group then gives the partition to,
would hang there. The partition is named only in the fetcher's own state; the record is at the partition's
position, every record before it having been returned. Seeking one past it makes the fetcher drop what it
holds and fetch anew from there.
"""

from typing import Any

from kafka import KafkaConsumer, TopicPartition

# What the dead letter of such a record says (its bytes are out of the client's reach: a tool that reads
# raw records finds it by its position).
UNREADABLE_DETAIL = (
    "the Kafka client could not read this record (a header name that is not UTF-8, or a corrupt batch); "
    "the original is at dlq.topic, dlq.partition and dlq.offset"
)


def unreadable_record(consumer: KafkaConsumer) -> tuple[TopicPartition, int] | None:
    """The partition and offset of the record whose CorruptRecordError the consumer's last poll raised;
    None if the client's state does not say (another kafka-python version)."""
    fetcher: Any = getattr(consumer, "_fetcher", None)
    held = getattr(fetcher, "_next_partition_records", None)
    partition = getattr(held, "topic_partition", None)
    if not isinstance(partition, TopicPartition):
        return None
    return partition, int(consumer.position(partition))


def step_past(consumer: KafkaConsumer, partition: TopicPartition, offset: int) -> int:
    """Read on after the record at `offset` of `partition`; the next offset to read there."""
    consumer.seek(partition, offset + 1)
    return offset + 1
