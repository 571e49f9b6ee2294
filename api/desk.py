"""The agent desk: a small static page (HTML, CSS, JavaScript modules) served at /desk/ with a strict CSP."""

from importlib.resources import files
from pathlib import Path

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

DESK_DIRECTORY = Path(str(files("api") / "desk"))

# Only the desk's own files run, and it talks only to its own origin (REST and, since CSP Level 3 lets
# 'self' match ws: and wss: of the same host, its WebSocket). No inline script or style, no framing, no
# plugins; forms post nowhere (the page submits with fetch). The sign-in token never leaves in a URL and,
# with no referrer, never in a Referer header either.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    # Small files that change with each release: revalidate (ETag) rather than run yesterday's script.
    "Cache-Control": "no-cache",
}


class DeskFiles(StaticFiles):
    """StaticFiles whose every answer carries the desk's security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        """The file (index.html for the folder), with the security headers."""
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def desk_files() -> DeskFiles:
    """The ASGI app that serves the desk's folder."""
    return DeskFiles(directory=DESK_DIRECTORY, html=True)
