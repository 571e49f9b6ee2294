"""Topic administration: the interactions topic and its dead-letter topic exist before anyone uses them."""

import contextlib
import socket
import time
from datetime import timedelta

import structlog
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    TopicAlreadyExistsError,
)

from context.settings import TimelineSettings
from events.deadletter import dead_letter_topic
from events.settings import KafkaSettings

log = structlog.get_logger("topics")

# A dead letter is its original record plus a few headers: the dead-letter topic accepts records a little
# larger than the broker's default limit (1 MiB), so that a record at that limit can still be kept.
DEAD_LETTER_MAX_BYTES = 2 * 1024 * 1024
# How kafka-python says a broker did not answer in time (a bootstrap's included), or could not be reached.
UNANSWERED = (KafkaTimeoutError, KafkaConnectionError)
# Assumed when a topic's own limit cannot be read: the broker's default (message.max.bytes), which a topic
# created without one has.
ASSUMED_TOPIC_MAX_BYTES = 1_048_588


def admin_client(bootstrap_servers: list[str], **options: object) -> KafkaAdminClient:
    """kafka-python's admin client (`options` as its own), whose network thread is stopped when it cannot
    bootstrap: kafka-python leaves that thread running, one more for every failed attempt, and a broker
    that takes connections without answering (still starting, say) fails attempt after attempt."""
    options.setdefault("client_id", "citizen-context-admin")
    return _StoppingAdminClient(bootstrap_servers=bootstrap_servers, **options)


class _StoppingAdminClient(KafkaAdminClient):  # type: ignore[misc]  # kafka-python is untyped
    def __init__(self, **configs: object) -> None:
        try:
            super().__init__(**configs)
        except BaseException:
            # What close() would stop, had the constructor finished (close() refuses an unfinished one).
            if hasattr(self, "_net"):
                with contextlib.suppress(Exception):
                    self._client.close()
                    self._net.stop()
            raise


def ensure_topic(
    bootstrap_servers: list[str],
    name: str,
    *,
    partitions: int,
    configs: dict[str, str] | None = None,
    replication: int | None = None,
) -> bool:
    """Create the topic if it is missing; True when it was created.

    Each partition gets `replication` replicas, or the brokers' own `default.replication.factor` when it is
    None: a fixed single replica would lose a partition's events with its broker, and a cluster whose
    topics need two in-sync replicas would refuse every write to it.

    A topic that exists already is left as it is; when `configs` sets `retention.ms` and the topic keeps its
    records for another time (longer, for ever, or shorter), a warning says so: the project chooses a
    topic's retention only when it creates it.
    """
    admin = admin_client(bootstrap_servers)
    try:
        if name in admin.list_topics():
            if configs and RETENTION in configs:
                _warn_unless_kept_for(admin, name, int(configs[RETENTION]))
            return False
        try:
            topic = NewTopic(
                name=name,
                num_partitions=partitions,
                # -1 asks the brokers for their default (KIP-464, Kafka 2.4).
                replication_factor=replication if replication is not None else -1,
                topic_configs=configs or {},
            )
            admin.create_topics([topic])
        except TopicAlreadyExistsError:
            return False
        if not wait_for_leaders(admin, name, partitions):
            log.warning("topic created but not every partition has a leader yet", topic=name)
        return True
    finally:
        admin.close()


RETENTION = "retention.ms"
# Kafka deletes a partition's records a segment at a time, once the segment's newest record is past the
# retention, and starts a new segment every week by default: a quiet topic would keep records a week longer
# than its retention. One segment a day keeps them at most a day longer.
SEGMENT_MS = 24 * 3600 * 1000


def topic_retention() -> timedelta:
    """How long a record stays in a topic the project creates, at most: the timeline's age cap (the topic's
    retention), and the day its last segment may outlive that."""
    return TimelineSettings().max_age + timedelta(milliseconds=SEGMENT_MS)


def _warn_unless_kept_for(admin: KafkaAdminClient, name: str, wanted_ms: int) -> None:
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, name, {RETENTION: None})
        described = admin.describe_configs([resource], config_filter="all")
        kept_ms = int(described["topic"][name][RETENTION]["value"])
    except (KafkaError, KeyError, TypeError, ValueError) as error:
        log.warning("topic's retention unknown", topic=name, error=type(error).__name__)
        return
    # Only the names and the numbers: this is for an operator to set the topic's retention.ms.
    if kept_ms < 0 or kept_ms > wanted_ms:
        # An erased citizen's records stay there longer than their erasure mark is sure to last.
        log.warning(
            "topic keeps records longer than the timeline's age cap",
            topic=name,
            retention_ms=kept_ms,
            age_cap_ms=wanted_ms,
        )
    elif kept_ms < wanted_ms:
        # A rebuild (or a redrive) cannot find what the topic no longer holds.
        log.warning(
            "topic keeps records for less than the timeline's age cap",
            topic=name,
            retention_ms=kept_ms,
            age_cap_ms=wanted_ms,
        )


def wait_for_leaders(admin: KafkaAdminClient, name: str, partitions: int, timeout_s: float = 30) -> bool:
    """Wait until every partition of a new topic has a leader; False if `timeout_s` passed first.

    A consumer that subscribes before then can be handed an empty assignment, and kafka-python only looks
    at the topic's metadata again minutes later.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = admin.describe_topics([name])
        found = [p for topic in described if topic.get("name") == name for p in topic.get("partitions", [])]
        if len(found) == partitions and all(p.get("leader_id", -1) >= 0 for p in found):
            return True
        time.sleep(0.1)
    return False


def ensure_topics(kafka: KafkaSettings, *, retention: timedelta | None = None) -> None:
    """The interactions topic and its dead-letter topic, with the configured partition count.

    Both are created keeping their records for the timeline's age cap (`retention`; by default
    TimelineSettings' `max_age_days`): records hold personal data, and an erasure leaves the citizen's
    records in both until then (its mark in Redis lasts longer; README, Rights). No timeline holds an event
    past the age cap, nor does a redrive take a letter that old; but a profile field or an identifier an
    older event taught, which the projection keeps while the citizen stays in contact, is beyond a
    rebuild's reach once the topic has let the event go (README, Rebuild). Kafka's default would keep them a
    week: a rebuild would restore a week of every timeline.
    """
    kept = _kept_for(retention)
    ensure_topic(
        kafka.bootstrap_list,
        kafka.topic,
        partitions=kafka.topic_partitions,
        configs=kept,
        replication=kafka.topic_replication_factor,
    )
    _ensure_dead_letter_topic(kafka, kept)


def ensure_dead_letter_topic(kafka: KafkaSettings) -> bool:
    """The dead-letter topic, created as `ensure_topics` creates it if it is missing (deleted while the
    consumer runs, to empty it, say); True when it was created now."""
    return _ensure_dead_letter_topic(kafka, _kept_for(None))


def _kept_for(retention: timedelta | None) -> dict[str, str]:
    keep = retention if retention is not None else TimelineSettings().max_age
    retention_ms = int(keep.total_seconds() * 1000)
    return {RETENTION: str(retention_ms), "segment.ms": str(min(SEGMENT_MS, retention_ms))}


def _ensure_dead_letter_topic(kafka: KafkaSettings, kept: dict[str, str]) -> bool:
    return ensure_topic(
        kafka.bootstrap_list,
        dead_letter_topic(kafka.topic),
        partitions=kafka.topic_partitions,
        configs={"max.message.bytes": str(DEAD_LETTER_MAX_BYTES), **kept},
        replication=kafka.topic_replication_factor,
    )


def topic_max_bytes(
    bootstrap_servers: list[str],
    topic: str,
    *,
    at_most: int,
    timeout_ms: int = 30_000,
    unanswered_is_error: bool = False,
) -> int:
    """The largest record `topic` takes (its `max.message.bytes`), and at most `at_most`.

    A producer told this refuses anything larger itself, before sending. Sent on, the broker would refuse it,
    and kafka-python's idempotent producer takes that refusal as fatal: it fails every later send too.
    `timeout_ms` bounds both the bootstrap and the request (kafka-python's defaults: 30 s each). A limit
    that cannot be read is assumed to be the broker's default; with `unanswered_is_error`, a broker that
    does not answer in time raises instead (a producer made next would wait for it all over again).
    """
    admin: KafkaAdminClient | None = None
    try:
        admin = admin_client(
            bootstrap_servers, bootstrap_timeout_ms=timeout_ms, request_timeout_ms=timeout_ms
        )
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": None})
        described = admin.describe_configs([resource], config_filter="all")
        limit = int(described["topic"][topic]["max.message.bytes"]["value"])
    except (KafkaError, KeyError, TypeError, ValueError) as error:
        if unanswered_is_error and isinstance(error, UNANSWERED):
            raise
        log.warning("topic's record limit unknown", topic=topic, error=type(error).__name__)
        return min(ASSUMED_TOPIC_MAX_BYTES, at_most)
    finally:
        if admin is not None:
            admin.close()
    return min(limit, at_most)


def dead_letter_max_bytes(kafka: KafkaSettings) -> int:
    """The largest record the dead-letter topic takes: DEAD_LETTER_MAX_BYTES, or less when the topic was
    created beforehand with a smaller limit (the broker's default, say). A larger letter then goes without the
    original's value (events/deadletter.py) rather than being refused by the broker, which would leave the
    dead-letter producer failing every letter after it."""
    name = dead_letter_topic(kafka.topic)
    limit = topic_max_bytes(kafka.bootstrap_list, name, at_most=DEAD_LETTER_MAX_BYTES)
    if limit < DEAD_LETTER_MAX_BYTES:
        log.warning(
            "dead-letter topic takes smaller records than the project sets",
            topic=name,
            max_message_bytes=limit,
            wanted=DEAD_LETTER_MAX_BYTES,
        )
    return limit


def reachable(server: str, timeout_s: float = 1.0) -> bool:
    """Whether a bootstrap server ("host:port") accepts TCP connections."""
    host, _, port = server.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False
