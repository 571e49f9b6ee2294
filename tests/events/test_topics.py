"""Topic administration against the real broker."""

import threading
import uuid
from datetime import timedelta

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.errors import InvalidReplicationFactorError, KafkaTimeoutError

from events import topics
from events.deadletter import dead_letter_topic
from events.settings import KafkaSettings
from events.topics import admin_client, ensure_topic, ensure_topics, wait_for_leaders
from tests.kafka_faults import silent_broker
from tests.logs import capture_module_logs


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


def _configs(admin: KafkaAdminClient, name: str) -> tuple[int, int]:
    resource = ConfigResource(ConfigResourceType.TOPIC, name, {"retention.ms": None, "segment.ms": None})
    described = admin.describe_configs([resource], config_filter="all")["topic"][name]
    return int(described["retention.ms"]["value"]), int(described["segment.ms"]["value"])


DAY_MS = 86_400_000


def test_both_topics_are_created_keeping_records_for_the_age_cap_and_another_retention_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kafka = KafkaSettings(topic=f"test.{uuid.uuid4().hex[:12]}", topic_partitions=1)
    names = [kafka.topic, dead_letter_topic(kafka.topic)]
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_list)
    logs = capture_module_logs(monkeypatch, topics)
    try:
        ensure_topics(kafka, retention=timedelta(days=30))
        # A segment a day, so that a quiet topic keeps its records at most a day past their retention.
        assert [_configs(admin, name) for name in names] == [(30 * DAY_MS, DAY_MS)] * 2
        assert not logs.entries

        def reported(event: str, age_cap_days: int) -> list[str]:
            entries = [entry for entry in logs.entries if entry["event"] == event]
            assert {(entry["age_cap_ms"], entry["retention_ms"]) for entry in entries} == {
                (age_cap_days * DAY_MS, 30 * DAY_MS)
            }
            assert {entry["log_level"] for entry in entries} == {"warning"}
            return sorted(entry["topic"] for entry in entries)

        # Existing topics keep what they have; another age cap than their retention is reported, by name.
        ensure_topics(kafka, retention=timedelta(days=7))
        assert reported("topic keeps records longer than the timeline's age cap", 7) == sorted(names)
        logs.entries.clear()
        ensure_topics(kafka, retention=timedelta(days=90))
        assert reported("topic keeps records for less than the timeline's age cap", 90) == sorted(names)
        logs.entries.clear()
        ensure_topics(kafka, retention=timedelta(days=30))
        assert [_configs(admin, name) for name in names] == [(30 * DAY_MS, DAY_MS)] * 2
        assert not logs.entries
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
        assert [_configs(admin, name)[0] for name in names] == [int(12.5 * DAY_MS)] * 2
    finally:
        admin.delete_topics(names)
        admin.close()


def test_topics_get_the_brokers_default_replication_or_the_one_configured() -> None:
    # Unset, the brokers' own default.replication.factor (the test broker's is 1) is asked for, never a
    # fixed single replica: a cluster that keeps three copies of every partition keeps three of these.
    kafka = KafkaSettings(topic=f"test.{uuid.uuid4().hex[:12]}", topic_partitions=1)
    names = [kafka.topic, dead_letter_topic(kafka.topic)]
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap_list)
    try:
        ensure_topics(kafka)
        assert [len(topic["partitions"][0]["replica_nodes"]) for topic in admin.describe_topics(names)] == [
            1,
            1,
        ]
    finally:
        admin.delete_topics(names)
        admin.close()
    # Configured, that many: more than the one test broker can hold is refused by it, saying so.
    more = KafkaSettings(
        topic=f"test.{uuid.uuid4().hex[:12]}", topic_partitions=1, topic_replication_factor=2
    )
    with pytest.raises(InvalidReplicationFactorError, match="replication factor of 2"):
        ensure_topics(more)
