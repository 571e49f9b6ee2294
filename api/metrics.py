"""Prometheus metrics of the API process, and the middleware that times every request by route."""

import time

from fastapi.routing import APIRoute
from prometheus_client import Counter, Gauge, Histogram
from starlette.routing import Match, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.head import request_method

REQUEST_SECONDS = Histogram(
    "citizen_context_api_request_seconds",
    "HTTP request latency by route template.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
STREAMS_OPEN = Gauge("citizen_context_api_streams_open", "WebSocket streams open on this process.")
STREAM_MESSAGES = Counter(
    "citizen_context_api_stream_messages_total", "Messages sent on streams, by type.", ["type"]
)
STREAM_RESYNCS = Counter(
    "citizen_context_api_stream_resyncs_total",
    "Snapshots sent to streams that had to re-sync, by reason.",
    ["reason"],
)
UNREADABLE_MESSAGES = Counter(
    "citizen_context_api_unreadable_change_messages_total",
    "Messages on the changes channel that could not be read (the streams of the citizen named re-sync).",
)


class RequestMetricsMiddleware:
    """Times HTTP requests, labelled by the matched route's template (never by the raw path: ids are data)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        # Routing moves a mount's requests under its root path, in this very scope.
        root_path = scope.get("root_path", "")

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or _served_by(scope, root_path) or "unmatched"
            REQUEST_SECONDS.labels(request_method(scope), template, str(status)).observe(
                time.perf_counter() - started
            )


def _served_by(scope: Scope, root_path: str) -> str | None:
    """The path of the route or mount that served a request the router records no route for (the OpenAPI
    document, its pages, the desk's files): only the API's own routes are recorded in the scope, and the
    rest were counted as "unmatched", with the paths no route serves."""
    probe = {**scope, "root_path": root_path}
    for route in getattr(scope.get("app"), "routes", ()):
        # The API's own routes record themselves: matching them again cost a 404 53 us in process.
        if (
            isinstance(route, Route | Mount)
            and not isinstance(route, APIRoute)
            and route.matches(probe)[0] != Match.NONE
        ):
            return route.path
    return None
