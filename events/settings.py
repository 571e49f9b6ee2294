"""Settings of the Kafka side: the broker, the topic and the consumer group."""

import ipaddress

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The longest pause between a long-lived client's attempts to reach a broker it lost (kafka-python's
# default, 30 s, doubles up to it). With the default, a consumer took 3.9 to 5.4 s to apply an event
# published once a broker restarted after a few seconds away (a new user saw a minute after a longer stop),
# while its readiness said it was ready; with this, under 0.1 s (tests/events/test_consumer_process.py,
# timed by hand). One connection attempt a second per broker costs nothing.
RECONNECT_BACKOFF_MAX_MS = 1000


class KafkaSettings(BaseSettings):
    """Where the interactions topic lives and how the consumer group reads it."""

    model_config = SettingsConfigDict(env_prefix="CITIZEN_CONTEXT_KAFKA_", env_file=".env", extra="ignore")

    bootstrap_servers: str = Field(
        default="127.0.0.1:9192", description="Kafka bootstrap servers, comma-separated."
    )
    topic: str = Field(
        default="citizen.interactions",
        pattern=r"^[A-Za-z0-9._-]{1,249}$",
        description="Topic the services of the organisation publish CloudEvents to.",
    )
    topic_partitions: int = Field(
        default=6, ge=1, description="Partitions of the topic when the project creates it."
    )
    topic_replication_factor: int | None = Field(
        default=None,
        ge=1,
        description="Replicas of each partition when the project creates a topic; unset: the brokers' own "
        "default.replication.factor.",
    )
    group_id: str = Field(
        default="citizen-context", description="Consumer group of the projection consumers."
    )
    max_poll_records: int = Field(default=500, ge=1, description="Most records taken in one batch.")
    poll_timeout_ms: int = Field(default=500, ge=1, description="How long one poll waits for records.")
    session_timeout_ms: int = Field(
        default=45000,
        ge=6000,
        description="How long the group waits for a silent consumer before reassigning.",
    )
    heartbeat_interval_ms: int = Field(default=3000, ge=100, description="Consumer heartbeat interval.")

    @field_validator("bootstrap_servers")
    @classmethod
    def _names_a_server(cls, value: str) -> str:
        if not any(server.strip() for server in value.split(",")):
            raise ValueError("name at least one bootstrap server (host:port)")
        return value

    @property
    def bootstrap_list(self) -> list[str]:
        """The bootstrap servers as the list kafka-python expects."""
        return [server.strip() for server in self.bootstrap_servers.split(",") if server.strip()]

    @property
    def on_loopback(self) -> bool:
        """Whether every bootstrap server is on this machine's loopback (a development set-up's)."""
        return all(is_loopback(_host(server)) for server in self.bootstrap_list)


def _host(server: str) -> str:
    """The host of a bootstrap server: `host:port`, `[v6]:port`, or a host alone (pure)."""
    if server.startswith("["):
        return server[1 : server.find("]")] if "]" in server else server
    if server.count(":") > 1:
        return server  # an IPv6 address without a port
    return server.split(":", 1)[0]


def is_loopback(host: str) -> bool:
    """Whether `host` (an address, or `localhost`) is this machine's loopback (pure)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class ConsumerSettings(BaseSettings):
    """The consumer process's own HTTP endpoint (health, readiness)."""

    model_config = SettingsConfigDict(env_prefix="CITIZEN_CONTEXT_CONSUMER_", env_file=".env", extra="ignore")

    health_host: str = Field(default="127.0.0.1", description="Address of the consumer's health endpoint.")
    health_port: int = Field(
        default=8081,
        ge=0,
        le=65535,
        description="Port of the consumer's /healthz and /readyz (GET or HEAD; 0: any).",
    )
