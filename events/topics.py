"""Topic administration: the interactions topic and its dead-letter topic exist before anyone uses them."""

import contextlib
import socket
import time

import structlog
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    TopicAlreadyExistsError,
)

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
    bootstrap_servers: list[str], name: str, *, partitions: int, configs: dict[str, str] | None = None
) -> bool:
    """Create the topic if it is missing; True when it was created."""
    admin = admin_client(bootstrap_servers)
    try:
        if name in admin.list_topics():
            return False
        try:
            topic = NewTopic(
                name=name, num_partitions=partitions, replication_factor=1, topic_configs=configs or {}
            )
            admin.create_topics([topic])
        except TopicAlreadyExistsError:
            return False
        if not wait_for_leaders(admin, name, partitions):
            log.warning("topic created but not every partition has a leader yet", topic=name)
        return True
    finally:
        admin.close()


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


def ensure_topics(kafka: KafkaSettings) -> None:
    """The interactions topic and its dead-letter topic, with the configured partition count."""
    ensure_topic(kafka.bootstrap_list, kafka.topic, partitions=kafka.topic_partitions)
    ensure_topic(
        kafka.bootstrap_list,
        dead_letter_topic(kafka.topic),
        partitions=kafka.topic_partitions,
        configs={"max.message.bytes": str(DEAD_LETTER_MAX_BYTES)},
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
