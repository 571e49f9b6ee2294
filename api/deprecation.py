"""Routes kept for their callers but deprecated: every answer of theirs says so, whatever it is.

An integrator who never reads the OpenAPI document again still sees it: `Deprecation` (RFC 9745, since
when) and a `Link` to what replaces it, on every answer, refusals and problems included.
"""

from starlette.types import ASGIApp, Receive, Scope, Send

from api.security.hygiene import adding_headers, route_path

# (method, path) -> since when it is deprecated (Unix seconds), and the path of its successor.
DEPRECATED = {
    # The identifier in the URL: proxies, load balancers and browser histories keep URLs.
    ("GET", "/v1/citizens/lookup"): (1_795_996_800, "/v1/citizens/lookup"),  # 2026-11-30
}


class DeprecationHeadersMiddleware:
    """Adds `Deprecation` and a successor `Link` to every answer of a deprecated route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        deprecated = DEPRECATED.get((scope["method"], route_path(scope))) if scope["type"] == "http" else None
        if deprecated is None:
            await self.app(scope, receive, send)
            return
        since, successor = deprecated
        headers = [
            (b"deprecation", f"@{since}".encode()),
            (b"link", f'<{scope.get("root_path", "")}{successor}>; rel="successor-version"'.encode()),
        ]
        await self.app(scope, receive, adding_headers(send, headers))
