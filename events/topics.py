"""Topic administration: the interactions topic exists before anything reads or writes it."""

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError


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
