"""Topic administration against the real broker."""

import uuid

from kafka.admin import KafkaAdminClient

from events.settings import KafkaSettings
from events.topics import ensure_topic, wait_for_leaders


def test_a_created_topic_has_leaders_for_every_partition_when_ensure_returns() -> None:
    servers = KafkaSettings().bootstrap_list
    name = f"test.{uuid.uuid4().hex[:12]}"
    assert ensure_topic(servers, name, partitions=4)
    admin = KafkaAdminClient(bootstrap_servers=servers)
    try:
        [described] = admin.describe_topics([name])
        assert [p["leader_id"] >= 0 for p in described["partitions"]] == [True] * 4
        # The wait recognises a ready topic (it reads the same fields), and a missing one is never ready.
        assert wait_for_leaders(admin, name, 4, timeout_s=5)
        assert not wait_for_leaders(admin, f"{name}.missing", 1, timeout_s=0.3)
        assert not ensure_topic(servers, name, partitions=4)
        admin.delete_topics([name])
    finally:
        admin.close()
