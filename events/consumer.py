"""The Kafka consumer loop that turns the interactions topic into the Redis projection.

Discipline: auto-commit is off; a batch's offsets are committed only after Redis has applied every
event of it and the broker has acknowledged every dead letter of it. A crash at any point redelivers
the batch, and the idempotent write path makes redelivery harmless. One KafkaConsumer per process:
kafka-python's consumer is not thread-safe, so only the main thread polls and commits, except for the
commit before a rebalance, which kafka-python runs on its network thread while the main thread waits in
poll (see _FinishBeforeRevoke).

Batches overlap: batch N's commands are sent to Redis, and while Redis runs them the loop polls and
decodes batch N+1; only then does it read N's replies (all there by then), publish N's dead letters and
send N+1. Python's decoding and Redis's scripts run on different cores instead of one after the other,
and on one thread: a writer thread of its own waited for the interpreter lock at every socket read, and
the lock's hand-overs left it unheld for a fifth of the time. At most one batch is in flight, and the next
is sent only once it is done, so batches are applied in the order they were read (per-citizen order
holds).

A batch's offsets are committed, explicitly, once its own writes and dead letters are done. While
consuming, the commit does not wait for the broker's answer (its round trip was a third of each loop at a
thousand events a second, and every record arriving meanwhile waited for it), and goes at most every
COMMIT_INTERVAL_S while batches follow each other; a revoke, a stop and an idle moment commit at once, and
a revoke and a stop wait for the answer. A batch that names citizens only by an identifier waits for the
batch in flight first: resolving it reads the identifier index, which must hold what earlier batches
taught. When the group takes partitions away, the batch in flight is finished and committed before they
go, so their next owner starts after it.

While Redis is unreachable the loop retries the batch with backoff and does not poll. If that lasts
longer than `max.poll.interval.ms`, the group reassigns the partitions; the commit that follows is then
refused, the batch is redelivered to the partitions' new owner, and nothing is lost either way.
"""

import random
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial

import redis
import structlog
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.errors import CommitFailedError, CorruptRecordError, KafkaError
from kafka.structs import OffsetAndMetadata

from context.identity import forget_recent_numbers
from context.store import ProjectionWriter, SentBatch
from events.deadletter import DeadLetterPublisher
from events.health import ConsumerHealth
from events.metrics import (
    BATCH_SECONDS,
    CONSUMER_LAG,
    EVENTS_APPLIED,
    EVENTS_DEAD_LETTERED,
    EVENTS_UNCHANGED,
    REDIS_RETRIES,
)
from events.pipeline import (
    DecodedBatch,
    PreparedBatch,
    decode_batch,
    refused_letters,
    resolve_batch,
)
from events.records import DeadLetter, IncomingRecord, KafkaRecord, polled_records, position
from events.settings import RECONNECT_BACKOFF_MAX_MS, KafkaSettings
from events.signing import UNSIGNED, UNVERIFIED, ErasureSigner
from events.topics import reachable
from events.unreadable import UNREADABLE_DETAIL, drop_unreadable, read_again, step_past, unreadable_record

log = structlog.get_logger("consumer")

# Transient: a restart, a failover (READONLY), memory pressure (OOM), a slow script. The batch is retried
# with backoff and /readyz says so; nothing is committed or dropped meanwhile.
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.ResponseError)
CHECK_INTERVAL_S = 5.0
MAX_BACKOFF_S = 5.0
# The phone numbers this process normalised lately (context/identity.py) are forgotten this often. An
# erasure empties them at once only in the process that applies it (the consumer reading its partition, the
# API replica that erased): the other consumers never see it, so what they keep is bounded in time instead.
NUMBERS_KEPT_S = 600.0
# While batches follow each other, their offsets are committed at most this often: each commit costs the
# loop a hand-over to kafka-python's network thread, and a crash redelivers at most this long's records,
# which the idempotent write path absorbs. Revokes, stops and idle moments commit at once.
COMMIT_INTERVAL_S = 0.1
# A commit that cannot reach the coordinator gives up after this long (the batch is then redelivered).
COMMIT_TIMEOUT_MS = 10_000


def create_consumer(kafka: KafkaSettings) -> KafkaConsumer:
    """A group member reading the interactions topic from the earliest uncommitted offset."""
    return KafkaConsumer(
        kafka.topic,
        bootstrap_servers=kafka.bootstrap_list,
        group_id=kafka.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=kafka.max_poll_records,
        session_timeout_ms=kafka.session_timeout_ms,
        heartbeat_interval_ms=kafka.heartbeat_interval_ms,
        # The default (5 minutes) would leave a consumer that subscribed while a topic was being created
        # without partitions for that long; 30 s bounds it.
        metadata_max_age_ms=30_000,
        client_id="citizen-context-consumer",
        reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
    )


@dataclass
class _InFlight:
    """A batch sent to Redis: its writes' replies to read, and the offsets to commit once it is done."""

    prepared: PreparedBatch
    # None when sending failed: the batch is applied again, with backoff, when it is finished.
    sent: SentBatch | None
    offsets: dict[TopicPartition, OffsetAndMetadata]
    records: int
    started: float


def next_offsets(records: Sequence[KafkaRecord]) -> dict[TopicPartition, OffsetAndMetadata]:
    """The offsets to commit once `records` are done: one past the last record of each partition."""
    last: dict[tuple[str, int], int] = {}
    for record in records:
        last[(record.topic, record.partition)] = record.offset
    return {
        TopicPartition(topic, partition): OffsetAndMetadata(offset + 1, "", -1)
        for (topic, partition), offset in last.items()
    }


@contextmanager
def _commit_failure_logged(records: int) -> Iterator[None]:
    """A commit waited for whose failure is logged, never raised: the batches are applied either way."""
    try:
        yield
    except CommitFailedError as error:
        # The group rebalanced while the batches were applied: their new owner will redeliver them, which
        # the idempotent write path absorbs. Nothing is lost; carry on with the new assignment.
        log.warning("commit refused after rebalance", records=records, error=str(error))
    except KafkaError as error:
        # The coordinator did not answer in time: the batches are applied but their offsets may not be
        # stored, so they may be redelivered, which is harmless. Carry on.
        log.warning("commit failed", records=records, error=type(error).__name__)


class _FinishBeforeRevoke(AsyncConsumerRebalanceListener):  # type: ignore[misc]
    """Finishes and commits the batch in flight before the group takes partitions away.

    kafka-python 3 calls the listener on its network thread, inside poll (the main thread waits for it
    meanwhile). From there a blocking commit is refused ("Cannot block on net.run() from the IO thread"),
    so the commit is sent and its answer awaited on that thread's own loop. (When the coordinator is not
    known, the wait ends once it is found, before the commit's answer: a commit that then fails only means
    the records are read again, which the write path absorbs.) Finishing the batch in flight blocks that
    thread, heartbeats included, for as long as reading its replies and publishing its dead letters takes,
    and for as long as Redis is away.
    """

    def __init__(self, owner: "ProjectionConsumer") -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        if revoked:
            await self._owner.commit_before_revoke()
            self._owner.forget_positions(revoked)

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        # A partition given back after another member had it has moved on meanwhile: the position this
        # process last read in it would report that member's work as lag, until a record came.
        self._owner.forget_positions(assigned)


class ProjectionConsumer:
    """Polls batches, prepares them, applies them to Redis, dead-letters the rest, then commits."""

    def __init__(
        self,
        *,
        consumer: KafkaConsumer,
        writer: ProjectionWriter,
        dead_letters: DeadLetterPublisher,
        health: ConsumerHealth,
        poll_timeout_ms: int,
        default_region: str,
        erasures: ErasureSigner,
        bootstrap: list[str],
    ) -> None:
        self._bootstrap = bootstrap
        self._positions: dict[tuple[str, int], int] = {}
        self._consumer = consumer
        self._writer = writer
        self._dead_letters = dead_letters
        self._health = health
        self._poll_timeout_ms = poll_timeout_ms
        self._default_region = default_region
        self._erasures = erasures
        self._next_check = 0.0
        self._numbers_forgotten_at = time.monotonic()
        self._stop = threading.Event()
        self._in_flight: _InFlight | None = None
        self._stopped_uncommitted = False
        # Offsets of done batches not yet sent to the group coordinator (see _send_commit).
        self._unsent_offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        self._unsent_records = 0
        self._last_commit = 0.0

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set; the batch in hand is finished (or left uncommitted) first."""
        self._stop = stop
        # The same subscription, with a listener that finishes the batch in flight before a rebalance.
        topics = self._consumer.subscription()
        if topics:
            self._consumer.subscribe(topics=sorted(topics), listener=_FinishBeforeRevoke(self))
        self._warm_up(stop)
        try:
            self._consume(stop)
        finally:
            self.finish_in_flight()

    def _consume(self, stop: threading.Event) -> None:
        while not stop.is_set() and not self._stopped_uncommitted:
            self._check_dependencies()
            self._forget_old_numbers()
            try:
                polled = self._consumer.poll(timeout_ms=self._poll_timeout_ms)
            except CorruptRecordError as error:
                # What the client cannot read is read again leniently, or given up by its position; polling
                # again would never return (events/unreadable.py).
                polled = self._read_past_unreadable(error)
            except KafkaError as error:
                # The brokers are unreachable: nothing was taken, so nothing is at risk. Wait and poll again.
                self._health.kafka_ok = False
                log.warning("kafka unavailable", error=type(error).__name__)
                stop.wait(1.0)
                continue
            records = polled_records(polled)
            offsets = next_offsets(records)
            for partition, offset in offsets.items():
                self._positions[(partition.topic, partition.partition)] = offset.offset
            if not records:
                if self._in_flight is not None:
                    self.finish_in_flight(wait_for_commit=False)
                self._send_commit(wait=False, due=True)  # nothing else to do: no reason to hold it back
                self._record_lag()
                continue
            started = time.perf_counter()
            decoded = decode_batch(records, default_region=self._default_region, erasures=self._erasures)
            if decoded.needs_index:
                self.finish_in_flight(wait_for_commit=False)
            prepared = self._until_done(partial(self._resolve, decoded), stop, what="resolve")
            done = self._finish_writes()
            if prepared is None or self._stopped_uncommitted:
                if done is not None:
                    self._committed(done)
                log.info("stopping with batch uncommitted", records=len(records))
                return
            self._in_flight = _InFlight(
                prepared=prepared,
                sent=self._send(prepared),
                offsets=offsets,
                records=len(records),
                started=started,
            )
            # The previous batch is committed while Redis applies this one.
            if done is not None:
                self._committed(done, wait=False)

    def _read_past_unreadable(self, error: CorruptRecordError) -> dict[TopicPartition, Sequence[KafkaRecord]]:
        """The records at the position where the client failed, read again by a reader that takes header
        names that are not UTF-8, for the loop to use as a poll's (the consumer is moved past them). If even
        that reader cannot read them, the record there is dead-lettered by its position (its bytes are out of
        reach) and stepped past, and nothing is returned."""
        found = unreadable_record(self._consumer)
        if found is None:
            # Which record it is cannot be told (a fetch the broker answered as corrupt): as for any failed
            # poll, nothing was taken; not ready, wait and poll again (what the fetcher holds is fetched
            # anew: records not returned yet are read again from the position, none lost).
            drop_unreadable(self._consumer)
            self._health.kafka_ok = False
            log.warning("kafka unavailable", error=type(error).__name__)
            self._stop.wait(1.0)
            return {}
        partition, offset = found
        max_records = self._consumer.config["max_poll_records"]
        polled = read_again(self._consumer, self._bootstrap, partition, offset, max_records=max_records)
        if polled is None:
            # Kafka did not answer the second reader: nothing is given up, the next poll meets the record
            # again and it is read again then.
            self._health.kafka_ok = False
            log.warning("kafka unavailable", step="read again", error=type(error).__name__)
            self._stop.wait(1.0)
            return {}
        if polled:
            log.warning(
                "records read again past an unreadable header", partition=partition.partition, offset=offset
            )
            return polled
        log.error(
            "unreadable record", partition=partition.partition, offset=offset, error=type(error).__name__
        )
        # Everything read before it is applied and dead-lettered first, so its offset can be committed.
        self.finish_in_flight(wait_for_commit=False)
        if self._stopped_uncommitted:
            return {}
        record = IncomingRecord(partition.topic, partition.partition, offset, None, None)
        letter = PreparedBatch(dead_letters=[DeadLetter(record, "unreadable", UNREADABLE_DETAIL)])
        if self._until_done(partial(self._dead_letter, letter), self._stop, what="dead-letter") is None:
            self._stopped_uncommitted = True
            return {}
        next_offset = step_past(self._consumer, partition, offset)
        self._positions[(partition.topic, partition.partition)] = next_offset
        self._unsent_offsets[partition] = OffsetAndMetadata(next_offset, "", -1)
        self._unsent_records += 1
        self._send_commit(wait=False, due=True)
        return {}

    async def commit_before_revoke(self) -> None:
        """Finish the batch in flight and commit every done batch's offsets, waiting for the answer (on
        kafka-python's network thread, while the main thread waits in poll; see _FinishBeforeRevoke)."""
        done = self._finish_writes()
        if done is not None:
            self._done(done)
        offsets, count = self._take_unsent(time.monotonic())
        if offsets:
            with _commit_failure_logged(count):
                await self._consumer.commit_async(offsets=offsets)

    def finish_in_flight(self, *, wait_for_commit: bool = True) -> None:
        """Wait for the batch in flight, then commit its offsets (unless it was left unfinished at a stop).

        Waiting for the commit (a revoke, a stop) also commits the batches done before it whose commit was
        held back.
        """
        done = self._finish_writes()
        if done is not None:
            self._committed(done, wait=wait_for_commit)
        elif wait_for_commit:
            self._send_commit(wait=True, due=True)

    def _send(self, prepared: PreparedBatch) -> SentBatch | None:
        """Send a batch's writes to Redis without waiting for them; None if Redis could not be reached."""
        try:
            return self._writer.send_batch(prepared.writes, epoch=prepared.epoch or None, served=True)
        except REDIS_ERRORS:
            return None  # applied again, with backoff, when the batch is finished

    def _finish_writes(self) -> _InFlight | None:
        """Finish the batch in flight: read its replies, then publish its dead letters (retrying while Redis
        or Kafka is unavailable). Returns it once done; None if there was none, or a stop came first."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is None:
            return None
        stop = self._stop
        prepared = in_flight.prepared
        finished = self._until_done(partial(self._apply, in_flight), stop, what="apply")
        if finished is not None and prepared.dead_letters:
            finished = self._until_done(partial(self._dead_letter, prepared), stop, what="dead-letter")
        if finished is None:
            self._stopped_uncommitted = True
            log.info("stopping with batch uncommitted", records=in_flight.records)
            return None
        return in_flight

    def _committed(self, in_flight: _InFlight, *, wait: bool = True) -> None:
        """A batch is done: its offsets join those to commit, which go now if waited for or due."""
        self._done(in_flight)
        self._send_commit(wait=wait, due=False)

    def _done(self, in_flight: _InFlight) -> None:
        """A batch is done: its offsets join those to commit."""
        self._unsent_offsets.update(in_flight.offsets)
        self._unsent_records += in_flight.records
        BATCH_SECONDS.observe(time.perf_counter() - in_flight.started)
        self._record_lag()

    def _send_commit(self, *, wait: bool, due: bool) -> None:
        """Commit the done batches' offsets: waiting for the broker, or not, once per COMMIT_INTERVAL_S."""
        if not self._unsent_offsets:
            return
        now = time.monotonic()
        if not (wait or due or now >= self._last_commit + COMMIT_INTERVAL_S):
            return
        offsets, count = self._take_unsent(now)
        if wait:
            self._commit(offsets, count)
        else:
            self._consumer.commit_async(offsets=offsets, callback=partial(self._commit_answered, count))

    def _take_unsent(self, now: float) -> tuple[dict[TopicPartition, OffsetAndMetadata], int]:
        """The done batches' offsets not committed yet, and how many records they cover, now taken to be
        committed (at `now`)."""
        offsets, count = self._unsent_offsets, self._unsent_records
        self._unsent_offsets, self._unsent_records, self._last_commit = {}, 0, now
        return offsets, count

    def _resolve(self, decoded: DecodedBatch) -> PreparedBatch:
        # The generation is read here only when resolving reads the identifier index in it, and the batch
        # is written to that one. Otherwise the writer sends it to the served generation as last read,
        # which its script calls check (ProjectionWriter.send_batch): reading it here waited behind the
        # scripts Redis was running for the batch before, a twentieth of the loop's time during ingest.
        return resolve_batch(
            decoded,
            writer=self._writer,
            epoch=self._writer.current_epoch() if decoded.needs_index else "",
            default_region=self._default_region,
        )

    def _warm_up(self, stop: threading.Event) -> None:
        """Fetch the cluster's metadata once before the first poll.

        Without it, consumers in full test runs against a freshly started broker sometimes never completed
        their group join (no partitions, and "unknown member" when leaving). The cause inside kafka-python
        3.0 is not pinned down; one blocking metadata request before the first poll avoided it.
        """
        while not stop.is_set():
            try:
                self._consumer.topics()
                self._health.kafka_ok = True
                return
            except KafkaError as error:
                self._health.kafka_ok = False
                log.warning("kafka unavailable at start", error=type(error).__name__)
                stop.wait(1.0)

    def _apply(self, in_flight: _InFlight) -> PreparedBatch:
        """The batch's results: its replies on the first try; applied again on a retry (idempotent)."""
        prepared, sent, in_flight.sent = in_flight.prepared, in_flight.sent, None
        if sent is not None:
            results = sent.results()
        else:
            results = self._writer.apply_batch(prepared.writes, epoch=prepared.epoch or None, served=True)
        refused = refused_letters(prepared, results)
        if refused:
            # Published next, with the batch's other dead letters; the log names each by its position.
            log.error("redis refused events; dead-lettering them", events=len(refused))
            prepared.dead_letters += refused
        self._health.redis_ok = True
        applied = sum(result.applied for result in results)
        EVENTS_APPLIED.inc(applied)
        EVENTS_UNCHANGED.inc(len(results) - applied - len(refused))
        self._health.applied += applied
        return prepared

    def _dead_letter(self, prepared: PreparedBatch) -> PreparedBatch:
        # Each letter leaves prepared.dead_letters once acknowledged: a retry sends only the rest.
        self._dead_letters.send(prepared.dead_letters, on_sent=self._dead_lettered)
        return prepared

    def _dead_lettered(self, letter: DeadLetter) -> None:
        EVENTS_DEAD_LETTERED.labels(reason=letter.reason).inc()
        # The record stays in the dead-letter topic for `dlq list` and `dlq redrive`; the log names it by
        # position only (its content may hold personal data).
        if letter.reason == UNVERIFIED:
            # A forged erasure, or the API's own one that this consumer cannot verify: then the citizen
            # stays in the projection until it is redriven, so it is said louder than a publisher's fault.
            log.error(
                "erasure record not verified, not applied",
                **position(letter.record),
                reason=letter.reason,
                problem=letter.detail,
                remedy=_unverified_remedy(letter.detail),
            )
        else:
            log.warning("record dead-lettered", **position(letter.record), reason=letter.reason)
        self._health.invalid += 1

    def _until_done(
        self, step: Callable[[], PreparedBatch], stop: threading.Event, *, what: str
    ) -> PreparedBatch | None:
        """Run `step`, retrying with jittered backoff while Redis or Kafka is unavailable; None if stopped."""
        delay = 0.1
        while True:
            try:
                return step()
            except REDIS_ERRORS as error:
                self._health.redis_ok = False
                REDIS_RETRIES.inc()
                log.warning(
                    "redis unavailable, retrying", step=what, error=str(error), retry_in_s=round(delay, 2)
                )
            except KafkaError as error:
                self._health.kafka_ok = False
                log.warning(
                    "kafka unavailable, retrying", step=what, error=str(error), retry_in_s=round(delay, 2)
                )
            if stop.wait(delay):
                return None
            delay = min(delay * 2, MAX_BACKOFF_S) * random.uniform(0.8, 1.2)  # noqa: S311 (jitter, not crypto)

    def _commit(self, offsets: dict[TopicPartition, OffsetAndMetadata], count: int) -> None:
        with _commit_failure_logged(count):
            self._consumer.commit(offsets=offsets, timeout_ms=COMMIT_TIMEOUT_MS)

    def _commit_answered(
        self, count: int, _offsets: dict[TopicPartition, OffsetAndMetadata], answer: object
    ) -> None:
        """kafka-python's answer to a commit sent without waiting (called in a later poll or commit, on the
        thread that makes it)."""
        if isinstance(answer, Exception):
            # As for a refused or failed commit that was waited for (see _commit): the batch is applied, and a
            # later commit covers its offsets, or its records are redelivered, which is harmless.
            log.warning("commit failed", records=count, error=type(answer).__name__)

    def forget_positions(self, partitions: Collection[TopicPartition]) -> None:
        """Forget where this process read up to in `partitions`, and their lag, until it reads there again
        (they were taken away, or given to it: another member reads, or has read, them meanwhile)."""
        for partition in partitions:
            self._positions.pop((partition.topic, partition.partition), None)
            with suppress(KeyError):
                CONSUMER_LAG.remove(partition.topic, str(partition.partition))

    def _record_lag(self) -> None:
        """Lag per partition from the broker's high watermark and the next offset this process will read.

        Positions come from the records seen, never from `position()`: that call fetches committed offsets
        from the group coordinator, and asking for them on every loop (while a group is forming, say)
        only competes with the group protocol.
        """
        for partition in self._consumer.assignment():
            highwater = self._consumer.highwater(partition)
            position = self._positions.get((partition.topic, partition.partition))
            if highwater is not None and position is not None:
                CONSUMER_LAG.labels(topic=partition.topic, partition=str(partition.partition)).set(
                    max(highwater - position, 0)
                )

    def _forget_old_numbers(self) -> None:
        """Empty the cache of recent phone numbers once every NUMBERS_KEPT_S (see there)."""
        now = time.monotonic()
        if now - self._numbers_forgotten_at >= NUMBERS_KEPT_S:
            forget_recent_numbers()
            self._numbers_forgotten_at = now

    def _check_dependencies(self) -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + CHECK_INTERVAL_S
        try:
            self._writer.client.ping()
            self._health.redis_ok = True
        except REDIS_ERRORS:
            self._health.redis_ok = False
        # A TCP probe, not a metadata request: kafka-python can block for minutes on one while the brokers
        # are down, and this loop must keep answering SIGTERM and reporting readiness.
        self._health.kafka_ok = any(reachable(server) for server in self._bootstrap)
        self._health.last_check = now


def _unverified_remedy(problem: str) -> str:
    """What an operator does about an erasure record not verified, when it is the API's own (pure)."""
    if problem == UNSIGNED:
        return (
            "if the API recorded it before erasures were signed, set "
            "CITIZEN_CONTEXT_SIGNING_UNSIGNED_BEFORE, then `citizen-context dlq redrive --reason unverified`"
        )
    return (
        "if the API signed it, give this consumer the API's CITIZEN_CONTEXT_SIGNING_KEYS, then "
        "`citizen-context dlq redrive --reason unverified`"
    )
