"""Settings of the API process."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    """Where the API listens and how it streams."""

    model_config = SettingsConfigDict(env_prefix="CITIZEN_CONTEXT_API_", env_file=".env", extra="ignore")

    host: str = Field(default="127.0.0.1", description="Address the API listens on.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port the API listens on.")
    stream_queue_size: int = Field(
        default=256, ge=1, description="Changes buffered per WebSocket before the client is re-synced."
    )
    stream_heartbeat_s: float = Field(
        default=10,
        gt=0,
        description="Heartbeat interval of streams, both ways (a dead peer is noticed in 2x).",
    )
    stream_max_lifetime_s: float = Field(
        default=3600,
        gt=0,
        description="A stream is asked to reconnect after this long (spread by up to 10%).",
    )
    shutdown_drain_s: float = Field(
        default=5, ge=0, description="On shutdown, how long streams get to receive 'reconnect' and close."
    )
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="Proxies whose X-Forwarded-For/-Proto are trusted (comma-separated), e.g. the TLS proxy.",
    )
    public_url: str = Field(default="", description="Base URL printed for people (default http://host:port).")
