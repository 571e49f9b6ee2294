"""The dead-letter topic: every record the consumer cannot use, unchanged, with why and where it came from.

Headers added (all UTF-8 text): `dlq.reason` (a stable code, see `events.codec.InvalidEvent`),
`dlq.detail`, `dlq.topic`, `dlq.partition`, `dlq.offset`, `dlq.time` (RFC 3339, when it was dead-lettered).

A record with neither key nor value (Kafka allows one; kafka-python's producer refuses to send one) goes on
with an empty value: refused, its dead letter would stop the consumer, and every consumer after it that
read the record again. So does a record too large for the dead-letter topic (one created beforehand with
the broker's default limit), marked `dlq.value-omitted`: the broker would refuse it on every retry. Such a
letter, like an `unreadable` one, does not hold the original, which stays in its topic at the position the
headers give; it cannot be redriven.
"""

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, KafkaTimeoutError, MessageSizeTooLargeError, UnknownTopicOrPartitionError
from kafka.producer.future import FutureRecordMetadata

from events.producer import close_failed_producer
from events.records import DeadLetter, Header, IncomingRecord

HEADER_PREFIX = "dlq."
MAX_DETAIL = 1000

log = structlog.get_logger(__name__)


def dead_letter_topic(topic: str) -> str:
    """The dead-letter topic of a topic."""
    return f"{topic}.dlq"


def dead_letter_headers(letter: DeadLetter, *, now: datetime | None = None) -> list[Header]:
    """The original headers (earlier dead-letter headers replaced) plus why and where from."""
    record = letter.record
    # A header without a value goes on with an empty one.
    kept: list[Header] = []
    # A name whose bytes were replaced: the letter no longer holds the record as it was.
    altered: list[Header] = []
    for name, raw in record.headers or ():
        if name.startswith(HEADER_PREFIX):
            continue
        publishable = _publishable(name)
        if publishable != name:
            altered = [(NAMES_REPLACED, b"1")]
        kept.append((publishable, raw or b""))
    return [
        *kept,
        *altered,
        ("dlq.reason", letter.reason.encode()),
        ("dlq.detail", letter.detail[:MAX_DETAIL].encode()),
        ("dlq.topic", record.topic.encode()),
        ("dlq.partition", str(record.partition).encode()),
        ("dlq.offset", str(record.offset).encode()),
        ("dlq.time", (now or datetime.now(UTC)).isoformat().encode()),
    ]


def _publishable(name: str) -> str:
    """A header name as the producer can send it: one that was not UTF-8 (read leniently, its bytes as
    surrogate escapes: events/unreadable.py) has them replaced (kafka-python encodes names strictly)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def sendable_value(key: bytes | None, value: bytes | None) -> bytes | None:
    """The value a record can be published with: as it is, or empty when it has no key either (pure)."""
    return b"" if key is None and value is None else value


# The dead letter's header saying it does not hold the original's value (see the module's docstring).
VALUE_OMITTED = "dlq.value-omitted"
# ... or saying a header name that was not UTF-8 had its bytes replaced (events/unreadable.py).
NAMES_REPLACED = "dlq.header-names-replaced"


def send_dead_letters(
    producer: KafkaProducer,
    letters: list[DeadLetter],
    *,
    on_sent: Callable[[DeadLetter], None] = lambda _letter: None,
    timeout_s: float = 30,
) -> None:
    """Publish the letters and wait until the broker has every one (raises the first failure, KafkaError).

    Each letter the broker acknowledged is taken out of `letters` and handed to `on_sent`, even when another
    failed: retrying the same list sends only the rest, so no acknowledged letter is sent twice (one whose
    acknowledgement did not come in time may be; a redrive applies an event once however often it comes).
    A failure that retrying cannot mend is raised rather than a passing one, when both occur. A letter
    larger than the producer takes (`events.topics.dead_letter_max_bytes`) goes without the original's value.
    """
    sent: list[tuple[DeadLetter, FutureRecordMetadata]] = []
    failure: KafkaError | None = None
    try:
        for letter in letters:
            sent.append((letter, _send_letter(producer, letter)))
    except KafkaError as error:  # no metadata for the topic in time, say: what was sent still counts
        failure = error
    # One deadline for the whole batch, not `timeout_s` per letter: with the topic gone and the producer
    # still holding its old metadata, none is acknowledged, and each letter's own wait added up to minutes
    # (until the producer's delivery timeout), through which a SIGTERM waited too.
    deadline = time.monotonic() + timeout_s
    for letter, future in sent:
        try:
            future.get(timeout=max(deadline - time.monotonic(), 0))
        except KafkaError as error:
            if failure is None or (failure.retriable and not error.retriable):
                failure = error
            continue
        letters.remove(letter)
        on_sent(letter)
    if failure is not None:
        raise failure


class DeadLetterPublisher:
    """The consumer's dead-letter producer, kept able to publish.

    kafka-python's idempotent producer takes any error the broker answers that retrying cannot mend as
    fatal, and fails every later letter too, for as long as it lives: a letter larger than the dead-letter
    topic now takes (its limit lowered while the consumer runs; the producer read it when it was made,
    `events.topics.dead_letter_max_bytes`), or one refused for want of authorisation, say. After such an
    error the producer is dropped, and the next `send` makes another (reading the limit again); the caller
    retries the letters not yet acknowledged.
    """

    def __init__(
        self, make: Callable[[], KafkaProducer], *, restore_topic: Callable[[], bool] | None = None
    ) -> None:
        self._make = make
        self._restore_topic = restore_topic
        self._producer: KafkaProducer | None = make()

    def send(
        self, letters: list[DeadLetter], *, on_sent: Callable[[DeadLetter], None], timeout_s: float = 30
    ) -> None:
        """As `send_dead_letters` (which takes the acknowledged letters out of `letters`)."""
        if self._producer is None:
            self._producer = self._make()
        producer = self._producer
        try:
            send_dead_letters(producer, letters, on_sent=on_sent, timeout_s=timeout_s)
        except KafkaError as error:
            if not error.retriable:
                log.warning(
                    "dead-letter producer failed for good; making another", error=type(error).__name__
                )
                self._producer = None
                close_failed_producer(producer)
            elif isinstance(error, KafkaTimeoutError | UnknownTopicOrPartitionError):
                # No metadata for the topic in time: the broker down, or the topic gone (deleted while the
                # consumer runs). Gone, it is made again, and the retry finds it; not waited out for ever.
                self._restore_missing_topic()
            raise

    def _restore_missing_topic(self) -> None:
        if self._restore_topic is None:
            return
        try:
            if self._restore_topic():
                log.error("dead-letter topic was missing: created it again")
        except KafkaError as error:
            log.warning("dead-letter topic could not be checked", error=type(error).__name__)

    def close(self) -> None:
        """Flush and close the producer, if there is one."""
        if self._producer is not None:
            self._producer.close()
            self._producer = None


def _send_letter(producer: KafkaProducer, letter: DeadLetter) -> FutureRecordMetadata:
    """Send a letter whole; without the original's value if the producer takes no record that large; and
    without its key and headers as well if it still takes none (only where it came from, and why)."""
    record = letter.record
    topic = dead_letter_topic(record.topic)
    headers = dead_letter_headers(letter)
    ours = [(name, raw) for name, raw in headers if name.startswith(HEADER_PREFIX)]
    attempts = [
        (record.key, sendable_value(record.key, record.value), headers),
        (record.key, b"", [*headers, (VALUE_OMITTED, b"1")]),
        (None, b"", [*ours, (VALUE_OMITTED, b"1")]),
    ]
    for key, value, with_headers in attempts[:-1]:
        try:
            return producer.send(topic, key=key, value=value, headers=with_headers)
        except MessageSizeTooLargeError:  # the producer's own limit (max_request_size), checked as it sends
            continue
    key, value, with_headers = attempts[-1]
    return producer.send(topic, key=key, value=value, headers=with_headers)


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """A record read back from the dead-letter topic."""

    dlq_partition: int
    dlq_offset: int
    record: IncomingRecord
    reason: str
    detail: str
    dead_lettered_at: str

    @property
    def position(self) -> str:
        """Where this record sits in the dead-letter topic, and when it was put there:
        "topic/partition/offset/time". The time tells apart two letters at one offset: a dead-letter topic
        deleted and created again (to empty it) counts its offsets from 0 again."""
        topic = dead_letter_topic(self.record.topic)
        return f"{topic}/{self.dlq_partition}/{self.dlq_offset}/{self.dead_lettered_at}"

    @property
    def origin(self) -> str:
        """Where the record was read from: "topic[partition]@offset"."""
        return f"{self.record.topic}[{self.record.partition}]@{self.record.offset}"

    @property
    def landing(self) -> str:
        """Its record, by where it was read from and what it holds (see `landing`)."""
        return landing(self.origin, self.record.key, self.record.value)

    @property
    def holds_original(self) -> bool:
        """Whether the letter holds the original record (one unreadable, too large, or with a header name
        that was not UTF-8, does not: redriven, it would not be the record it was)."""
        return self.reason != "unreadable" and not any(
            name in (VALUE_OMITTED, NAMES_REPLACED) for name, _ in self.record.headers
        )

    @property
    def original_headers(self) -> list[Header]:
        """The headers the publisher sent, without the dead-letter ones."""
        return [(name, raw) for name, raw in self.record.headers if not name.startswith(HEADER_PREFIX)]


class NoSuchTopic(Exception):
    """Neither the topic nor its dead-letter topic exists (a mistyped name, most likely): saying it holds no
    dead letters would hide that. A dead-letter topic left after its topic was deleted is still read."""

    def __init__(self, topic: str) -> None:
        super().__init__(
            f"the topic {topic!r} does not exist, nor its dead-letter topic {dead_letter_topic(topic)!r}"
        )
        self.topic = topic


def read_dead_letters(bootstrap_servers: list[str], topic: str) -> Iterator[StoredDeadLetter]:
    """Every record of `topic`'s dead-letter topic, from the beginning to its current end; `NoSuchTopic`
    when neither exists."""
    # From the log's start again should a position fall off it while read (retention), never its end.
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
    )
    try:
        name = dead_letter_topic(topic)
        partitions = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or [])]
        if not partitions:
            if not consumer.partitions_for_topic(topic):  # a topic has at least one partition
                raise NoSuchTopic(topic)
            return
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > consumer.position(tp)}
        while remaining:
            for tp, records in consumer.poll(timeout_ms=1000).items():
                for raw in records:
                    if raw.offset < ends[tp]:
                        yield _stored(raw)
                if consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        consumer.close()


def _stored(raw: object) -> StoredDeadLetter:
    headers = {name: (value or b"").decode("utf-8", errors="replace") for name, value in raw.headers or []}  # type: ignore[attr-defined]
    original = IncomingRecord(
        topic=headers.get("dlq.topic", ""),
        partition=int(headers.get("dlq.partition", "-1")),
        offset=int(headers.get("dlq.offset", "-1")),
        key=raw.key,  # type: ignore[attr-defined]
        value=raw.value,  # type: ignore[attr-defined]
        headers=[(name, value or b"") for name, value in raw.headers or []],  # type: ignore[attr-defined]
    )
    return StoredDeadLetter(
        dlq_partition=raw.partition,  # type: ignore[attr-defined]
        dlq_offset=raw.offset,  # type: ignore[attr-defined]
        record=original,
        reason=headers.get("dlq.reason", ""),
        detail=headers.get("dlq.detail", ""),
        dead_lettered_at=headers.get("dlq.time", ""),
    )


def landing(origin: str, key: bytes | None, value: bytes | None) -> str:
    """A record as a redrive leaves it: where it is ("topic[partition]@offset") and a digest of its key and
    value, so that another record at the same place (its topic deleted and made again, counting offsets
    from 0) is not taken for it. The digest tells records apart; it keeps nothing of what they hold."""
    digest = hashlib.sha256(len(key or b"").to_bytes(4, "big") + (key or b"") + (value or b"")).hexdigest()
    return f"{origin} {digest[:32]}"


@dataclass(frozen=True)
class Redriven:
    """What a redrive did: the letters Kafka acknowledged, and those it did not, each with why; and each one
    acknowledged as it landed (`landing`, by the letter's position)."""

    sent: list[StoredDeadLetter]
    failed: list[tuple[StoredDeadLetter, str]]
    landed: dict[str, str]


def redrive(producer: KafkaProducer, letters: list[StoredDeadLetter], *, timeout_s: float = 30) -> Redriven:
    """Publish each letter's original record, unchanged, back to the topic and partition it was read from.

    An event that reaches the projection twice is applied once; one that still cannot be used returns to
    the dead-letter topic (as a new record) with its reason. A letter that cannot be sent (its topic or
    partition gone, say) fails alone: the others are sent all the same.
    """
    sending: list[tuple[StoredDeadLetter, FutureRecordMetadata]] = []
    failed: list[tuple[StoredDeadLetter, str]] = []
    # A topic Kafka could not tell about in time (deleted since, say) is not waited for again, letter after
    # letter.
    unknown_topics: set[str] = set()
    for letter in letters:
        if letter.record.topic in unknown_topics:
            failed.append((letter, "KafkaTimeoutError"))
            continue
        try:
            future = producer.send(
                letter.record.topic,
                # Back to the partition it was read from, beside the citizen's other events: publishers do
                # not all place keys alike (librdkafka's default partitioner is not kafka-python's).
                partition=letter.record.partition if letter.record.partition >= 0 else None,
                key=letter.record.key,
                value=letter.record.value,
                headers=letter.original_headers,
            )
        except (KafkaError, ValueError, AssertionError) as error:
            # kafka-python refuses a partition its topic does not have with a ValueError or an
            # AssertionError, and a topic it cannot learn about with a timeout.
            failed.append((letter, type(error).__name__))
            if isinstance(error, KafkaTimeoutError):
                unknown_topics.add(letter.record.topic)
        else:
            sending.append((letter, future))
    # One deadline for every letter. A flush that times out raises, though some letters may be acknowledged
    # already: each is asked below, so those are marked redriven and the others reported as failed.
    deadline = time.monotonic() + timeout_s
    with contextlib.suppress(KafkaTimeoutError):
        producer.flush(timeout=timeout_s)
    sent = []
    landed = {}
    for letter, future in sending:
        try:
            metadata = future.get(timeout=max(deadline - time.monotonic(), 0))
        except KafkaError as error:
            failed.append((letter, type(error).__name__))
        else:
            sent.append(letter)
            where = f"{metadata.topic}[{metadata.partition}]@{metadata.offset}"
            landed[letter.position] = landing(where, letter.record.key, letter.record.value)
    return Redriven(sent=sent, failed=failed, landed=landed)
