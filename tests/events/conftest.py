"""Fixtures of the consumer's tests."""

from collections.abc import Iterator

import pytest
import redis

from context.settings import RedisSettings, TimelineSettings, redis_client_options
from context.store import ProjectionWriter


@pytest.fixture
def writer(key_prefix: str) -> Iterator[ProjectionWriter]:
    """A projection writer under this test's own key prefix."""
    client = redis.Redis.from_url(str(RedisSettings().url), **redis_client_options())
    yield ProjectionWriter(client, prefix=key_prefix, timeline=TimelineSettings())
    client.close()
