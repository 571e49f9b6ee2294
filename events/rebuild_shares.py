"""The bulk of a rebuild replayed by several processes at once, each reading a share of the partitions.

A replay is bound by CPU: one replaying process (decoding, planning and packing in Python, one batch in
flight) and Redis's scripts took turns more than they ran together, and kept the machine's two cores about
three quarters busy (README, Benchmarks). Each process here replays the partitions whose number is its share's
modulo the number of processes, from the earliest offsets to the ends they had when it began, into the new
generation; the rebuild's own replayer then goes on from the positions they reached, with the records they
could not resolve yet, for its later passes, the switch and the last pass, as in a rebuild by one process.

Partitions are independent here as they are for the members of a consumer group: a citizen's events share
a partition (publishers key them by citizen), and an event naming a citizen only by an identifier that
another share teaches is held back and retried by the rebuild's replayer, once every share is done, as one
replaying process retries it after each pass. The apply script orders what a citizen's events change by
the events' times, whatever order they come in.

The processes are forked before the rebuild makes any Kafka client of its own (kafka-python's network
thread would not survive a fork; only a probe that has closed precedes them), and they write nothing until
told to start: an interrupt before then leaves nothing written. Ctrl-C reaches them too (one process
group): they ignore it, and the rebuild stops them, as it does on SIGTERM or a failure, before it drops the
generation.
"""

import multiprocessing
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

from events.records import KafkaRecord

# How long a share's process is given to end once told to stop, before it is killed.
STOP_WAIT_S = 5.0


@dataclass
class ShareDone:
    """What one share's process replayed: where it stopped in each of its partitions, what it counted, and
    the records whose citizen it could not resolve (kafka-python's records, tuples, pickle as they are)."""

    positions: dict[int, int]
    records: int
    applied: int
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    held_back: list[KafkaRecord] = field(default_factory=list)


class ShareReplayer(Protocol):
    """The part of a rebuild's replayer (events.rebuild.Replayer) that a share's process uses."""

    records: int
    applied: int
    skipped_by_reason: dict[str, int]
    held_back: list[KafkaRecord]

    def catch_up(self, progress: Callable[[int], None]) -> int: ...

    def positions(self) -> dict[int, int]: ...

    def close(self) -> None: ...


class ShareFailed(Exception):
    """A share's process failed; the message says which and why."""


class ReplayShares:
    """The processes of a parallel replay, forked and waiting for `run`; `close` always, once done."""

    def __init__(self, make_replayer: Callable[[int, int], ShareReplayer], processes: int) -> None:
        context = multiprocessing.get_context("fork")
        self._connections: list[Connection] = []
        self._processes: list[Any] = []
        try:
            for share in range(processes):
                ours, theirs = context.Pipe()
                process = context.Process(
                    target=_replay_share,
                    args=(make_replayer, share, processes, theirs),
                    name=f"rebuild-share-{share}",
                    daemon=True,  # never outlives the rebuild, whatever ends it
                )
                process.start()
                theirs.close()
                self._connections.append(ours)
                self._processes.append(process)
        except BaseException:
            self.close()
            raise

    @property
    def count(self) -> int:
        """How many processes replay a share."""
        return len(self._processes)

    def run(self, progress: Callable[[int], None]) -> list[ShareDone]:
        """Start every share and wait until each is done; their records are handed to `progress` as they
        are read. Raises ShareFailed when one fails (the others are stopped by `close`)."""
        for connection in self._connections:
            connection.send("start")
        done: list[ShareDone] = []
        waiting = list(self._connections)
        while waiting:
            ready = wait(waiting)
            for connection in [c for c in waiting if c in ready]:
                try:
                    kind, body = connection.recv()
                except EOFError:
                    raise ShareFailed("a process of the parallel replay ended without a word") from None
                if kind == "progress":
                    progress(body)
                elif kind == "done":
                    done.append(body)
                    waiting.remove(connection)
                else:
                    raise ShareFailed(f"a process of the parallel replay failed: {body}")
        return done

    def close(self) -> None:
        """Stop the processes still running (killed if they take longer than STOP_WAIT_S) and wait for them:
        none writes to the generation after this returns."""
        for connection in self._connections:
            connection.close()
        for process in self._processes:
            if process.is_alive():
                process.terminate()
        for process in self._processes:
            process.join(STOP_WAIT_S)
            if process.is_alive():
                process.kill()
                process.join()


def _replay_share(
    make_replayer: Callable[[int, int], ShareReplayer], share: int, processes: int, connection: Connection
) -> None:
    """A share's process: make its replayer, wait for the word, replay up to the ends, report."""
    # Ctrl-C reaches every process of the group: the rebuild stops this one (and cleans up) itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM ends it at once, as a killed process ends (the CLI's own handler is the parent's, inherited).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        replayer = make_replayer(share, processes)
        try:
            if connection.recv() != "start":
                return
            replayer.catch_up(lambda count: connection.send(("progress", count)))
            done = ShareDone(
                positions=replayer.positions(),
                records=replayer.records,
                applied=replayer.applied,
                skipped_by_reason=dict(replayer.skipped_by_reason),
                held_back=list(replayer.held_back),
            )
        finally:
            replayer.close()
        connection.send(("done", done))
    except EOFError:
        return  # the rebuild closed its end: it stopped before starting this share
    except Exception as error:  # said to the rebuild, which fails with it
        connection.send(("failed", f"share {share} of {processes}: {type(error).__name__}: {error}"))


def shares_worth_forking(records: int, partitions: int, processes: int, *, at_least: int) -> int:
    """How many processes to replay a topic of `records` in `partitions` with (pure): one (no parallel
    replay) for fewer records than `at_least`, where forking and joining cost more than they save; never
    more than the partitions."""
    if records < at_least:
        return 1
    return max(1, min(processes, partitions))
