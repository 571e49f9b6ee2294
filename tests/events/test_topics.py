"""Topic administration against the real broker."""

import threading
import uuid

import pytest
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaTimeoutError

from events.settings import KafkaSettings
from events.topics import admin_client, ensure_topic, wait_for_leaders
from tests.kafka_faults import silent_broker


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


def test_an_admin_client_that_cannot_bootstrap_leaves_no_thread_behind() -> None:
    # kafka-python leaves a failed admin client's network thread running: one more for every attempt while
    # a broker takes connections without answering (the publisher tries again every few seconds).
    client_id = f"test-admin-{uuid.uuid4().hex[:8]}"
    with silent_broker() as address:
        for _ in range(3):
            with pytest.raises(KafkaTimeoutError):
                admin_client([address], bootstrap_timeout_ms=200, client_id=client_id)
    assert not [thread.name for thread in threading.enumerate() if client_id in thread.name]
