"""The rebuild's switch to its new generation, against the real Kafka and Redis."""

import uuid
from typing import Any

import pytest
import redis
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient

import events.rebuild
from context.keys import CitizenKeys
from context.service import EventWrite
from context.settings import TimelineSettings
from context.store import ApplyResult, ProjectionWriter, SentBatch, new_epoch
from events.producer import create_producer
from events.rebuild import MissingTopic, Replayer, rebuild
from events.settings import KafkaSettings
from tests.events.test_consumer import BOOTSTRAP, produce_events
from tests.factories import example_data, make_event, writes_for
from tests.logs import capture_module_logs


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


def test_a_rebuild_from_a_topic_that_does_not_exist_changes_nothing(
    writer: ProjectionWriter, key_prefix: str
) -> None:
    # A mistyped topic name would otherwise replay nothing, switch every reader to an empty projection and
    # drop the one served.
    citizen = f"C-{uuid.uuid4().hex[:8]}"
    writer.apply_batch(writes_for(make_event(citizen)))
    before = writer.current_epoch()
    missing = f"test.missing.{uuid.uuid4().hex[:12]}"

    with pytest.raises(MissingTopic, match="does not exist"):
        rebuild(kafka=KafkaSettings(topic=missing), writer=writer, default_region="GB", grace_s=0)

    assert writer.current_epoch() == before
    assert writer.client.exists(CitizenKeys(key_prefix, before, citizen).timeline)


def test_a_replay_whose_position_falls_off_the_log_goes_on_from_the_log_s_new_start(
    writer: ProjectionWriter, kafka_topic: str
) -> None:
    # Retention deleting the oldest segment while a rebuild reads it: kafka-python's default would move the
    # position to the partition's end, and the pass would find it done, the rest of it skipped silently.
    produce_events(kafka_topic, [make_event(f"C-{uuid.uuid4().hex[:8]}") for _ in range(10)])
    replayer = Replayer(KafkaSettings(topic=kafka_topic), writer, epoch=new_epoch(), default_region="GB")
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    try:
        assert replayer.remaining() == 10  # the positions are read: partition 0's at offset 0
        admin.delete_records({TopicPartition(kafka_topic, 0): 4})

        assert replayer.catch_up(lambda _n: None) == 6
        assert replayer.applied == 6
    finally:
        admin.close()
        replayer.close()


def test_a_rebuild_logs_the_records_it_skips_a_few_of_each_reason_then_their_count(
    writer: ProjectionWriter, kafka_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The consumer dead-lettered and logged each already: a topic holding many must not flood the log.
    malformed = events.rebuild.LOGGED_SKIPS_PER_REASON + 3
    producer = create_producer(BOOTSTRAP)
    try:
        for _ in range(malformed):
            producer.send(kafka_topic, value=b"{not json", partition=0)
        producer.flush(timeout=30)
    finally:
        producer.close()
    produce_events(kafka_topic, [make_event(f"C-{uuid.uuid4().hex[:8]}")])
    logs = capture_module_logs(monkeypatch, events.rebuild)

    report = rebuild(kafka=KafkaSettings(topic=kafka_topic), writer=writer, default_region="GB", grace_s=0)

    assert (report.records, report.applied, report.skipped) == (malformed + 1, 1, malformed)
    skipped = [entry for entry in logs.entries if entry["event"] == "rebuild skipped a record"]
    assert [(entry["offset"], entry["reason"]) for entry in skipped] == [
        (offset, "not-json") for offset in range(events.rebuild.LOGGED_SKIPS_PER_REASON)
    ]
    [finished] = [entry for entry in logs.entries if entry["event"] == "rebuild finished"]
    assert finished["skipped"] == {"not-json": malformed}


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
    unserved, and how often the rebuild held its generation."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held_at_writes: list[bool] = []
        self.held_at_switch: list[str] = []
        self.holds: list[str] = []

    def send_batch(self, writes: list[EventWrite], **options: Any) -> SentBatch:
        self.held_at_writes.append(options["epoch"] in self.unserved_generations())
        return super().send_batch(writes, **options)

    def hold_unserved(self, epoch: str) -> None:
        self.holds.append(epoch)
        super().hold_unserved(epoch)

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


def test_a_rebuild_renews_its_hold_before_any_write_once_it_is_due(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Due at every write: each write's keys are covered by a hold taken just before it.
    monkeypatch.setattr(events.rebuild, "HOLD_RENEWAL_S", 0)
    monkeypatch.setattr(events.rebuild, "REPLAY_POLL_RECORDS", 10)  # several batches
    produce_events(kafka_topic, [make_event(f"C-{uuid.uuid4().hex[:8]}") for _ in range(30)])
    watching = Watching(writer.client, prefix=key_prefix, timeline=TimelineSettings())
    kafka = KafkaSettings(topic=kafka_topic, max_poll_records=10)

    report = rebuild(kafka=kafka, writer=watching, default_region="GB", grace_s=0)

    assert len(watching.held_at_writes) >= 3
    assert watching.holds.count(report.epoch) == len(watching.held_at_writes)


class RedisAwayOnce(Watching):
    """A writer whose first batch cannot be sent (Redis went away): the rebuild applies it again later.
    It notes each write the rebuild asks for: a batch sent, or one applied again."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writes: list[str] = []
        self._applying = False

    def send_batch(self, writes: list[EventWrite], **options: Any) -> SentBatch:
        if not self._applying:
            self.writes.append("sent")
            if len(self.writes) == 1:
                raise redis.ConnectionError("Redis went away")
        return super().send_batch(writes, **options)

    def apply_batch(self, writes: list[EventWrite], **options: Any) -> list[ApplyResult]:
        self.writes.append("applied again")
        self._applying = True
        try:
            return super().apply_batch(writes, **options)
        finally:
            self._applying = False


def test_a_batch_applied_again_after_redis_went_away_is_held_first(
    redis_client: "redis.Redis", kafka_topic: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events.rebuild, "HOLD_RENEWAL_S", 0)  # due before every write
    citizen = f"C-{uuid.uuid4().hex[:8]}"
    produce_events(kafka_topic, [make_event(citizen)])
    away = RedisAwayOnce(redis_client, prefix=key_prefix, timeline=TimelineSettings())

    report = rebuild(kafka=KafkaSettings(topic=kafka_topic), writer=away, default_region="GB", grace_s=0)

    assert "applied again" in away.writes
    assert away.holds.count(report.epoch) == len(away.writes)
    assert redis_client.exists(CitizenKeys(key_prefix, report.epoch, citizen).timeline)


class DropFailsToo(PreviousUnreadable):
    """A writer that loses Redis before the switch, and cannot drop the unfinished generation either."""

    def drop_generation(self, epoch: str) -> int:
        raise redis.ConnectionError("Redis is still away")


def test_a_rebuild_whose_cleanup_fails_too_reports_what_failed_it_and_keeps_its_generation_held(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str
) -> None:
    produce_events(kafka_topic, [make_event(f"C-{uuid.uuid4().hex[:8]}")])
    failing = DropFailsToo(writer.client, prefix=key_prefix, timeline=TimelineSettings())

    with pytest.raises(redis.ConnectionError, match="Redis went away"):
        rebuild(kafka=KafkaSettings(topic=kafka_topic), writer=failing, default_region="GB", grace_s=0)

    # What it wrote is left, and erasures still reach it.
    [unfinished] = writer.unserved_generations()
    assert list(writer.client.scan_iter(match=f"{key_prefix}:{unfinished}:*", count=1000))


class ResolveFailsOnce(ProjectionWriter):
    """A writer that loses Redis once as the rebuild resolves a batch's identifiers (a failover, say)."""

    failed = False

    def resolve(self, identifiers: Any, *, epoch: str) -> Any:
        if not self.failed:
            self.failed = True
            raise redis.ConnectionError("Redis went away")
        return super().resolve(identifiers, epoch=epoch)


def test_a_batch_whose_identifiers_could_not_be_resolved_for_want_of_redis_is_resolved_again(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str
) -> None:
    # The positions are past the batch already: raised, the step's retry started after it, and after the
    # switch its records never reached the served generation.
    citizen = f"C-{uuid.uuid4().hex[:8]}"
    phone = f"07700 9{uuid.uuid4().int % 100_000:05d}"
    profile = make_event(citizen, type_="profile.updated", data=example_data("profile.updated", phone=phone))
    caller = make_event("C-unused").model_copy(update={"subject": None, "citizenphone": phone})
    produce_events(kafka_topic, [profile, caller])
    failing = ResolveFailsOnce(writer.client, prefix=key_prefix, timeline=TimelineSettings())

    report = rebuild(kafka=KafkaSettings(topic=kafka_topic), writer=failing, default_region="GB", grace_s=0)

    assert failing.failed
    assert writer.client.zcard(CitizenKeys(key_prefix, report.epoch, citizen).timeline) == 2
