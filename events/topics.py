"""Topic administration: the interactions topic and its dead-letter topic exist before anyone uses them."""

import socket
import time

import structlog
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from events.deadletter import dead_letter_topic
from events.settings import KafkaSettings

log = structlog.get_logger("topics")

# A dead letter is its original record plus a few headers: the dead-letter topic accepts records a little
# larger than the broker's default limit (1 MiB), so that a record at that limit can still be kept.
DEAD_LETTER_MAX_BYTES = 2 * 1024 * 1024


def ensure_topic(
    bootstrap_servers: list[str], name: str, *, partitions: int, configs: dict[str, str] | None = None
) -> bool:
    """Create the topic if it is missing; True when it was created."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="citizen-context-admin")
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


def reachable(server: str, timeout_s: float = 1.0) -> bool:
    """Whether a bootstrap server ("host:port") accepts TCP connections."""
    host, _, port = server.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False
