"""The agent desk: a small static page (HTML, CSS, JavaScript modules) served at /desk/ with a strict CSP."""

from importlib.resources import files
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.responses import JSONResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from api.security.gate import refuse_unknown_stream

DESK_DIRECTORY = Path(str(files("api") / "desk"))


class DeskSettings(BaseSettings):
    """How agents sign in to the desk in production: the organisation's identity provider (OpenID Connect).

    The desk is a public client: authorization code flow with PKCE, no client secret. Left empty, the desk
    offers only the token form (development).
    """

    model_config = SettingsConfigDict(env_prefix="CITIZEN_CONTEXT_DESK_", env_file=".env", extra="ignore")

    oidc_authorization_url: str = Field(
        default="", description="The identity provider's authorization endpoint (empty: no provider)."
    )
    oidc_token_url: str = Field(default="", description="The identity provider's token endpoint.")
    oidc_client_id: str = Field(default="", description="The desk's client id at the identity provider.")
    oidc_scope: str = Field(default="openid profile", description="Scopes the desk asks for.")
    oidc_logout_url: str = Field(
        default="",
        description="The identity provider's end-session endpoint: Sign out ends the agent's session there "
        "too (empty: only the desk's).",
    )

    @property
    def configured(self) -> bool:
        """True when agents sign in through the identity provider."""
        return bool(self.oidc_authorization_url and self.oidc_token_url and self.oidc_client_id)

    def public(self) -> dict[str, object]:
        """What the page needs to know (nothing secret: the desk is a public client)."""
        if not self.configured:
            return {"oidc": None}
        return {
            "oidc": {
                "authorization_url": self.oidc_authorization_url,
                "token_url": self.oidc_token_url,
                "client_id": self.oidc_client_id,
                "scope": self.oidc_scope,
                "logout_url": self.oidc_logout_url or None,
            }
        }


# Only the desk's own files run, and it talks only to its own origin (REST and, since CSP Level 3 lets
# 'self' match ws: and wss: of the same host, its WebSocket). No inline script or style, no framing, no
# plugins; forms post nowhere (the page submits with fetch). The sign-in token never leaves in a URL and,
# with no referrer, never in a Referer header either.
def content_security_policy(settings: DeskSettings) -> str:
    """The desk's policy; the identity provider's token endpoint is the one other origin it may call."""
    connect = ["'self'"]
    if settings.configured:
        token_url = urlsplit(settings.oidc_token_url)
        connect.append(f"{token_url.scheme}://{token_url.netloc}")
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            f"connect-src {' '.join(connect)}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


SECURITY_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    # Small files that change with each release: revalidate (ETag) rather than run yesterday's script.
    "Cache-Control": "no-cache",
}


class DeskFiles(StaticFiles):
    """StaticFiles whose every answer carries the desk's security headers; `config.json` is the settings."""

    def __init__(self, settings: DeskSettings) -> None:
        super().__init__(directory=DESK_DIRECTORY, html=True)
        self._settings = settings
        self._headers = {**SECURITY_HEADERS, "Content-Security-Policy": content_security_policy(settings)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Files over HTTP; a WebSocket opened under /desk is closed as no stream (StaticFiles would fail
        on it with a 500), as on any other path that is no stream."""
        if scope["type"] == "websocket":
            await refuse_unknown_stream(WebSocket(scope, receive, send))
            return
        await super().__call__(scope, receive, send)

    async def get_response(self, path: str, scope: Scope) -> Response:
        """The file (index.html for the folder), with the security headers."""
        if path == "config.json":
            response: Response = JSONResponse(self._settings.public())
        else:
            response = await super().get_response(path, scope)
        response.headers.update(self._headers)
        return response


def desk_files(settings: DeskSettings | None = None) -> DeskFiles:
    """The ASGI app that serves the desk's folder."""
    return DeskFiles(settings or DeskSettings())
