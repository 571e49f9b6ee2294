"""Topic administration against the real broker."""

import threading
import uuid
from datetime import timedelta

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.errors import KafkaTimeoutError
from structlog.testing import capture_logs

from events.deadletter import dead_letter_topic
from events.settings import KafkaSettings
from events.topics import admin_client, ensure_topic, ensure_topics, wait_for_leaders
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


def _retention_ms(admin: KafkaAdminClient, name: str) -> int:
    resource = ConfigResource(ConfigResourceType.TOPIC, name, {"retention.ms": None})
    described = admin.describe_configs([resource], config_filter="all")
    return int(described["topic"][name]["retention.ms"]["value"])


def test_both_topics_are_created_keeping_records_for_the_age_cap_and_a_longer_retention_is_reported() -> None:
    kafka = KafkaSettings(topic=f"test.{uuid.uuid4().hex[:12]}", topic_partitions=1)
    names = [kafka.topic, dead_letter_topic(kafka.topic)]
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_list)
    try:
        ensure_topics(kafka, retention=timedelta(days=30))
        assert [_retention_ms(admin, name) for name in names] == [30 * 86_400_000] * 2
        # Existing topics keep what they have; a shorter age cap than their retention is reported, by name.
        with capture_logs() as logs:
            ensure_topics(kafka, retention=timedelta(days=7))
        assert [_retention_ms(admin, name) for name in names] == [30 * 86_400_000] * 2
        reported = [entry for entry in logs if entry["event"].startswith("topic keeps records longer")]
        assert sorted(entry["topic"] for entry in reported) == sorted(names)
        assert {entry["age_cap_ms"] for entry in reported} == {7 * 86_400_000}
        with capture_logs() as logs:
            ensure_topics(kafka, retention=timedelta(days=30))
        assert not [entry for entry in logs if entry["event"].startswith("topic keeps records longer")]
    finally:
        admin.delete_topics(names)
        admin.close()


def test_the_age_cap_is_the_timelines_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITIZEN_CONTEXT_TIMELINE_MAX_AGE_DAYS", "12.5")
    kafka = KafkaSettings(topic=f"test.{uuid.uuid4().hex[:12]}", topic_partitions=1)
    names = [kafka.topic, dead_letter_topic(kafka.topic)]
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_list)
    try:
        ensure_topics(kafka)
        assert [_retention_ms(admin, name) for name in names] == [int(12.5 * 86_400_000)] * 2
    finally:
        admin.delete_topics(names)
        admin.close()
