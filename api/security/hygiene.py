"""What every response and request goes through: security headers, body size limits, and CORS."""

from fastapi import FastAPI, Request
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import BodyTooLarge, problem_response
from api.security.settings import SecuritySettings

# The API answers JSON: it needs no script, style or frame of any kind.
API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
# The interactive API documentation loads its viewer from a CDN (it holds no citizen data); the desk
# sets its own, stricter-than-usual policy (api/desk.py).
OWN_POLICY = ("/docs", "/redoc", "/desk")
LARGE_BODIES = {"/v1/events": 1_048_576}  # that route takes batches of events (1 MiB; it checks it too)


def route_path(scope: Scope) -> str:
    """The path a request names within the app: without the prefix it is served under (`root_path`, which
    servers behind a proxy put in front of the path: uvicorn's `--root-path`), as the app's routes see it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


class SecurityHeadersMiddleware:
    """Adds the headers that keep browsers and caches from mishandling citizen data."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self._hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = security_headers(route_path(scope), hsts=self._hsts)
        await self.app(scope, receive, adding_headers(send, headers))


def security_headers(path: str, *, hsts: bool) -> list[tuple[bytes, bytes]]:
    """The headers every answer for `path` carries (lower-case names); "" for a request without a path
    the server could read (api/http_protocol.py)."""
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    ]
    if not path.startswith(OWN_POLICY):
        headers.append((b"content-security-policy", API_POLICY.encode()))
    if path.startswith("/v1/"):
        # Citizen data must never sit in a shared or browser cache.
        headers.append((b"cache-control", b"no-store"))
    if hsts:
        headers.append((b"strict-transport-security", b"max-age=63072000; includeSubDomains"))
    return headers


def adding_headers(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    """`send`, adding `headers` (lower-case names) to the response's start, each unless the app set it."""

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {name.lower() for name, _value in message.get("headers", [])}
            message["headers"] = [
                *message.get("headers", []),
                *(header for header in headers if header[0] not in present),
            ]
        await send(message)

    return send_with_headers


class BodyLimitMiddleware:
    """Refuses request bodies over the limit (413), by Content-Length or while reading a chunked body."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self._max = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = LARGE_BODIES.get(route_path(scope), self._max)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, limit)
            return
        received = 0
        exceeded = refused = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal refused
            if not exceeded:
                await send(message)
            elif not refused and message["type"] == "http.response.start":
                # The app turned the interrupted read into an answer of its own (FastAPI says 400);
                # the caller is told what really happened instead.
                refused = True
                await self._refuse(scope, receive, send, limit)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            if not refused:
                await self._refuse(scope, receive, send, limit)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problem_response(Request(scope), 413, f"The request body is larger than {limit} bytes.")
        await response(scope, receive, send)


def install_hygiene(app: FastAPI, settings: SecuritySettings) -> None:
    """Security headers, body limits and (when origins are configured) CORS."""
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "HEAD", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Access-Reason", "If-None-Match"],
            # Deprecation and Link: a deprecated route's answers say so (api/deprecation.py).
            expose_headers=["ETag", "Retry-After", "Location", "Deprecation", "Link"],
            max_age=600,
        )
    app.add_middleware(SecurityHeadersMiddleware, hsts=settings.hsts)
