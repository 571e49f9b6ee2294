"""Repave: rebuild the projection from Kafka into a new generation, then switch readers to it.

1. Replay the topic from its earliest offsets into a new generation (epoch) that nobody reads yet,
   while the live consumer keeps serving the current one. Changes are not published meanwhile.
2. Catch up until few records remain, switch the served epoch atomically, then catch up once more: that
   last pass covers whatever the live consumer applied to the old generation just before the switch.
   After the switch the live consumer writes to the new generation too; both writers are idempotent.
3. Announce the new epoch (every open stream re-syncs), wait a moment for any batch still in flight
   against the old generation, and delete the old generation.
If anything fails before the switch, the half-built generation is deleted and the served one is untouched.
From before its first write until it is served, the new generation is held unserved (and so is the old one
from just before the switch until it is dropped): erasures reach it, so a rebuild stopped before its switch
or its drop (killed, say) leaves nothing of an erased citizen behind. The hold is renewed before a write
whenever it is due, so it always outlasts every key written.

Identity resolution depends on order across partitions: an event that names a citizen by phone number
lives in another partition than the profile update that taught the number. Live consumption saw them in
the order they arrived; a replay reads partitions in whatever order the brokers serve them. So the
replay holds back the events it cannot resolve yet and retries them once each pass has read everything
up to the partitions' ends, when the index holds all the topic teaches. (An event that live consumption
dead-lettered and nobody redrove is therefore resolved by a rebuild if the topic taught its identifier.)

As in the live consumer, Redis applies one batch while the next is read and decoded, one batch in flight,
in order; a batch that resolves identifiers waits for it, so the index holds what came before.
"""

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
import structlog
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import CorruptRecordError, KafkaError

from context.store import HOLD_RENEWAL_S, ApplyResult, ProjectionWriter, SentBatch, new_epoch
from events.pipeline import PreparedBatch, decode_batch, refused_letters, resolve_batch
from events.rebuild_shares import ReplayShares, ShareDone, shares_worth_forking
from events.records import KafkaRecord, polled_records
from events.settings import RECONNECT_BACKOFF_MAX_MS, KafkaSettings
from events.signing import ErasureSigner
from events.unreadable import read_again, step_past, unreadable_record

log = structlog.get_logger("rebuild")

# Records skipped that are logged one by one, per reason; the rest are counted when the rebuild finishes.
LOGGED_SKIPS_PER_REASON = 10

Progress = Callable[[int], None]


class RebuildInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped a rebuild before it finished; the message says what it left."""


class MissingTopic(Exception):
    """The topic to rebuild from does not exist: replaying nothing and switching to that would serve every
    reader an empty projection (a mistyped or other deployment's topic name, say). Nothing is changed."""

    def __init__(self, topic: str) -> None:
        super().__init__(
            f"the topic {topic!r} does not exist: there is nothing to rebuild the projection from"
        )
        self.topic = topic


@dataclass(frozen=True)
class RebuildReport:
    """What a rebuild did."""

    epoch: str
    previous_epoch: str | None
    records: int
    applied: int
    skipped: int
    seconds: float
    keys_removed: int
    skipped_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def unchanged(self) -> int:
        """Records read that changed nothing: events applied already (a redrive, a publisher's retry), older
        than what the projection holds, or of a citizen erased since."""
        return max(self.records - self.applied - self.skipped, 0)

    @property
    def records_per_s(self) -> float:
        """Replay throughput."""
        return self.records / self.seconds if self.seconds > 0 else 0.0


# A replay reads what is already in the topic, where nobody waits for one event: larger batches spread each
# batch's fixed costs (the poll, sending the batch, reading its replies) over more events.
REPLAY_POLL_RECORDS = 2000
# How long the broker may hold a fetch that finds no new records. A replay that reaches a partition's end
# leaves such a fetch waiting, and the broker answers one connection's requests in order: the end offsets
# asked for by the next pass waited behind it for kafka-python's default 500 ms (0.47 s of a 9 s replay of
# 200,000 events, measured with py-spy). Nothing waits for new records during a replay.
REPLAY_FETCH_WAIT_MS = 10


# A parallel replay's processes (events/rebuild_shares.py), by default: one per core of the machine measured
# (README, Benchmarks), leaving Redis to share them.
REPLAY_PROCESSES = 2
# Fewer records than this are replayed by the rebuild's own process: forking and joining would cost more.
PARALLEL_REPLAY_MIN_RECORDS = 20_000


def _replay_consumer(kafka: KafkaSettings, **options: Any) -> KafkaConsumer:
    """A consumer of the rebuild's own: no consumer group, nothing committed; `options` as kafka-python's."""
    return KafkaConsumer(
        bootstrap_servers=kafka.bootstrap_list,
        group_id=None,
        enable_auto_commit=False,
        client_id="citizen-context-rebuild",
        reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
        **options,
    )


class Replayer:
    """Reads every partition of the topic with manual assignment (no consumer group, nothing committed)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        writer: ProjectionWriter,
        *,
        epoch: str,
        default_region: str,
        erasures: ErasureSigner,
        share: tuple[int, int] | None = None,
    ) -> None:
        """`share`: (n, of) to read only the partitions whose number is n modulo `of` (one process of a
        parallel replay, events/rebuild_shares.py); every partition by default."""
        self._consumer = _replay_consumer(
            kafka,
            max_poll_records=max(kafka.max_poll_records, REPLAY_POLL_RECORDS),
            fetch_max_wait_ms=REPLAY_FETCH_WAIT_MS,
            # A position that falls off the log while it is read (retention deleting the oldest segment,
            # an operator's delete-records) resumes from the log's new start: kafka-python's default moves
            # it to the end, and the pass would find the partition done, skipping the rest of it silently.
            auto_offset_reset="earliest",
        )
        partitions = self._consumer.partitions_for_topic(kafka.topic)
        if not partitions:
            self._consumer.close()
            raise MissingTopic(kafka.topic)
        self.partitions = [
            TopicPartition(kafka.topic, p)
            for p in sorted(partitions)
            if share is None or p % share[1] == share[0]
        ]
        self._consumer.assign(self.partitions)
        self._consumer.seek_to_beginning(*self.partitions)
        self._bootstrap = kafka.bootstrap_list
        self._writer = writer
        self._epoch = epoch
        self._default_region = default_region
        self._erasures = erasures
        self.records = self.applied = self.skipped = 0
        self.skipped_by_reason: dict[str, int] = {}
        # Events whose citizen was not known yet when read; retried after each pass, kept across passes. A
        # share's replayer keeps them for the rebuild's: the other shares may not have taught the index all
        # the topic teaches yet, and a number that moved could resolve to its previous holder.
        self.held_back: list[KafkaRecord] = []
        self._share = share
        # The batch Redis was sent last, and its replies (None when sending failed: it is applied again).
        self._in_flight: tuple[PreparedBatch, SentBatch | None] | None = None
        # When the generation's hold is due next (see _hold): at once, before the first write.
        self._renew_hold_at = float("-inf")

    def positions(self) -> dict[int, int]:
        """The next offset to read of each partition read (by partition number)."""
        return {tp.partition: self._consumer.position(tp) for tp in self.partitions}

    def take_over(self, shares: Sequence[ShareDone]) -> None:
        """Go on from where the processes of a parallel replay stopped: their positions, counts and the
        records they held back (retried at the end of this replayer's next pass)."""
        for done in shares:
            for tp in self.partitions:
                if tp.partition in done.positions:
                    self._consumer.seek(tp, done.positions[tp.partition])
            self.records += done.records
            self.applied += done.applied
            self.skipped += sum(done.skipped_by_reason.values())
            for reason, count in done.skipped_by_reason.items():
                self.skipped_by_reason[reason] = self.skipped_by_reason.get(reason, 0) + count
            self.held_back += done.held_back

    def remaining(self) -> int:
        """Records between the current positions and the ends of the partitions."""
        ends = self._consumer.end_offsets(self.partitions)
        return sum(max(ends[tp] - self._consumer.position(tp), 0) for tp in self.partitions)

    def catch_up(self, progress: Progress) -> int:
        """Apply everything up to the partitions' current ends; returns how many records were read."""
        ends = self._consumer.end_offsets(self.partitions)
        pending = {tp for tp in self.partitions if self._consumer.position(tp) < ends[tp]}
        read = 0
        while pending:
            try:
                polled = self._consumer.poll(timeout_ms=1000)
            except CorruptRecordError as error:
                # Read again leniently, or given up by its position; polling again would never return
                # (events/unreadable.py).
                polled = self._read_past_unreadable(error)
            records = polled_records(polled)
            if records:
                # Counted as read at once: a pass that fails later is tried again from where it stopped, and
                # these records are not read again.
                self.records += len(records)
                read += len(records)
                self.held_back += self._apply(records, progress)
            pending = {tp for tp in pending if self._consumer.position(tp) < ends[tp]}
        self._finish_in_flight()
        if self.held_back and self._share is None:
            self.held_back = self._apply(self.held_back, progress=None)
            self._finish_in_flight()
        return read

    def _read_past_unreadable(self, error: CorruptRecordError) -> dict[TopicPartition, Sequence[KafkaRecord]]:
        """As the live consumer does (ProjectionConsumer._read_past_unreadable): the records at the failed
        position, read again by a reader that takes header names that are not UTF-8; or, if even it cannot
        read them, the record there counted as skipped and stepped past (the consumer dead-lettered it)."""
        found = unreadable_record(self._consumer)
        if found is None:
            raise error  # which record it is cannot be told: failing says so, where polling would hang
        partition, offset = found
        polled = read_again(
            self._consumer, self._bootstrap, partition, offset, max_records=REPLAY_POLL_RECORDS
        )
        if polled is None:
            # Kafka did not answer the second reader: nothing is given up; the next poll meets it again.
            log.warning("kafka unavailable", step="read again", partition=partition.partition)
            time.sleep(1.0)
            return {}
        if polled:
            return polled
        step_past(self._consumer, partition, offset)
        self.records += 1
        self._skip(partition.topic, partition.partition, offset, "unreadable")
        return {}

    def give_up_on_held_back(self) -> None:
        """Skip what never resolved: the consumer dead-lettered it, unless it resolved it through an
        identifier that an event since let go by the topic's retention had taught."""
        for record in self.held_back:
            self._skip(record.topic, record.partition, record.offset, "unresolved-identity")
        self.held_back = []

    def _skip(self, topic: str, partition: int, offset: int, reason: str, **detail: str) -> None:
        """Count a record skipped, and log it by its place and reason: each of the first few of a reason,
        then only their count when the rebuild ends (a topic can hold many records the contract refuses,
        each dead-lettered and logged once already, by the consumer)."""
        self.skipped += 1
        self.skipped_by_reason[reason] = seen = self.skipped_by_reason.get(reason, 0) + 1
        if seen <= LOGGED_SKIPS_PER_REASON:
            log.warning(
                "rebuild skipped a record",
                topic=topic,
                partition=partition,
                offset=offset,
                reason=reason,
                **detail,
            )

    def _apply(self, records: list[KafkaRecord], progress: Progress | None) -> list[KafkaRecord]:
        """Send a batch to Redis; returns the records whose citizen could not be resolved yet."""
        decoded = decode_batch(records, default_region=self._default_region, erasures=self._erasures)
        if decoded.needs_index:
            self._finish_in_flight()
        # Resolving reads the index and the erasure marks: a failure for want of Redis is waited out here,
        # as a write's is (the positions are past these records already, see _finish_in_flight).
        batch = _until_done(
            lambda: resolve_batch(
                decoded, writer=self._writer, epoch=self._epoch, default_region=self._default_region
            ),
            retry_on=_REDIS_AWAY,
            what="resolve",
        )
        self._finish_in_flight()
        self._in_flight = (batch, self._send(batch))
        if progress is not None:
            progress(len(records))
        unresolved = [
            letter.record for letter in batch.dead_letters if letter.reason == "unresolved-identity"
        ]
        # What the contract refuses was dead-lettered when the consumer first met it; a rebuild only skips
        # it. Each is logged by its place and reason all the same: a record the consumer took under an
        # earlier contract (one with NaN in its data, or over today's size limit) is skipped now, and is
        # then in no dead letter (README, Rebuild).
        for letter in batch.dead_letters:
            if letter.reason != "unresolved-identity":
                record = letter.record
                self._skip(record.topic, record.partition, record.offset, letter.reason)
        return unresolved

    def _hold(self) -> None:
        """Hold the generation unserved (ProjectionWriter.hold_unserved) before a write, when the hold is
        due: before the first write, then well within the time each hold covers."""
        if time.monotonic() >= self._renew_hold_at:
            self._writer.hold_unserved(self._epoch)
            self._renew_hold_at = time.monotonic() + HOLD_RENEWAL_S / 2

    def _send(self, batch: PreparedBatch) -> SentBatch | None:
        try:
            self._hold()
            return self._writer.send_batch(batch.writes, epoch=self._epoch, publish=False)
        except _REDIS_AWAY:
            return None  # applied again, with backoff, when the batch is finished

    def _finish_in_flight(self) -> None:
        """Wait for the batch in flight to be applied (its failure is raised here)."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is None:
            return
        batch, sent = in_flight

        # A write that fails for want of Redis is tried again here, not by replaying the step: the
        # consumer's positions are already past this batch (and the next, read meanwhile), so a step
        # replayed after the switch would leave both out of the served generation. Applying is idempotent.
        def write() -> int:
            nonlocal sent
            first, sent = sent, None
            if first is not None:
                results = first.results()
            else:
                self._hold()
                results = self._writer.apply_batch(batch.writes, epoch=self._epoch, publish=False)
            self._skip_refused(batch, results)
            return sum(result.applied for result in results)

        self.applied += _until_done(write, retry_on=_REDIS_AWAY, what="write")

    def _skip_refused(self, batch: PreparedBatch, results: list[ApplyResult]) -> None:
        """Skip the events Redis refused, saying where they are: the consumer dead-lettered them when it
        first met these records (or will when it does), as it does every event Redis refuses."""
        for letter in refused_letters(batch, results):
            record = letter.record
            self._skip(record.topic, record.partition, record.offset, letter.reason, detail=letter.detail)

    def close(self) -> None:
        """Leave the brokers. A batch still in flight (the rebuild failed) has its replies read, to give
        its connection back; an error among them is not raised over the failure that ended the rebuild."""
        in_flight, self._in_flight = self._in_flight, None
        try:
            sent = in_flight[1] if in_flight is not None else None
            # Read only from a connection still open: reading a run whose connection was lost sends it again.
            if sent is not None and sent.connection_open:
                with contextlib.suppress(redis.RedisError):
                    sent.results()
        finally:
            self._consumer.close()


# What a batch write waits out: Redis away, read-only, out of memory or busy for a while (a restart, a
# failover), or without the scripts twice in a row. As in the live consumer, every error reply is waited
# out: the write cannot be replayed as a step, whose positions are already past the batch
# (see _finish_in_flight).
_REDIS_AWAY = (redis.ConnectionError, redis.TimeoutError, redis.ResponseError)
# What a whole step waits out: Redis or Kafka failing in any way.
_STEP_FAILED = (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, KafkaError)


Result = TypeVar("Result")


def _until_done(
    step: Callable[[], Result], *, retry_on: tuple[type[Exception], ...] = _STEP_FAILED, what: str = "step"
) -> Result:
    """Run `step` until it returns, waiting longer after each failure it may wait out."""
    delay = 0.2
    while True:
        try:
            return step()
        except retry_on as error:
            log.warning(f"rebuild {what} failed, retrying", error=type(error).__name__, retry_in_s=delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _drop_unfinished(writer: ProjectionWriter, epoch: str) -> bool:
    """Delete the generation of a rebuild that failed before its switch, if Redis answers (True if it did):
    raised from here, an error would hide the one that failed the rebuild (often the same outage). What is
    left stays held unserved, so erasures reach it, until its keys expire."""
    try:
        writer.drop_generation(epoch)
    except redis.RedisError as error:
        log.warning("rebuild left its unfinished generation", epoch=epoch, error=type(error).__name__)
        return False
    _release(writer, epoch)
    return True


def _interrupted(
    writer: ProjectionWriter, epoch: str, previous: str | None, *, dropped: bool, maybe_switched: bool
) -> "RebuildInterrupted":
    """Clean up after an interrupt before the rebuild's last pass finished, as far as Redis answers, and say
    what was left.

    Interrupted at or after its switch, the rebuild asks Redis which generation is served: the switch's
    answer may not have come. Not its own, it removes its generation (unless that is `dropped` already).
    Its own, the readers are told, and the one it replaced is removed (nothing reads it any more, and the
    topic holds everything it held); but the last pass, which covers what the consumer applied to the old
    generation just before the switch, may be missing."""
    held = [previous] if previous else []  # held unserved just before the switch
    ours = False
    if maybe_switched:
        try:
            ours = writer.current_epoch() == epoch
        except redis.RedisError as error:
            log.warning(
                "rebuild interrupted and Redis did not answer its cleanup", error=type(error).__name__
            )
            return RebuildInterrupted(
                f"rebuild interrupted at its switch, and Redis did not answer: whichever of {epoch} (new) "
                f"and {previous} is not served is left held unserved (erasures reach it) until its keys "
                "expire; run `citizen-context rebuild` again"
            )
    if not ours:
        _release(writer, *held)
        if dropped or _drop_unfinished(writer, epoch):
            return RebuildInterrupted(
                f"rebuild interrupted before its switch: its generation {epoch} was removed; the projection "
                "served is unchanged"
            )
        return RebuildInterrupted(
            f"rebuild interrupted before its switch, and Redis did not answer: its generation {epoch} is "
            "left held unserved (erasures reach it) until its keys expire; the projection served is unchanged"
        )
    try:
        writer.announce_epoch(epoch)
        if previous and previous != epoch:
            writer.drop_generation(previous)
        _release(writer, epoch, *held)
    except redis.RedisError as error:
        log.warning("rebuild interrupted and Redis did not answer its cleanup", error=type(error).__name__)
        return RebuildInterrupted(
            f"rebuild interrupted after its switch, and Redis did not answer: {epoch} is served, but "
            f"{previous} is left held unserved (erasures reach it) until its keys expire, and the last pass "
            "did not finish; run `citizen-context rebuild` again"
        )
    return RebuildInterrupted(
        f"rebuild interrupted after its switch: {epoch} is served and {previous} was removed, but its last "
        "pass did not finish, so events the consumer applied just before the switch may be missing from it; "
        "run `citizen-context rebuild` again"
    )


def _release(writer: ProjectionWriter, *epochs: str) -> None:
    """Take the generations off those held unserved, if Redis answers: a hold left behind only has erasures
    look at a generation served, or with nothing left in it, until it lapses by itself."""
    try:
        for epoch in epochs:
            writer.release_unserved(epoch)
    except redis.RedisError as error:
        log.warning("rebuild left a generation held unserved", epochs=epochs, error=type(error).__name__)


def _fork_shares(
    kafka: KafkaSettings,
    writer: ProjectionWriter,
    *,
    epoch: str,
    default_region: str,
    erasures: ErasureSigner,
    processes: int,
    at_least: int,
) -> ReplayShares | None:
    """The processes of a parallel replay, forked and waiting; None when the topic is too small for one (or
    missing: the rebuild's replayer says so)."""
    if processes <= 1:
        return None
    probe = _replay_consumer(kafka)
    try:
        numbers = probe.partitions_for_topic(kafka.topic) or set()
        partitions = [TopicPartition(kafka.topic, number) for number in numbers]
        ends = probe.end_offsets(partitions) if partitions else {}
        starts = probe.beginning_offsets(partitions) if partitions else {}
    finally:
        probe.close()  # and its network thread with it, before any fork
    records = sum(ends[tp] - starts[tp] for tp in partitions)
    count = shares_worth_forking(records, len(partitions), processes, at_least=at_least)
    if count <= 1:
        return None

    def make_replayer(share: int, of: int) -> Replayer:
        return Replayer(
            kafka, writer, epoch=epoch, default_region=default_region, erasures=erasures, share=(share, of)
        )

    return ReplayShares(make_replayer, count)


def rebuild(
    *,
    kafka: KafkaSettings,
    writer: ProjectionWriter,
    default_region: str,
    erasures: ErasureSigner,
    on_start: Callable[[int], None] = lambda _total: None,
    progress: Progress = lambda _n: None,
    settle_below: int = 1000,
    grace_s: float = 2.0,
    cleanup_guard: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
    processes: int = REPLAY_PROCESSES,
    parallel_from: int = PARALLEL_REPLAY_MIN_RECORDS,
) -> RebuildReport:
    """Rebuild the projection from the earliest offsets and switch to it (see the module docstring).

    A KeyboardInterrupt (Ctrl-C; the CLI makes SIGTERM one) before the last pass has finished is raised
    again as `RebuildInterrupted`, once what the rebuild left is cleaned up as far as Redis answers; one
    after it (the grace period, the cleanup) only cuts the grace period short: the rebuild finishes.
    Cleanups run within `cleanup_guard`, which the CLI makes hold a further interrupt back until they end
    (without one, as here by default, a second interrupt can cut a cleanup short).
    A topic of at least `parallel_from` records has its bulk replayed by `processes` processes at once
    (events/rebuild_shares.py); 1 replays it in this one."""
    if not 0 <= grace_s < math.inf:  # NaN too: it would fail the sleep after the switch
        raise ValueError(f"grace_s must be a finite number of seconds, at least 0, not {grace_s!r}")
    epoch = new_epoch()
    started = time.perf_counter()
    shares: ReplayShares | None = None
    try:
        # Forked before this process makes a Kafka client of its own; they write nothing until `run`.
        shares = _fork_shares(
            kafka,
            writer,
            epoch=epoch,
            default_region=default_region,
            erasures=erasures,
            processes=processes,
            at_least=parallel_from,
        )
        # The replayer holds the generation unserved from before its first write, so that every erasure
        # reaches it, even should this rebuild stop before its switch and leave it behind (until its keys
        # expire). Making it writes nothing.
        replayer = Replayer(kafka, writer, epoch=epoch, default_region=default_region, erasures=erasures)
    except BaseException as error:
        if shares is not None:
            shares.close()
        if isinstance(error, KeyboardInterrupt):
            raise RebuildInterrupted("rebuild interrupted before it started: nothing was written") from None
        raise
    switched = dropped = finished = False
    previous: str | None = None
    failure: Exception | None = None  # what failed the rebuild, should Ctrl-C then land in its cleanup
    try:
        try:
            on_start(replayer.remaining())
            log.info(
                "rebuild started",
                epoch=epoch,
                partitions=len(replayer.partitions),
                processes=1 if shares is None else shares.count,
            )
            if shares is not None:
                replayer.take_over(shares.run(progress))
                shares.close()
            while replayer.catch_up(progress) > settle_below:
                pass
            # The generation served is read before the switch, not taken from its answer: a switch whose
            # answer was lost, and was sent again, finds itself done, and would name the new one as the
            # previous one.
            previous = writer.current_epoch()
            # Retired by the switch, it holds every citizen's keys until it is dropped: erasures reach it.
            writer.hold_unserved(previous)
            # From here on the switch may have happened even if its answer never came: the new generation
            # is kept, not dropped (it may be served), and a rebuild failing now leaves it for its keys to
            # expire.
            switched = True
            writer.switch_epoch(epoch)
            # Past the switch, readers depend on this last pass: it is retried until it completes.
            _until_done(lambda: replayer.catch_up(progress))
            replayer.give_up_on_held_back()
            finished = True
        except Exception as error:
            failure = error
            raise
        finally:
            with cleanup_guard():
                if shares is not None:
                    shares.close()  # none of them writes after this, nor after the generation is dropped
                replayer.close()
                dropped = not switched and _drop_unfinished(writer, epoch)
    except KeyboardInterrupt:
        if not finished:
            # Ctrl-C may land as the cleanup after a failure runs: the failure is told, not hidden by it.
            # (Not the interrupt's context: that may be an error being waited out, which failed nothing.)
            with cleanup_guard():
                stopped = _interrupted(writer, epoch, previous, dropped=dropped, maybe_switched=switched)
                if failure is not None:
                    log.error("rebuild failed, then was interrupted", error=type(failure).__name__)
                    stopped = RebuildInterrupted(
                        f"{stopped}; it had failed before the interrupt ({type(failure).__name__})"
                    )
                raise stopped from failure
        # Only closing the replayer was left: the rebuild is done, and finishes without a grace period.
        grace_s = 0
    seconds = time.perf_counter() - started
    removed = 0
    try:
        with cleanup_guard():
            writer.announce_epoch(epoch)
        if previous and previous != epoch:
            time.sleep(grace_s)
    except KeyboardInterrupt:
        # The rebuild is done and served: an interrupt only cuts the wait for batches in flight short.
        log.warning("rebuild grace period cut short by an interrupt", previous=previous)
    try:
        with cleanup_guard():
            if previous and previous != epoch:
                removed = writer.drop_generation(previous)
            _release(writer, epoch, *([previous] if previous else []))
            log.info(
                "rebuild finished",
                epoch=epoch,
                previous=previous,
                records=replayer.records,
                skipped=replayer.skipped_by_reason,
                seconds=round(seconds, 2),
            )
    except KeyboardInterrupt:
        # Held back by the guard until the cleanup ended: nothing is left to do.
        log.warning("rebuild interrupted as it finished; it had finished")
    return RebuildReport(
        epoch=epoch,
        previous_epoch=previous,
        records=replayer.records,
        applied=replayer.applied,
        skipped=replayer.skipped,
        seconds=seconds,
        keys_removed=removed,
        skipped_by_reason=dict(replayer.skipped_by_reason),
    )
