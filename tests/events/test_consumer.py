"""The consumer loop in-process, against the real Kafka and Redis: overlapped batches, offsets, order."""

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import cast

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client import REGISTRY

from context.identity import IdentifierKind, normalise, recent_numbers
from context.keys import CitizenKeys
from context.store import ProjectionWriter
from events import consumer as consumer_module
from events.codec import encode_structured
from events.consumer import ProjectionConsumer, create_consumer, next_offsets
from events.deadletter import read_dead_letters
from events.health import ConsumerHealth
from events.metrics import CONSUMER_LAG
from events.pipeline import decode_batch
from events.process import dead_letter_publisher
from events.producer import create_producer
from events.records import IncomingRecord
from events.settings import KafkaSettings
from models.events import CloudEvent
from tests.conftest import wait_until
from tests.factories import ERASURES, example_data, make_event

BOOTSTRAP = KafkaSettings().bootstrap_list


def record(value: bytes, *, partition: int = 0, offset: int = 0) -> IncomingRecord:
    return IncomingRecord("topic", partition, offset, None, value, [])


def test_offsets_to_commit_are_one_past_each_partitions_last_record() -> None:
    records = [record(b"", partition=p, offset=o) for p, o in [(0, 4), (1, 9), (0, 5), (2, 0)]]
    offsets = next_offsets(records)
    assert {tp.partition: meta.offset for tp, meta in offsets.items()} == {0: 6, 1: 10, 2: 1}
    assert {tp.topic for tp in offsets} == {"topic"}


def test_a_batch_needs_the_index_only_when_an_event_names_its_citizen_by_an_identifier() -> None:
    named = encode_structured(make_event("C-1"))[0]
    anonymous = encode_structured(
        make_event("C-unused").model_copy(update={"subject": None, "citizenphone": "07700900123"})
    )[0]
    assert not decode_batch(
        [record(named), record(b"[1]")], default_region="GB", erasures=ERASURES
    ).needs_index
    assert decode_batch(
        [record(named), record(anonymous)], default_region="GB", erasures=ERASURES
    ).needs_index


@contextmanager
def consumer_thread(writer: ProjectionWriter, kafka: KafkaSettings) -> Iterator[ConsumerHealth]:
    """The consumer loop on its own thread for the block (one poll every 100 ms at most when idle)."""
    health = ConsumerHealth()
    dead_letters = dead_letter_publisher(kafka)
    kafka_consumer = create_consumer(kafka)
    consumer = ProjectionConsumer(
        consumer=kafka_consumer,
        writer=writer,
        dead_letters=dead_letters,
        health=health,
        poll_timeout_ms=100,
        default_region="GB",
        erasures=ERASURES,
        bootstrap=BOOTSTRAP,
    )
    stop = threading.Event()
    # A daemon: a consumer stuck in kafka-python (a regression) fails its test rather than the whole run.
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield health
    finally:
        stop.set()
        thread.join(timeout=60)
        kafka_consumer.close(autocommit=False)
        dead_letters.close()


def produce_events(topic: str, events: list[CloudEvent], *, producer: KafkaProducer | None = None) -> None:
    """Publish the events to partition 0 of `topic`, in order, and wait for the broker to have them (through
    `producer` when given, the project's own otherwise); the producer is closed afterwards."""
    producer = producer or create_producer(BOOTSTRAP)
    try:
        for event in events:
            producer.send(topic, value=encode_structured(event)[0], partition=0)
        producer.flush(timeout=30)
    finally:
        producer.close()


@contextmanager
def one_record_batches(
    writer: ProjectionWriter, kafka_topic: str
) -> Iterator[tuple[ConsumerHealth, Callable[[], int | None]]]:
    """The consumer loop on its own thread over partition 0 of `kafka_topic`, one record a batch, for the
    block: its health, and the offset its group has committed so far."""
    kafka = KafkaSettings(topic=kafka_topic, group_id=f"g-{uuid.uuid4().hex[:8]}", max_poll_records=1)
    reader = KafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=kafka.group_id, enable_auto_commit=False)
    try:
        with consumer_thread(writer, kafka) as health:
            yield health, lambda: cast(int | None, reader.committed(TopicPartition(kafka_topic, 0)))
    finally:
        reader.close()


def test_one_record_batches_resolve_what_the_batch_before_taught_and_commit_after_their_writes(
    writer: ProjectionWriter, kafka_topic: str
) -> None:
    citizen = f"C-{uuid.uuid4().hex[:8]}"
    profile = make_event(
        citizen, type_="profile.updated", data=example_data("profile.updated", phone="07700 900555")
    )
    caller: CloudEvent = make_event("C-unused").model_copy(
        update={"subject": None, "citizenphone": "+447700900555"}
    )
    producer: KafkaProducer = create_producer(BOOTSTRAP)
    try:
        for value in [encode_structured(profile)[0], encode_structured(caller)[0], b"[1]"]:
            producer.send(kafka_topic, value=value, partition=0).get(timeout=30)
    finally:
        producer.close()
    # One record a batch: the caller's batch is read while the profile's may still be in flight.
    with one_record_batches(writer, kafka_topic) as (health, committed):
        wait_until(lambda: health.applied + health.invalid == 3, what="every record used")
        wait_until(lambda: committed() == 3, what="all three offsets committed")
    assert health.applied == 2
    epoch = writer.current_epoch()
    phone = (IdentifierKind.phone, "+447700900555")
    assert writer.resolve([phone], epoch=epoch)[phone].citizen == citizen
    assert [letter.reason for letter in read_dead_letters(BOOTSTRAP, kafka_topic)] == ["not-an-object"]


def test_batches_in_flight_are_applied_in_the_order_they_were_read(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str
) -> None:
    citizen = f"C-{uuid.uuid4().hex[:8]}"
    # Older events arrive later: the order of the change log shows the order they were applied in.
    events = [make_event(citizen, minutes_ago=60 - n) for n in range(30)][::-1]
    produce_events(kafka_topic, events)
    # One record a batch, so that batch after batch is sent to Redis while the one before is in flight.
    with one_record_batches(writer, kafka_topic) as (health, committed):
        wait_until(lambda: health.applied == len(events), what="every event applied")
        wait_until(lambda: committed() == len(events), what="every offset committed")
    # The change log holds "version\n", "p" if the profile changed, then the event key, per change
    # (apply_events.lua); none of these events changes the profile.
    changes = cast(
        list[str],
        writer.client.lrange(CitizenKeys(key_prefix, writer.current_epoch(), citizen).changes, 0, -1),
    )
    assert [change.split("\n", 1)[1] for change in changes] == [event.dedup_key for event in events]


def unchanged() -> float:
    """Events this process found applied already (the consumer's counter, shared by every consumer here)."""
    return REGISTRY.get_sample_value("citizen_context_events_unchanged_total") or 0.0


def test_a_rebalance_commits_the_batches_done_before_it_so_none_is_read_twice(
    writer: ProjectionWriter, kafka_topic: str
) -> None:
    run = uuid.uuid4().hex[:8]
    count = 3000
    producer: KafkaProducer = create_producer(BOOTSTRAP)
    try:
        for n in range(count):
            # 30 events per citizen, well within a timeline's length: every one is applied once.
            event = make_event(f"C-{run}-{n % 100}", minutes_ago=n / 100)
            # Over every partition: whichever the group moves, some move from the first member.
            producer.send(kafka_topic, value=encode_structured(event)[0], partition=n % 3)
        producer.flush(timeout=60)
    finally:
        producer.close()
    # Frequent heartbeats: the first member learns of the rebalance while it still has most events to go.
    kafka = KafkaSettings(
        topic=kafka_topic,
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        max_poll_records=1,
        heartbeat_interval_ms=100,
    )
    unchanged_before = unchanged()
    with consumer_thread(writer, kafka) as first:
        wait_until(lambda: first.applied >= 20, what="the first consumer under way")
        # A second member joins: the group gives it a partition or two of the first's, in the middle of
        # the first's stream of one-record batches (one always in flight, several done but not committed).
        with consumer_thread(writer, kafka) as second:
            wait_until(
                lambda: first.applied + second.applied == count, what="every event applied", timeout_s=120
            )
            # The first member's poll did not fail on the rebalance (the old listener's commit raised).
            assert first.kafka_ok
    assert second.applied > 0, "no partition moved"
    # Nothing was delivered twice: the first member committed what it had done before the group moved on
    # (a redelivered event would count as unchanged).
    assert unchanged() == unchanged_before


@pytest.mark.parametrize("compression", ["gzip", "snappy", "lz4", "zstd"])
def test_records_a_publisher_compressed_are_applied(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str, compression: str
) -> None:
    # Any Kafka client may publish, and librdkafka's compress by lz4 or snappy as often as not: a batch
    # in a codec kafka-python had no library for failed every poll of its partition, for good.
    citizen = f"C-{uuid.uuid4().hex[:8]}"
    events = [make_event(citizen, minutes_ago=10 - n) for n in range(3)]
    produce_events(
        kafka_topic, events, producer=KafkaProducer(bootstrap_servers=BOOTSTRAP, compression_type=compression)
    )
    kafka = KafkaSettings(topic=kafka_topic, group_id=f"g-{uuid.uuid4().hex[:8]}")
    with consumer_thread(writer, kafka) as health:
        wait_until(lambda: health.applied == 3, what="the compressed records applied")
    timeline = CitizenKeys(key_prefix, writer.current_epoch(), citizen).timeline
    assert writer.client.zcard(timeline) == 3


def test_a_consumer_forgets_the_phone_numbers_it_normalised_within_a_while(
    writer: ProjectionWriter, kafka_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An erasure empties the cache of recent numbers only in the consumer that reads it (its partition's):
    # every other consumer forgets its numbers on its own, within NUMBERS_KEPT_S.
    monkeypatch.setattr(consumer_module, "NUMBERS_KEPT_S", 0.3)
    normalise(IdentifierKind.phone, "07700 900123", default_region="GB")
    assert recent_numbers() > 0
    kafka = KafkaSettings(topic=kafka_topic, group_id=f"g-{uuid.uuid4().hex[:8]}")
    with consumer_thread(writer, kafka):
        wait_until(lambda: recent_numbers() == 0, what="the recent numbers forgotten", timeout_s=30)


def test_a_partition_given_back_reports_no_lag_from_before(
    writer: ProjectionWriter, kafka_topic: str
) -> None:
    # Another member read the partition meanwhile: the position this process last read it at is stale, and
    # reported the other member's work as lag for as long as no record came.
    kafka = KafkaSettings(topic=kafka_topic, group_id=f"g-{uuid.uuid4().hex[:8]}")
    kafka_consumer = create_consumer(kafka)
    dead_letters = dead_letter_publisher(kafka)
    try:
        consumer = ProjectionConsumer(
            consumer=kafka_consumer,
            writer=writer,
            dead_letters=dead_letters,
            health=ConsumerHealth(),
            poll_timeout_ms=100,
            default_region="GB",
            erasures=ERASURES,
            bootstrap=BOOTSTRAP,
        )
        partition = TopicPartition(kafka_topic, 0)
        consumer._positions[(kafka_topic, 0)] = 170
        CONSUMER_LAG.labels(topic=kafka_topic, partition="0").set(80)
        lag = {"topic": kafka_topic, "partition": "0"}
        assert REGISTRY.get_sample_value("citizen_context_consumer_lag", lag) == 80
        listener = consumer_module._FinishBeforeRevoke(consumer)
        asyncio.run(listener.on_partitions_assigned([partition]))
        assert REGISTRY.get_sample_value("citizen_context_consumer_lag", lag) is None
        assert (kafka_topic, 0) not in consumer._positions
        consumer._positions[(kafka_topic, 0)] = 170
        CONSUMER_LAG.labels(topic=kafka_topic, partition="0").set(80)
        asyncio.run(listener.on_partitions_revoked([partition]))
        assert REGISTRY.get_sample_value("citizen_context_consumer_lag", lag) is None
    finally:
        kafka_consumer.close(autocommit=False)
        dead_letters.close()
