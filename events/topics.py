"""Topic administration: the interactions topic and its dead-letter topic exist before anyone uses them."""

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from events.deadletter import dead_letter_topic
from events.settings import KafkaSettings


def ensure_topic(bootstrap_servers: list[str], name: str, *, partitions: int) -> bool:
    """Create the topic if it is missing; True when it was created."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="citizen-context-admin")
    try:
        if name in admin.list_topics():
            return False
        try:
            admin.create_topics([NewTopic(name=name, num_partitions=partitions, replication_factor=1)])
        except TopicAlreadyExistsError:
            return False
        return True
    finally:
        admin.close()


def ensure_topics(kafka: KafkaSettings) -> None:
    """The interactions topic and its dead-letter topic, with the configured partition count."""
    for name in (kafka.topic, dead_letter_topic(kafka.topic)):
        ensure_topic(kafka.bootstrap_list, name, partitions=kafka.topic_partitions)
