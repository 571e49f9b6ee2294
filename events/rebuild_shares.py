"""The bulk of a rebuild replayed by several processes at once, each reading a share of the partitions.

A replay is bound by CPU: one replaying process (decoding, planning and packing in Python, one batch in
flight) and Redis's scripts took turns more than they ran together, and kept the machine's two cores about
four fifths busy (README, Benchmarks). Each process here replays the partitions whose number is its share's
modulo the number of processes, from the earliest offsets to the ends they had when it began, into the new
generation; the rebuild's own replayer then goes on from the positions they reached, with the records they
could not resolve yet, for its later passes, the switch and the last pass, as in a rebuild by one process.

Partitions are independent here as they are for the members of a consumer group: a citizen's events share
a partition (publishers key them by citizen), and an event naming a citizen only by an identifier that
another share teaches is held back and retried by the rebuild's replayer once every share is done, when
the index holds all the topic teaches (a share never retries it: a number that moved could resolve to its
previous holder, taught by one share before another teaches the new). The apply script orders what a
citizen's events change by the events' times, whatever order they come in.

The processes are forked before the rebuild makes any Kafka client of its own (kafka-python's network
thread would not survive a fork; only a probe that has closed precedes them), and they write nothing until
told to start: an interrupt before then leaves nothing written. Ctrl-C reaches them too (one process
group): they ignore it, and the rebuild stops them, as it does on SIGTERM or a failure, before it drops the
generation: a SIGTERM ends a share's replay as Ctrl-C ends one process's (the replies of the batch it sent
are read first), and a share that takes longer than STOP_WAIT_S is killed.
"""

import contextlib
import multiprocessing
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

import structlog

from events.records import KafkaRecord

log = structlog.get_logger("rebuild")

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
                    args=(make_replayer, share, processes, theirs, [*self._connections, ours]),
                    name=f"rebuild-share-{share}",
                    daemon=True,  # never outlives the rebuild, whatever ends it
                )
                # Ctrl-C or SIGTERM between the fork and the child's own handlers would run this process's
                # handlers there: both are held back until the child has set its own (and here, until it
                # is forked: then they are raised here, and this rebuild stops as it would have).
                held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
                try:
                    process.start()
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, held)
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
            # A process that ended already (its replayer could not be made, say) has said why: read below.
            with contextlib.suppress(OSError):
                connection.send("start")
        done: list[ShareDone] = []
        waiting = dict(zip(self._connections, self._processes, strict=True))
        while waiting:
            ready = wait(list(waiting))
            for connection in [c for c in waiting if c in ready]:
                try:
                    kind, body = connection.recv()
                except EOFError:
                    process = waiting[connection]
                    process.join(STOP_WAIT_S)
                    raise ShareFailed(
                        f"{process.name} ended without a word (exit status {process.exitcode})"
                    ) from None
                if kind == "progress":
                    progress(body)
                elif kind == "done":
                    done.append(body)
                    del waiting[connection]
                else:
                    raise ShareFailed(f"a process of the parallel replay failed: {body}")
        return done

    def close(self) -> None:
        """Stop the processes still running and wait for them: none writes to the generation after this
        returns. Each is asked first (SIGTERM: it reads the replies of the batch it sent, so none of its
        commands is still on its way to Redis), and killed if it takes longer than STOP_WAIT_S."""
        for connection in self._connections:
            connection.close()
        for process in self._processes:
            if process.is_alive():
                process.terminate()
        for process in self._processes:
            process.join(STOP_WAIT_S)
            if process.is_alive():
                log.warning("rebuild share killed", process=process.name, after_s=STOP_WAIT_S)
                process.kill()
                process.join()


# The signals that stop a rebuild (the CLI takes SIGTERM as Ctrl-C).
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _replay_share(
    make_replayer: Callable[[int, int], ShareReplayer],
    share: int,
    processes: int,
    connection: Connection,
    inherited: list[Connection],
) -> None:
    """A share's process: make its replayer, wait for the word, replay up to the ends, report."""
    # The rebuild's ends of the pipes, this share's and earlier shares': held here, a pipe would not tell its
    # process that the rebuild has gone.
    for theirs in inherited:
        theirs.close()
    # Ctrl-C reaches every process of the group: the rebuild stops this one (and cleans up) itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM, the rebuild's word to stop, ends the replay where it is, as Ctrl-C ends one process's.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
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
            replayer.close()  # reads the replies of the batch in flight, if any
        connection.send(("done", done))
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        return  # the rebuild stopped it, or is gone: nobody waits for a word
    except Exception as error:  # said to the rebuild, which fails with it
        with contextlib.suppress(OSError):
            connection.send(("failed", f"share {share} of {processes}: {type(error).__name__}: {error}"))


def shares_worth_forking(records: int, partitions: int, processes: int, *, at_least: int) -> int:
    """How many processes to replay a topic of `records` in `partitions` with (pure): one (no parallel
    replay) for fewer records than `at_least`, where forking and joining cost more than they save; never
    more than the partitions."""
    if records < at_least:
        return 1
    return max(1, min(processes, partitions))
