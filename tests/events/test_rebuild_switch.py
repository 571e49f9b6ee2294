"""The rebuild's switch to its new generation, against the real Kafka and Redis."""

import uuid
from typing import Any

import pytest
import redis

from context.keys import CitizenKeys
from context.service import EventWrite
from context.settings import TimelineSettings
from context.store import ProjectionWriter, SentBatch
from events.rebuild import rebuild
from events.settings import KafkaSettings
from tests.events.test_consumer import produce_events
from tests.factories import make_event, writes_for


def test_a_rebuild_serves_its_generation_and_drops_the_one_it_replaced(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str
) -> None:
    citizen = f"C-{uuid.uuid4().hex[:8]}"
    event = make_event(citizen)
    writer.apply_batch(writes_for(event))
    before = writer.current_epoch()
    produce_events(kafka_topic, [event])

    report = rebuild(kafka=KafkaSettings(topic=kafka_topic), writer=writer, default_region="GB", grace_s=0)

    assert (report.previous_epoch, writer.current_epoch()) == (before, report.epoch)
    assert report.keys_removed > 0
    assert not writer.client.exists(CitizenKeys(key_prefix, before, citizen).timeline)
    assert writer.client.exists(CitizenKeys(key_prefix, report.epoch, citizen).timeline)


class AnswerLost(ProjectionWriter):
    """A writer whose switch is done in Redis, but whose answer never comes back (the connection drops)."""

    def switch_epoch(self, epoch: str) -> None:
        super().switch_epoch(epoch)
        raise redis.ConnectionError("the connection dropped before the answer came")


def test_a_switch_whose_answer_was_lost_keeps_the_generation_it_made_served(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str
) -> None:
    # The rebuild fails, but its generation is served already: dropping it, as a rebuild that failed
    # before its switch does, left readers and the consumer with an empty projection.
    citizen = f"C-{uuid.uuid4().hex[:8]}"
    produce_events(kafka_topic, [make_event(citizen)])
    lost = AnswerLost(writer.client, prefix=key_prefix, timeline=TimelineSettings())

    with pytest.raises(redis.ConnectionError):
        rebuild(kafka=KafkaSettings(topic=kafka_topic), writer=lost, default_region="GB", grace_s=0)

    served = writer.current_epoch()
    assert writer.client.exists(CitizenKeys(key_prefix, served, citizen).timeline)


class Watching(ProjectionWriter):
    """A writer that notes, at each batch a rebuild sends and at its switch, which generations are held
    unserved."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held_at_writes: list[bool] = []
        self.held_at_switch: list[str] = []

    def send_batch(self, writes: list[EventWrite], **options: Any) -> SentBatch:
        self.held_at_writes.append(options["epoch"] in self.unserved_generations())
        return super().send_batch(writes, **options)

    def switch_epoch(self, epoch: str) -> None:
        self.held_at_switch = sorted(self.unserved_generations())
        super().switch_epoch(epoch)


def test_a_rebuild_holds_its_generation_while_unserved_and_releases_both_once_done(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str
) -> None:
    before = writer.current_epoch()
    produce_events(kafka_topic, [make_event(f"C-{uuid.uuid4().hex[:8]}") for _ in range(3)])
    watching = Watching(writer.client, prefix=key_prefix, timeline=TimelineSettings())

    report = rebuild(kafka=KafkaSettings(topic=kafka_topic), writer=watching, default_region="GB", grace_s=0)

    assert watching.held_at_writes
    assert all(watching.held_at_writes)
    assert watching.held_at_switch == sorted([before, report.epoch])
    assert writer.unserved_generations() == []


class PreviousUnreadable(Watching):
    """A writer that loses Redis when the rebuild reads the served generation, just before its switch."""

    def current_epoch(self) -> str:
        raise redis.ConnectionError("Redis went away")


def test_a_rebuild_failing_before_its_switch_drops_and_releases_its_generation(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str
) -> None:
    produce_events(kafka_topic, [make_event(f"C-{uuid.uuid4().hex[:8]}")])
    failing = PreviousUnreadable(writer.client, prefix=key_prefix, timeline=TimelineSettings())

    with pytest.raises(redis.ConnectionError):
        rebuild(kafka=KafkaSettings(topic=kafka_topic), writer=failing, default_region="GB", grace_s=0)

    assert failing.held_at_writes  # it wrote before failing
    assert writer.unserved_generations() == []
    assert list(writer.client.scan_iter(match=f"{key_prefix}:*:{{C-*", count=1000)) == []
