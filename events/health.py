"""The consumer process's own small HTTP endpoint: /healthz, /readyz and /metrics (Prometheus)."""

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

# The loop checks its dependencies every few seconds (events/consumer.py, CHECK_INTERVAL_S); a loop that has
# not for this long is stuck somewhere (a call that never returns), whatever its last check said.
STALLED_AFTER_S = 30.0


@dataclass
class ConsumerHealth:
    """What the consumer loop last learnt about its dependencies (written by the loop, read by HTTP)."""

    redis_ok: bool = False
    kafka_ok: bool = False
    last_check: float = field(default_factory=time.monotonic)
    applied: int = 0
    invalid: int = 0

    @property
    def looping(self) -> bool:
        """Whether the loop checked its dependencies recently (time.monotonic(), as `last_check`)."""
        return time.monotonic() - self.last_check <= STALLED_AFTER_S

    @property
    def ready(self) -> bool:
        """Ready when Redis and Kafka both answered the last check, and the loop made it recently."""
        return self.redis_ok and self.kafka_ok and self.looping

    def report(self) -> dict[str, object]:
        """The readiness document (the same shape as the API's /readyz)."""
        return {
            "status": "ready" if self.ready else "unavailable",
            "checks": {
                "redis": _ok(self.redis_ok),
                "kafka": _ok(self.kafka_ok),
                "loop": "ok" if self.looping else "stalled",
            },
            "events_applied": self.applied,
            "events_invalid": self.invalid,
        }


def _ok(flag: bool) -> str:
    return "ok" if flag else "unavailable"


def serve_health(health: ConsumerHealth, *, host: str, port: int) -> ThreadingHTTPServer:
    """Serve /healthz and /readyz from a daemon thread; returns the server (its port may be chosen)."""

    class Handler(BaseHTTPRequestHandler):
        with_body = True

        def do_HEAD(self) -> None:
            """As GET, without the body: some load balancers and orchestrators probe with HEAD."""
            self.with_body = False
            self.do_GET()

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._send(200, {"status": "ok"})
            elif self.path == "/readyz":
                self._send(200 if health.ready else 503, health.report())
            elif self.path == "/metrics":
                self._send_bytes(200, generate_latest(), CONTENT_TYPE_LATEST)
            else:
                self._send(404, {"title": "Not Found", "status": 404})

        def _send(self, status: int, body: dict[str, object]) -> None:
            self._send_bytes(status, json.dumps(body).encode(), "application/json")

        def _send_bytes(self, status: int, payload: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.with_body:
                self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            """Probes every few seconds would drown the log; stay quiet."""

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="consumer-health", daemon=True).start()
    return server
