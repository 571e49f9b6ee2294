"""The rebuild's switch to its new generation, against the real Kafka and Redis."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaTimeoutError

import events.rebuild
from context.keys import CitizenKeys, changes_channel
from context.service import EventWrite
from context.settings import TimelineSettings
from context.store import ApplyResult, ProjectionWriter, SentBatch, new_epoch
from events.producer import create_producer
from events.rebuild import MissingTopic, RebuildInterrupted, Replayer, rebuild
from events.settings import KafkaSettings
from models.events import CloudEvent
from ops.cli import main
from ops.processes import uninterrupted
from tests.events.replay import rebuild_topic
from tests.events.test_consumer import BOOTSTRAP, produce_events
from tests.factories import ERASURES, example_data, make_event, writes_for
from tests.logs import capture_module_logs


def test_a_rebuild_serves_its_generation_and_drops_the_one_it_replaced(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str
) -> None:
    citizen = f"C-{uuid.uuid4().hex[:8]}"
    event = make_event(citizen)
    writer.apply_batch(writes_for(event))
    before = writer.current_epoch()
    produce_events(kafka_topic, [event])

    report = rebuild_topic(kafka_topic, writer)

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
        rebuild_topic(missing, writer)

    assert writer.current_epoch() == before
    assert writer.client.exists(CitizenKeys(key_prefix, before, citizen).timeline)


@pytest.mark.parametrize("grace_s", [float("nan"), float("inf"), -1.0])
def test_a_grace_period_that_is_no_number_of_seconds_is_refused_before_anything_is_written(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str, grace_s: float
) -> None:
    # NaN failed the sleep after the switch, leaving the replaced generation behind; only the CLI refused it.
    before = a_generation_served_and_an_event_to_replay(writer, kafka_topic)
    keys = set(writer.client.scan_iter(f"{key_prefix}*"))

    with pytest.raises(ValueError, match="grace_s must be a finite number of seconds"):
        rebuild_topic(kafka_topic, writer, grace_s=grace_s)

    assert writer.current_epoch() == before
    assert set(writer.client.scan_iter(f"{key_prefix}*")) == keys


def test_a_replay_whose_position_falls_off_the_log_goes_on_from_the_log_s_new_start(
    writer: ProjectionWriter, kafka_topic: str
) -> None:
    # Retention deleting the oldest segment while a rebuild reads it: kafka-python's default would move the
    # position to the partition's end, and the pass would find it done, the rest of it skipped silently.
    produce_events(kafka_topic, [make_event(f"C-{uuid.uuid4().hex[:8]}") for _ in range(10)])
    replayer = Replayer(
        KafkaSettings(topic=kafka_topic), writer, epoch=new_epoch(), default_region="GB", erasures=ERASURES
    )
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

    report = rebuild_topic(kafka_topic, writer)

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
        rebuild_topic(kafka_topic, lost)

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

    report = rebuild_topic(kafka_topic, watching)

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
        rebuild_topic(kafka_topic, failing)

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

    report = rebuild(kafka=kafka, writer=watching, default_region="GB", erasures=ERASURES, grace_s=0)

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

    report = rebuild_topic(kafka_topic, away)

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
        rebuild_topic(kafka_topic, failing)

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

    report = rebuild_topic(kafka_topic, failing)

    assert failing.failed
    assert writer.client.zcard(CitizenKeys(key_prefix, report.epoch, citizen).timeline) == 2


class InterruptedAt(ProjectionWriter):
    """A writer at which Ctrl-C arrives: as the rebuild reads the served generation (just before its switch),
    or as it switches, before or after the switch is done in Redis."""

    def __init__(self, *args: Any, at: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.at = at
        self.reading = False

    def current_epoch(self) -> str:
        if self.at == "before the switch" and not self.reading:
            self.reading = True  # the cleanup reads it again
            raise KeyboardInterrupt
        return super().current_epoch()

    def switch_epoch(self, epoch: str) -> None:
        if self.at == "after the switch":
            super().switch_epoch(epoch)
        if self.at != "before the switch":
            raise KeyboardInterrupt


def interrupted_rebuild(writer: ProjectionWriter, kafka_topic: str, key_prefix: str, at: str) -> str:
    """A rebuild of one event that Ctrl-C interrupts `at` a moment; its message."""
    produce_events(kafka_topic, [make_event(f"C-{uuid.uuid4().hex[:8]}")])
    interrupted = InterruptedAt(writer.client, prefix=key_prefix, timeline=TimelineSettings(), at=at)
    with pytest.raises(RebuildInterrupted) as raised:
        rebuild_topic(kafka_topic, interrupted)
    return str(raised.value)


def announced(client: "redis.Redis", key_prefix: str) -> "redis.client.PubSub":
    """A subscription to the generation's announcements, its confirmation read."""
    subscription: redis.client.PubSub = client.pubsub()  # type: ignore[no-untyped-call]
    subscription.subscribe(changes_channel(key_prefix))
    assert subscription.get_message(timeout=5) is not None  # the confirmation
    return subscription


def a_generation_served_and_an_event_to_replay(writer: ProjectionWriter, kafka_topic: str) -> str:
    """A citizen in the generation served, another's event in the topic; the generation served."""
    writer.apply_batch(writes_for(make_event(f"C-{uuid.uuid4().hex[:8]}")))
    served = writer.current_epoch()
    produce_events(kafka_topic, [make_event(f"C-{uuid.uuid4().hex[:8]}")])
    return served


def generations(client: "redis.Redis", key_prefix: str) -> set[str]:
    return {key.split(":")[1] for key in client.scan_iter(match=f"{key_prefix}:*:{{C-*", count=1000)}


@pytest.mark.parametrize("at", ["before the switch", "at a switch not done"])
def test_a_rebuild_interrupted_before_its_switch_removes_its_generation_and_says_so(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str, at: str
) -> None:
    citizen = f"C-{uuid.uuid4().hex[:8]}"
    writer.apply_batch(writes_for(make_event(citizen)))
    served = writer.current_epoch()

    message = interrupted_rebuild(writer, kafka_topic, key_prefix, at)

    assert "was removed" in message
    assert "switch" in message
    assert writer.current_epoch() == served
    assert generations(writer.client, key_prefix) == {served}
    assert writer.unserved_generations() == []


def test_a_rebuild_interrupted_after_its_switch_removes_the_generation_it_replaced_and_says_what_to_do(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str
) -> None:
    # Left held unserved, the replaced generation kept every citizen's data until its keys expired, and no
    # later rebuild removed it.
    citizen = f"C-{uuid.uuid4().hex[:8]}"
    writer.apply_batch(writes_for(make_event(citizen)))
    replaced = writer.current_epoch()
    announcements = announced(writer.client, key_prefix)
    try:
        message = interrupted_rebuild(writer, kafka_topic, key_prefix, "after the switch")
        announcement = announcements.get_message(timeout=5)
    finally:
        announcements.close()

    served = writer.current_epoch()
    assert served != replaced
    assert announcement is not None
    assert json.loads(announcement["data"]) == {"epoch": served}
    assert generations(writer.client, key_prefix) == {served}
    assert writer.unserved_generations() == []
    assert f"{replaced} was removed" in message
    assert "run `citizen-context rebuild` again" in message


def test_an_interrupt_during_the_grace_period_removes_the_replaced_generation_at_once(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    replaced = a_generation_served_and_an_event_to_replay(writer, kafka_topic)

    def interrupted_sleep(_seconds: float) -> None:
        raise KeyboardInterrupt

    clock = SimpleNamespace(perf_counter=time.perf_counter, monotonic=time.monotonic, sleep=interrupted_sleep)
    monkeypatch.setattr("events.rebuild.time", clock)
    report = rebuild_topic(kafka_topic, writer, grace_s=60)

    assert report.previous_epoch == replaced
    assert report.keys_removed > 0
    assert generations(writer.client, key_prefix) == {report.epoch}
    assert writer.unserved_generations() == []


def test_the_rebuild_command_interrupted_says_what_it_left_and_exits_as_interrupted(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It printed only click's "Aborted!", whatever it had left behind.
    replaced = a_generation_served_and_an_event_to_replay(writer, kafka_topic)

    def switch_then_interrupt(self: ProjectionWriter, epoch: str) -> None:
        switch_epoch(self, epoch)
        raise KeyboardInterrupt

    switch_epoch = ProjectionWriter.switch_epoch
    monkeypatch.setattr(ProjectionWriter, "switch_epoch", switch_then_interrupt)
    env = {"CITIZEN_CONTEXT_KAFKA_TOPIC": kafka_topic, "CITIZEN_CONTEXT_REDIS_KEY_PREFIX": key_prefix}
    result = CliRunner().invoke(main, ["rebuild", "--grace", "0"], env=env)

    assert result.exit_code == 130, result.output
    served = writer.current_epoch()
    assert (
        f"error: rebuild interrupted after its switch: {served} is served and {replaced} was removed"
    ) in result.output
    assert "Aborted!" not in result.output


def rebuild_command(topic: str, key_prefix: str, *, grace: str) -> "subprocess.Popen[str]":
    """`citizen-context rebuild --grace GRACE` of `topic` in a process of its own, its output in one pipe."""
    env = {"CITIZEN_CONTEXT_KAFKA_TOPIC": topic, "CITIZEN_CONTEXT_REDIS_KEY_PREFIX": key_prefix}
    return subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "rebuild", "--grace", grace],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_the_rebuild_command_stopped_in_its_grace_period_finishes_at_once(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str
) -> None:
    replaced = a_generation_served_and_an_event_to_replay(writer, kafka_topic)
    announcements = announced(writer.client, key_prefix)
    command = rebuild_command(kafka_topic, key_prefix, grace="600")
    try:
        # The new generation is announced just before the grace period.
        assert announcements.get_message(timeout=60) is not None
        command.send_signal(signal.SIGTERM)
        output, _ = command.communicate(timeout=30)
    finally:
        announcements.close()
        command.kill()
        command.wait()

    assert command.returncode == 0, output
    assert f"(was {replaced})" in output
    assert generations(writer.client, key_prefix) == {writer.current_epoch()}


class InterruptedAsItDrops(ProjectionWriter):
    """A writer at which Ctrl-C arrives while the rebuild drops the generation it replaced."""

    def drop_generation(self, epoch: str) -> int:
        removed = super().drop_generation(epoch)
        signal.raise_signal(signal.SIGINT)
        return removed


@pytest.mark.parametrize("at", ["closing the replayer", "dropping the replaced generation"])
def test_an_interrupt_once_the_last_pass_is_done_lets_the_rebuild_finish(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch, at: str
) -> None:
    # It said the last pass had not finished, or printed "Aborted!", for a rebuild that was done.
    replaced = a_generation_served_and_an_event_to_replay(writer, kafka_topic)
    used = writer
    if at == "closing the replayer":
        close = Replayer.close

        def close_then_interrupt(self: Replayer) -> None:
            close(self)
            signal.raise_signal(signal.SIGINT)

        monkeypatch.setattr(Replayer, "close", close_then_interrupt)
    else:
        used = InterruptedAsItDrops(writer.client, prefix=key_prefix, timeline=TimelineSettings())

    waits: list[float] = []
    clock = SimpleNamespace(perf_counter=time.perf_counter, monotonic=time.monotonic, sleep=waits.append)
    monkeypatch.setattr("events.rebuild.time", clock)
    report = rebuild(
        kafka=KafkaSettings(topic=kafka_topic),
        writer=used,
        default_region="GB",
        erasures=ERASURES,
        grace_s=60,
        cleanup_guard=uninterrupted,  # as the CLI's: the interrupt takes effect once the step is done
    )

    # Interrupted as it closed the replayer, it does not wait the grace period out.
    assert waits == ([0] if at == "closing the replayer" else [60])
    assert report.previous_epoch == replaced
    assert writer.current_epoch() == report.epoch
    assert generations(writer.client, key_prefix) == {report.epoch}
    assert writer.unserved_generations() == []


def interrupted_as_the_cli_guards(writer: ProjectionWriter, kafka_topic: str) -> RebuildInterrupted:
    """A rebuild that an interrupt stops, its cleanup guarded as the CLI's is; what it raised."""
    with pytest.raises(RebuildInterrupted) as raised:
        rebuild_topic(kafka_topic, writer, cleanup_guard=uninterrupted)
    return raised.value


class FailsReadingTheServedGeneration(ProjectionWriter):
    """A writer that Redis fails as the rebuild reads the generation served, just before its switch."""

    def current_epoch(self) -> str:
        raise redis.ConnectionError("Redis went away")


def test_an_interrupt_during_the_cleanup_after_a_failure_does_not_hide_the_failure(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It said only "interrupted", as if nothing had gone wrong before Ctrl-C.
    a_generation_served_and_an_event_to_replay(writer, kafka_topic)
    close = Replayer.close

    def close_then_interrupt(self: Replayer) -> None:
        close(self)
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(Replayer, "close", close_then_interrupt)
    failing = FailsReadingTheServedGeneration(writer.client, prefix=key_prefix, timeline=TimelineSettings())
    message = interrupted_as_the_cli_guards(failing, kafka_topic)

    assert str(message).endswith("; it had failed before the interrupt (ConnectionError)")
    assert "its generation" in str(message)
    assert "was removed" in str(message)
    assert isinstance(message.__cause__, redis.ConnectionError)


class NotesItsSwitch(ProjectionWriter):
    switched = False

    def switch_epoch(self, epoch: str) -> None:
        super().switch_epoch(epoch)
        self.switched = True


def test_an_interrupt_while_an_error_is_waited_out_is_not_told_as_a_failure(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C during the wait before a retry said the rebuild "had failed": it had not, it was retrying.
    a_generation_served_and_an_event_to_replay(writer, kafka_topic)
    noting = NotesItsSwitch(writer.client, prefix=key_prefix, timeline=TimelineSettings())
    catch_up = Replayer.catch_up
    blips: list[int] = []

    def blips_once_after_the_switch(self: Replayer, progress: Any) -> int:
        if noting.switched and not blips:
            blips.append(1)
            raise redis.ConnectionError("Redis went away for a moment")
        return catch_up(self, progress)

    def interrupted_wait(_seconds: float) -> None:
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(Replayer, "catch_up", blips_once_after_the_switch)
    clock = SimpleNamespace(perf_counter=time.perf_counter, monotonic=time.monotonic, sleep=interrupted_wait)
    monkeypatch.setattr("events.rebuild.time", clock)
    message = interrupted_as_the_cli_guards(noting, kafka_topic)

    assert blips == [1]
    assert str(message).startswith("rebuild interrupted after its switch")
    assert "failed" not in str(message)
    assert message.__cause__ is None


def test_the_rebuild_commands_summary_accounts_for_every_record_it_read(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str
) -> None:
    # "4261 records replayed, 4207 changes, 42 skipped as unusable": the events applied already (a
    # redrive's twice) were in no count, and the skipped were all called unusable, whatever their reason.
    event = make_event(f"C-{uuid.uuid4().hex[:8]}")
    caller = make_event("C-unused").model_copy(update={"subject": None, "citizenphone": "07700 900999"})
    produce_events(kafka_topic, [event, event, caller])
    producer = create_producer(BOOTSTRAP)
    try:
        producer.send(kafka_topic, value=b"{not json", partition=0).get(timeout=30)
    finally:
        producer.close()
    env = {"CITIZEN_CONTEXT_KAFKA_TOPIC": kafka_topic, "CITIZEN_CONTEXT_REDIS_KEY_PREFIX": key_prefix}

    result = CliRunner().invoke(main, ["rebuild", "--grace", "0"], env=env)

    assert result.exit_code == 0, result.output
    assert "4 records replayed in " in result.output
    assert (
        ": 1 change, 1 changing nothing (applied already, older than what is held, or of an erased citizen), "
        "2 skipped (1 not-json, 1 unresolved-identity); "
    ) in result.output


class PublishesAtItsSwitch(NotesItsSwitch):
    """A writer that has `arrivals` published to `topic` just before its switch: the rebuild's last pass
    reads them."""

    def __init__(self, *args: Any, topic: str, arrivals: list[CloudEvent], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.topic, self.arrivals = topic, arrivals

    def switch_epoch(self, epoch: str) -> None:
        produce_events(self.topic, self.arrivals)
        super().switch_epoch(epoch)


def test_records_read_by_a_pass_that_failed_and_was_tried_again_are_in_the_rebuilds_count(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pass counted its records once it had read them all: Kafka failing part-way, it was tried again
    # from where it stopped, and the records it had read (and applied) were in no count.
    monkeypatch.setattr(events.rebuild, "REPLAY_POLL_RECORDS", 10)  # the last pass polls three times
    a_generation_served_and_an_event_to_replay(writer, kafka_topic)
    citizens = [f"C-{uuid.uuid4().hex[:8]}" for _ in range(25)]
    arrivals = [make_event(citizen) for citizen in citizens]
    publishing = PublishesAtItsSwitch(
        writer.client, prefix=key_prefix, timeline=TimelineSettings(), topic=kafka_topic, arrivals=arrivals
    )
    poll = KafkaConsumer.poll
    polls_after_the_switch: list[int] = []

    def fails_the_second_poll_after_the_switch(self: KafkaConsumer, *args: Any, **kwargs: Any) -> Any:
        if publishing.switched:
            polls_after_the_switch.append(1)
            if len(polls_after_the_switch) == 2:
                raise KafkaTimeoutError("Kafka away for a moment")
        return poll(self, *args, **kwargs)

    monkeypatch.setattr(KafkaConsumer, "poll", fails_the_second_poll_after_the_switch)
    kafka = KafkaSettings(topic=kafka_topic, max_poll_records=10)
    report = rebuild(kafka=kafka, writer=publishing, default_region="GB", erasures=ERASURES, grace_s=0)

    assert len(polls_after_the_switch) > 2  # failed once, then tried again
    assert (report.records, report.applied, report.skipped) == (26, 26, 0)
    served = writer.current_epoch()
    for citizen in citizens:  # the first poll's records too: applied before the failure
        assert writer.client.exists(CitizenKeys(key_prefix, served, citizen).timeline)
