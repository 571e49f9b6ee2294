"""Settings of the local servers that `citizen-context services` manages."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServicesSettings(BaseSettings):
    """Where the local Redis and Kafka keep their data, and how Kafka is assembled and run.

    The Redis and Kafka *client* ports are not repeated here: the local servers listen where
    `CITIZEN_CONTEXT_REDIS_URL` and `CITIZEN_CONTEXT_KAFKA_BOOTSTRAP_SERVERS` point, so the two can never
    disagree.
    """

    model_config = SettingsConfigDict(env_prefix="CITIZEN_CONTEXT_SERVICES_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        default=Path(".data"), description="Data, logs and PID files of the local servers."
    )
    cache_dir: Path = Field(default=Path(".cache"), description="The Kafka broker's jars, kept between runs.")
    kafka_controller_port: int = Field(
        default=9193, ge=1, le=65535, description="The local Kafka's KRaft controller port."
    )
    kafka_version: str = Field(
        default="4.3.1", description="Apache Kafka version assembled from Maven Central."
    )
    kafka_log4j_version: str = Field(
        default="2.25.4", description="Log4j2 version matching that Kafka release."
    )
    kafka_heap: str = Field(default="512m", description="The local Kafka's JVM heap (-Xmx and -Xms).")
    with_postgres: bool = Field(
        default=False, description="Also run a local PostgreSQL (the tests run the SQL side against both)."
    )
    postgres_port: int = Field(default=5433, ge=1, le=65535, description="The local PostgreSQL's port.")
    start_timeout_s: float = Field(
        default=90.0, gt=0, description="How long to wait for a server to be ready."
    )
