"""Settings of the Redis projection: where it lives and the timeline's limits."""

from datetime import timedelta
from typing import Any

from pydantic import Field, RedisDsn
from pydantic_settings import BaseSettings, SettingsConfigDict


class RedisSettings(BaseSettings):
    """The Redis server that holds the projection, and the prefix of every key the project writes."""

    # hide_input_in_errors: the URL may hold a password, which a settings error must not repeat.
    model_config = SettingsConfigDict(
        env_prefix="CITIZEN_CONTEXT_REDIS_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    url: RedisDsn = Field(default=RedisDsn("redis://127.0.0.1:6380/0"), description="Redis server URL.")
    key_prefix: str = Field(
        default="cc",
        pattern=r"^[A-Za-z0-9_.-]{1,32}$",
        description="Prefix of every Redis key and channel; several deployments or tests can share a server.",
    )
    reply_timeout_s: float = Field(
        default=5,
        gt=0,
        le=60,
        description="How long the API waits for Redis to answer before a request or stream gives up.",
    )


class TimelineSettings(BaseSettings):
    """How much of each citizen's history the projection keeps."""

    model_config = SettingsConfigDict(env_prefix="CITIZEN_CONTEXT_TIMELINE_", env_file=".env", extra="ignore")

    # The scripts that read a citizen's events or changes pass them to Redis commands in one call each, and
    # Lua's stack holds about 8,000 values: the limits below keep every such call well inside it.
    max_events: int = Field(
        default=200,
        ge=1,
        le=5000,
        description="Most events kept per citizen (the oldest go first), at most 5,000.",
    )
    max_age_days: float = Field(default=90, gt=0, description="Events older than this are dropped.")
    inactivity_expiry_days: float = Field(
        default=90,
        gt=0,
        description=(
            "A citizen's data expires after this long without a new event (expiries move on once a day, "
            "or every tenth of this if shorter, so it may stay up to that much longer)."
        ),
    )
    change_log_length: int = Field(
        default=500,
        ge=1,
        le=5000,
        description="Changes kept per citizen so that a reconnecting stream can resume (at most 5,000).",
    )
    page_size: int = Field(default=50, ge=1, le=500, description="Timeline events returned with the context.")

    @property
    def max_age(self) -> timedelta:
        """The age cap, `max_age_days`, as a duration."""
        return timedelta(days=self.max_age_days)


class IdentitySettings(BaseSettings):
    """How identifiers that name a citizen are normalised."""

    model_config = SettingsConfigDict(env_prefix="CITIZEN_CONTEXT_IDENTITY_", env_file=".env", extra="ignore")

    default_region: str = Field(
        default="GB",
        pattern=r"^[A-Z]{2}$",
        description="Country assumed for phone numbers written without an international prefix.",
    )


class SummarySettings(BaseSettings):
    """How the summary above the timeline is derived."""

    model_config = SettingsConfigDict(env_prefix="CITIZEN_CONTEXT_SUMMARY_", env_file=".env", extra="ignore")

    repeat_contact_threshold: int = Field(
        default=3,
        ge=2,
        description="Contacts within 7 days from which the citizen is flagged as a repeat contact.",
    )
    recent_days: int = Field(
        default=30, ge=1, description="How far back failed payments and missed appointments count as recent."
    )


def redis_client_options(
    *, asyncio: bool = False, retries: int = 3, retry_timeouts: bool = True, reply_timeout_s: float = 5
) -> dict[str, Any]:
    """Connection options shared by every Redis client of the project.

    A pooled connection that died with a Redis restart fails its next command; retrying it on a fresh
    connection (a few times, with a short backoff) keeps one stale socket from surfacing as an error.
    A subscription must not retry silently, though (`retries=0`): messages published while it was
    reconnecting are lost, and its owner has to know in order to re-sync. Without `retry_timeouts`, a
    command Redis did not answer in time is not sent again: it may have run (a stream ticket taken), and
    each try would wait the whole timeout again. A reply is waited for `reply_timeout_s` at most (redis-py
    waits for ever before version 8): a connection dropped silently, or a Redis frozen, must fail a command,
    never hold its caller.
    """
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError, TimeoutError
    from redis.retry import Retry

    backoff = ExponentialBackoff(cap=0.5, base=0.02)
    # Without timeouts, named on the retry itself: redis-py adds `retry_on_error` to the retry's own
    # errors, whose default includes timeouts, so a command Redis did not answer was sent on four
    # connections in turn (with Redis frozen, the API's /readyz took 20 s). With them, the retry's own
    # defaults, as before.
    retry_class = AsyncRetry if asyncio else Retry
    retry = (
        retry_class(backoff, retries=retries)
        if retry_timeouts
        else retry_class(backoff, retries=retries, supported_errors=(ConnectionError,))
    )
    options: dict[str, Any] = {
        "retry": retry,
        "retry_on_error": [ConnectionError, TimeoutError] if retry_timeouts else [ConnectionError],
        "socket_connect_timeout": 2,
        "socket_timeout": reply_timeout_s,
        # Keepalive probes find a connection dropped silently while it is idle.
        "socket_keepalive": True,
        "decode_responses": True,
    }
    if _DRIVER_INFO is not None:
        options["driver_info"] = _DRIVER_INFO
    return options


def _driver_info() -> Any:
    """redis-py's client name and version for `CLIENT SETINFO`, made once for every connection.

    Left to itself, redis-py 7+ looks its own version up in the installed packages' metadata for each new
    connection: about 13 ms of CPU each, so an API opening its pool of 64 connections stalled its event
    loop for most of a second (see README, Benchmarks).
    """
    try:
        from redis.driver_info import DriverInfo
    except ImportError:  # redis-py before 7 has no DriverInfo (nor the cost)
        return None
    return DriverInfo()


_DRIVER_INFO = _driver_info()
