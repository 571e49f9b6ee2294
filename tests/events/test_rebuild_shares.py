"""A rebuild whose bulk several processes replay at once, each a share of the partitions (against the real
Kafka and Redis): it builds what one process builds, and stops and cleans up as one does."""

import multiprocessing
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bench.produce import produce_topic
from bench.workload import Workload
from context.keys import CitizenKeys
from context.store import ProjectionWriter
from events.codec import encode_structured
from events.producer import create_producer
from events.rebuild import RebuildInterrupted, RebuildReport, Replayer, rebuild
from events.rebuild_shares import ReplayShares, ShareDone, ShareFailed, shares_worth_forking
from events.settings import KafkaSettings
from ops.cli import main
from tests.events.test_consumer import BOOTSTRAP
from tests.events.test_rebuild_switch import rebuild_command
from tests.factories import ERASURES, example_data, make_event


def test_a_topic_is_replayed_in_parallel_only_when_large_enough_and_never_by_more_than_its_partitions() -> (
    None
):
    assert shares_worth_forking(19_999, 6, 2, at_least=20_000) == 1
    assert shares_worth_forking(20_000, 6, 2, at_least=20_000) == 2
    assert shares_worth_forking(50_000, 2, 4, at_least=20_000) == 2
    assert shares_worth_forking(50_000, 1, 2, at_least=20_000) == 1
    assert shares_worth_forking(50_000, 0, 2, at_least=20_000) == 1


def a_topic_to_replay(topic: str) -> tuple[list[str], dict[str, str]]:
    """Citizens with events on every partition, callers known only by a phone number that a profile on
    another partition teaches, and a record the contract refuses; the citizens, and each caller's event id
    by citizen."""
    citizens = [f"C-{uuid.uuid4().hex[:8]}" for _ in range(12)]
    callers: dict[str, str] = {}
    producer = create_producer(BOOTSTRAP)
    try:
        for number, citizen in enumerate(citizens):
            partition = number % 3
            for minutes in (30, 20, 10):
                event = make_event(citizen, minutes_ago=minutes)
                producer.send(topic, value=encode_structured(event)[0], partition=partition)
            if number % 2 == 0:
                phone = f"07700 900{number:03d}"
                profile = make_event(
                    citizen,
                    minutes_ago=40,
                    type_="profile.updated",
                    data=example_data("profile.updated", phone=phone, email=None),
                )
                caller = make_event(citizen, minutes_ago=5, type_="call.started").model_copy(
                    update={"subject": None, "citizenphone": phone}
                )
                # The caller's event on the partition the next share reads: only its profile, elsewhere,
                # resolves it.
                producer.send(topic, value=encode_structured(caller)[0], partition=(partition + 1) % 3)
                producer.send(topic, value=encode_structured(profile)[0], partition=partition)
                callers[citizen] = caller.id
        producer.send(topic, value=b"{not json", partition=1)
        producer.flush(timeout=30)
    finally:
        producer.close()
    return citizens, callers


def timelines(writer: ProjectionWriter, prefix: str, epoch: str, citizens: list[str]) -> dict[str, list[str]]:
    return {
        citizen: [
            str(member)
            for member in writer.client.zrange(CitizenKeys(prefix, epoch, citizen).timeline, 0, -1)
        ]
        for citizen in citizens
    }


def test_a_parallel_replay_builds_what_one_process_builds(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    citizens, callers = a_topic_to_replay(kafka_topic)
    started: list[int] = []
    shares: list[ShareDone] = []
    run = ReplayShares.run

    def counted_run(self: ReplayShares, progress: Callable[[int], None]) -> list[ShareDone]:
        started.append(self.count)
        shares.extend(run(self, progress))
        return shares

    monkeypatch.setattr(ReplayShares, "run", counted_run)
    seen: list[int] = []
    kafka = KafkaSettings(topic=kafka_topic)

    def replayed(processes: int) -> tuple[RebuildReport, dict[str, list[str]]]:
        report = rebuild(
            kafka=kafka,
            writer=writer,
            default_region="GB",
            erasures=ERASURES,
            grace_s=0,
            processes=processes,
            parallel_from=0,
            progress=seen.append,
        )
        return report, timelines(writer, key_prefix, report.epoch, citizens)

    parallel, in_parallel = replayed(2)
    assert started == [2]
    # The shares read the whole topic between them (it held nothing more when they began), each its part.
    assert [done.records > 0 for done in shares] == [True, True]
    assert sum(done.records for done in shares) == parallel.records
    assert sum(seen) >= parallel.records  # every record read, by either share or the rebuild's own passes
    one, in_one = replayed(1)
    assert started == [2]  # one process replays alone

    assert in_parallel == in_one
    assert all(
        len(timeline) == 5 if citizen in callers else len(timeline) == 3
        for citizen, timeline in in_one.items()
    )
    for citizen, event_id in callers.items():
        assert any(event_id in member for member in in_parallel[citizen]), citizen
    assert (parallel.records, parallel.applied, parallel.skipped, parallel.skipped_by_reason) == (
        one.records,
        one.applied,
        one.skipped,
        one.skipped_by_reason,
    )
    assert (parallel.records, parallel.skipped_by_reason) == (12 * 3 + 6 * 2 + 1, {"not-json": 1})


def shares_patched(monkeypatch: pytest.MonkeyPatch, *, failing: int | None = None) -> None:
    """Each share's replay, in its own process, says it read a record, then fails (share `failing`) or
    waits far longer than any test (the others): stopped mid-replay, it writes nothing."""
    rebuilding = os.getpid()
    catch_up = Replayer.catch_up

    def share_catch_up(self: Replayer, progress: Callable[[int], None]) -> int:
        if os.getpid() == rebuilding:
            return catch_up(self, progress)
        progress(1)
        if self.partitions[0].partition == failing:
            raise RuntimeError("the share's replay failed")
        time.sleep(600)
        return catch_up(self, progress)

    monkeypatch.setattr(Replayer, "catch_up", share_catch_up)


def rebuilt_in_parallel(
    writer: ProjectionWriter, topic: str, progress: Callable[[int], None] = lambda _count: None
) -> RebuildReport:
    """A rebuild of `topic` by two processes, however few records it holds."""
    kafka = KafkaSettings(topic=topic)
    return rebuild(
        kafka=kafka,
        writer=writer,
        default_region="GB",
        erasures=ERASURES,
        grace_s=0,
        parallel_from=0,
        progress=progress,
    )


def nothing_of_a_rebuild_left(writer: ProjectionWriter, key_prefix: str, served: str) -> None:
    assert multiprocessing.active_children() == []  # every share's process stopped, not left to write
    assert writer.current_epoch() == served
    assert [key for key in writer.client.scan_iter(f"{key_prefix}:*") if ":{C-" in key] == []
    assert writer.unserved_generations() == []


def test_a_parallel_replay_interrupted_stops_its_processes_and_removes_its_generation(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_topic_to_replay(kafka_topic)
    served = writer.current_epoch()
    shares_patched(monkeypatch)

    def interrupt(_count: int) -> None:
        raise KeyboardInterrupt  # as Ctrl-C lands in the rebuild while its shares replay

    with pytest.raises(RebuildInterrupted, match="was removed"):
        rebuilt_in_parallel(writer, kafka_topic, progress=interrupt)

    nothing_of_a_rebuild_left(writer, key_prefix, served)


def test_a_share_that_fails_fails_the_rebuild_which_stops_the_others_and_removes_its_generation(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_topic_to_replay(kafka_topic)
    served = writer.current_epoch()
    shares_patched(monkeypatch, failing=0)

    with pytest.raises(ShareFailed, match=r"share 0 of 2: RuntimeError: the share's replay failed"):
        rebuilt_in_parallel(writer, kafka_topic)

    nothing_of_a_rebuild_left(writer, key_prefix, served)


def test_the_rebuild_command_says_which_share_failed_without_a_traceback(
    kafka_topic: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failed(**_arguments: object) -> RebuildReport:
        raise ShareFailed("a process of the parallel replay failed: share 1 of 2: KafkaTimeoutError: late")

    monkeypatch.setattr("events.rebuild.rebuild", failed)
    env = {"CITIZEN_CONTEXT_KAFKA_TOPIC": kafka_topic, "CITIZEN_CONTEXT_REDIS_KEY_PREFIX": key_prefix}
    result = CliRunner().invoke(main, ["rebuild", "--grace", "0", "--processes", "2"], env=env)

    assert result.exit_code == 1, result.output
    assert (
        "error: rebuild failed: a process of the parallel replay failed: share 1 of 2: KafkaTimeoutError: "
        "late; the projection served is unchanged"
    ) in result.output
    assert "Traceback" not in result.output


def test_a_share_whose_replayer_cannot_be_made_fails_the_rebuild_saying_why(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ended before it was told to start, it broke the pipe the word went through: the rebuild failed with
    # a bare BrokenPipeError, which the CLI took for a closed output and exited 1 in silence.
    a_topic_to_replay(kafka_topic)
    served = writer.current_epoch()
    make = Replayer.__init__

    def unmade(self: Replayer, *arguments: Any, share: tuple[int, int] | None = None, **options: Any) -> None:
        if share is not None:
            raise RuntimeError("no metadata in time")
        make(self, *arguments, **options)

    monkeypatch.setattr(Replayer, "__init__", unmade)
    with pytest.raises(ShareFailed, match=r"share \d of 2: RuntimeError: no metadata in time"):
        rebuilt_in_parallel(writer, kafka_topic)

    nothing_of_a_rebuild_left(writer, key_prefix, served)


def test_a_share_that_ends_without_a_word_is_named_with_its_exit_status(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_topic_to_replay(kafka_topic)
    served = writer.current_epoch()
    rebuilding = os.getpid()
    catch_up = Replayer.catch_up

    def dying(self: Replayer, progress: Callable[[int], None]) -> int:
        if os.getpid() != rebuilding:
            os._exit(3)  # as a process killed or crashed ends: no word to the rebuild
        return catch_up(self, progress)

    monkeypatch.setattr(Replayer, "catch_up", dying)
    with pytest.raises(ShareFailed, match=r"rebuild-share-\d ended without a word \(exit status 3\)"):
        rebuilt_in_parallel(writer, kafka_topic)

    nothing_of_a_rebuild_left(writer, key_prefix, served)


def test_the_rebuild_command_stopped_by_sigterm_during_its_parallel_replay_leaves_nothing(
    writer: ProjectionWriter, kafka_topic: str, key_prefix: str
) -> None:
    # The real command, forked shares and real signals: the CLI takes SIGTERM as Ctrl-C, its shares must not
    # (they stop when the rebuild tells them), and nothing of theirs may outlive the rebuild.
    produce_topic(BOOTSTRAP, kafka_topic, Workload(citizens=5_000), 60_000)
    served = writer.current_epoch()
    command = rebuild_command(kafka_topic, key_prefix, grace="0")
    try:
        assert command.stdout is not None
        output = ""
        while "processes=2" not in output:  # the shares are replaying from here
            line = command.stdout.readline()
            assert line, output
            output += line
        children = Path(f"/proc/{command.pid}/task/{command.pid}/children").read_text().split()
        assert len(children) == 2, output  # still replaying: the signal lands while they run
        command.send_signal(signal.SIGTERM)
        rest, _ = command.communicate(timeout=60)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
    output += rest

    assert command.returncode == 130, output
    assert "error: rebuild interrupted before its switch" in output
    assert "Traceback" not in output
    for child in children:
        assert not Path(f"/proc/{child}").exists(), output
    assert writer.current_epoch() == served
    assert [key for key in writer.client.scan_iter(f"{key_prefix}:*") if ":{B-" in key] == []
    assert writer.unserved_generations() == []
