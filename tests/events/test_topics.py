"""Topic administration against the real broker."""

import time
import uuid

from kafka.admin import KafkaAdminClient

from events.settings import KafkaSettings
from events.topics import ensure_topic


def test_a_created_topic_has_leaders_for_every_partition_when_ensure_returns() -> None:
    servers = KafkaSettings().bootstrap_list
    name = f"test.{uuid.uuid4().hex[:12]}"
    started = time.monotonic()
    assert ensure_topic(servers, name, partitions=4)
    admin = KafkaAdminClient(bootstrap_servers=servers)
    try:
        [described] = admin.describe_topics([name])
        assert [p["leader_id"] >= 0 for p in described["partitions"]] == [True] * 4
        assert not ensure_topic(servers, name, partitions=4)
        admin.delete_topics([name])
    finally:
        admin.close()
    # Waiting for leaders takes moments; the full 30 s would mean the wait never saw them.
    assert time.monotonic() - started < 25
