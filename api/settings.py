"""Settings of the API process."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    """Where the API listens and how it streams."""

    model_config = SettingsConfigDict(env_prefix="CITIZEN_CONTEXT_API_", env_file=".env", extra="ignore")

    host: str = Field(default="127.0.0.1", description="Address the API listens on.")
    port: int = Field(default=8000, ge=0, description="Port the API listens on.")
    stream_queue_size: int = Field(
        default=256, ge=1, description="Changes buffered per WebSocket before the client is re-synced."
    )
    public_url: str = Field(default="", description="Base URL printed for people (default http://host:port).")
