"""The consumer's own endpoint: its probes answer GET and HEAD alike."""

import time
from collections.abc import Iterator

import httpx
import pytest

from events.health import STALLED_AFTER_S, ConsumerHealth, serve_health


@pytest.fixture
def endpoint() -> Iterator[tuple[str, ConsumerHealth]]:
    health = ConsumerHealth()
    server = serve_health(health, host="127.0.0.1", port=0)
    yield f"http://127.0.0.1:{server.server_address[1]}", health
    server.shutdown()
    server.server_close()


def test_probes_answer_get_and_head_alike(endpoint: tuple[str, ConsumerHealth]) -> None:
    url, health = endpoint
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{url}/readyz").status_code == 503  # nothing checked yet
    health.redis_ok = health.kafka_ok = True
    for path, status in (("/healthz", 200), ("/readyz", 200), ("/nowhere", 404)):
        got, head = httpx.get(f"{url}{path}"), httpx.head(f"{url}{path}")
        assert (got.status_code, head.status_code) == (status, status)
        # Some load balancers and orchestrators probe with HEAD: the same answer, without its body.
        assert head.content == b""
        assert head.headers["content-length"] == str(len(got.content))


def test_a_loop_that_stopped_checking_its_dependencies_is_not_ready(
    endpoint: tuple[str, ConsumerHealth],
) -> None:
    # A loop stuck in a call that never returns (a Redis frozen mid-reply, say) kept its last answers:
    # ready, while nothing was applied.
    url, health = endpoint
    health.redis_ok = health.kafka_ok = True
    health.last_check = time.monotonic() - STALLED_AFTER_S - 1
    answer = httpx.get(f"{url}/readyz")
    assert answer.status_code == 503
    assert answer.json()["checks"] == {"redis": "ok", "kafka": "ok", "loop": "stalled"}
    health.last_check = time.monotonic()
    assert httpx.get(f"{url}/readyz").json()["checks"]["loop"] == "ok"
