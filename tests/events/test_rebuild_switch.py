"""The rebuild's switch to its new generation, against the real Kafka and Redis."""

import uuid

import pytest
import redis

from context.keys import CitizenKeys
from context.settings import TimelineSettings
from context.store import ProjectionWriter
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
