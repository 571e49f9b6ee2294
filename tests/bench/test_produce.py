"""The paced load: librdkafka sends every event, keyed and typed as the project's own producer would,
through the real broker, and the consumer's decoder takes each one."""

import time

from kafka import KafkaConsumer

from bench.produce import produce_paced
from bench.workload import READY_ID, citizen_id, sent_ns_of
from events.codec import decode_judged
from events.consumer import create_consumer
from events.settings import KafkaSettings
from models.events import STRUCTURED_CONTENT_TYPE

RATE_PER_S, WARM_UP_S, DURATION_S = 200.0, 0.5, 1.0


def read_all(consumer: KafkaConsumer, expected: int, timeout_s: float = 60) -> list[object]:
    records: list[object] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    return records


def test_paced_events_arrive_whole_keyed_by_citizen_and_timed_after_the_warm_up(kafka_topic: str) -> None:
    kafka = KafkaSettings(topic=kafka_topic, group_id=f"{kafka_topic}-reader")
    citizens = [1, 2, 3]
    before_ns = time.time_ns()
    produced = produce_paced(
        kafka.bootstrap_list, kafka_topic, citizens, RATE_PER_S, DURATION_S, 9, WARM_UP_S
    )
    after_ns = time.time_ns()
    paced = int(RATE_PER_S * WARM_UP_S) + int(RATE_PER_S * DURATION_S)
    expected = 1 + paced  # the event sent first, once connected, then the paced ones
    assert produced.count == expected
    # Open loop at the rate: it took about as long as its paced sends were due over.
    assert produced.seconds >= (paced - 1) / RATE_PER_S

    consumer = create_consumer(kafka)
    try:
        records = read_all(consumer, expected)
    finally:
        consumer.close(autocommit=False)
    assert len(records) == expected  # every send acknowledged before it returned, none twice
    # The untimed event went first: it is the first record of its partition.
    first_offsets: dict[int, int] = {}
    for record in records:
        partition, offset = record.partition, record.offset  # type: ignore[attr-defined]
        first_offsets[partition] = min(first_offsets.get(partition, offset), offset)
    timed = ready = 0
    for record in records:
        headers = dict(record.headers)  # type: ignore[attr-defined]
        assert headers == {"content-type": STRUCTURED_CONTENT_TYPE.encode()}
        event = decode_judged(record.value, record.headers).event  # type: ignore[attr-defined]
        # Keyed by the citizen, as a publisher keeps each citizen's events in order on one partition.
        assert record.key == event.subject.encode()  # type: ignore[attr-defined, union-attr]
        assert event.subject in {citizen_id(number) for number in citizens}
        if event.id == READY_ID:
            ready += 1
            assert record.offset == first_offsets[record.partition]  # type: ignore[attr-defined]
        sent = sent_ns_of(event.id)
        if sent is not None:
            timed += 1
            assert before_ns <= sent <= after_ns
    # The first event and the warm-up's carry no send time; every later one does.
    assert ready == 1
    assert timed == int(RATE_PER_S * DURATION_S)
