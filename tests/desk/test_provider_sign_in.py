"""Signing in to the desk through the organisation's identity provider: OpenID Connect code flow with PKCE.

The provider is a small one of the test's own on loopback (authorize, token and JWKS endpoints), as
Keycloak or Entra ID would answer; the API trusts its keys through the JWKS URL, as in production.
"""

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from playwright.sync_api import Page, expect

from tests.conftest import Stack, wait_until
from tests.desk.conftest import assert_accessible

ISSUER_PATH, CLIENT_ID = "/realms/contact-centre", "agent-desk"


class Provider:
    """Authorizes at once (the agent is already signed in to the organisation), then checks PKCE."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.codes: dict[str, dict[str, str]] = {}
        self.exchanges: list[dict[str, str]] = []
        self.lifetime = timedelta(minutes=10)  # of the access tokens it issues
        self.refresh_tokens: set[str] = set()  # rotated: each is good for one renewal
        self.id_tokens: list[str] = []
        self.logouts: list[dict[str, str]] = []  # the end-session requests, as asked
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {name: values[0] for name, values in parse_qs(url.query).items()}
                if url.path.endswith("/auth"):
                    code = secrets.token_urlsafe(16)
                    provider.codes[code] = query
                    back = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
                    self.send_response(302)
                    self.send_header("Location", back)
                    self.end_headers()
                elif url.path.endswith("/logout"):
                    provider.logouts.append(query)
                    self.send_response(302)
                    self.send_header("Location", query["post_logout_redirect_uri"])
                    self.end_headers()
                elif url.path.endswith("/certs"):
                    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(provider.key.public_key()))
                    self._json(200, {"keys": [{**jwk, "kid": "idp-1", "alg": "RS256", "use": "sig"}]})
                else:
                    self._json(404, {})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                form = {name: values[0] for name, values in parse_qs(body).items()}
                provider.exchanges.append(form)
                if form.get("grant_type") == "refresh_token":
                    refresh = form.get("refresh_token", "")
                    if refresh not in provider.refresh_tokens or form.get("client_id") != CLIENT_ID:
                        self._json(400, {"error": "invalid_grant"})
                        return
                    provider.refresh_tokens.discard(refresh)
                    self._json(200, provider.tokens())
                    return
                asked = provider.codes.pop(form.get("code", ""), None)
                verifier = form.get("code_verifier", "").encode()
                challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=").decode()
                if (
                    asked is None
                    or asked["code_challenge_method"] != "S256"
                    or asked["code_challenge"] != challenge
                    or form.get("redirect_uri") != asked["redirect_uri"]
                    or form.get("client_id") != CLIENT_ID
                ):
                    self._json(400, {"error": "invalid_grant"})
                    return
                self._json(200, provider.tokens())

            def _json(self, status: int, document: dict[str, Any]) -> None:
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                # The desk calls the token endpoint from its own origin (CORS, as providers allow).
                self.send_header("Access-Control-Allow-Origin", self.headers.get("Origin") or "*")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}{ISSUER_PATH}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def token(self) -> str:
        now = datetime.now(UTC)
        claims = {
            "iss": self.base,
            "aud": "citizen-context",
            "sub": "A-idp",
            "name": "Grace Hopper",
            "realm_access": {"roles": ["agent", "offline_access"]},
            "iat": now,
            "exp": now + self.lifetime,
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "idp-1"})

    def tokens(self) -> dict[str, Any]:
        """A token endpoint's answer: an access token, and a new refresh token."""
        refresh = secrets.token_urlsafe(16)
        self.refresh_tokens.add(refresh)
        now = datetime.now(UTC)
        id_claims = {
            "iss": self.base,
            "aud": CLIENT_ID,
            "sub": "A-idp",
            "iat": now,
            "exp": now + self.lifetime,
        }
        self.id_tokens.append(jwt.encode(id_claims, self.key, algorithm="RS256", headers={"kid": "idp-1"}))
        return {
            "access_token": self.token(),
            "token_type": "Bearer",
            "expires_in": int(self.lifetime.total_seconds()),
            "refresh_token": refresh,
            "id_token": self.id_tokens[-1],
        }

    def api_settings(self) -> dict[str, str]:
        """The API's settings that trust this provider's tokens (its keys through the JWKS URL)."""
        return {
            "CITIZEN_CONTEXT_SECURITY_JWKS_URL": f"{self.base}/protocol/openid-connect/certs",
            "CITIZEN_CONTEXT_SECURITY_JWT_ISSUER": self.base,
            "CITIZEN_CONTEXT_SECURITY_ROLES_CLAIM": "realm_access.roles",
        }

    def desk_settings(self) -> dict[str, str]:
        """The desk's settings that send agents to sign in here."""
        return {
            "CITIZEN_CONTEXT_DESK_OIDC_AUTHORIZATION_URL": f"{self.base}/protocol/openid-connect/auth",
            "CITIZEN_CONTEXT_DESK_OIDC_TOKEN_URL": f"{self.base}/protocol/openid-connect/token",
            "CITIZEN_CONTEXT_DESK_OIDC_CLIENT_ID": CLIENT_ID,
            "CITIZEN_CONTEXT_DESK_OIDC_LOGOUT_URL": f"{self.base}/protocol/openid-connect/logout",
        }

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def provider() -> Iterator[Provider]:
    idp = Provider()
    yield idp
    idp.close()


def test_an_agent_signs_in_through_the_identity_provider(
    page: Page, stack: Stack, provider: Provider
) -> None:
    stack.env.update({**provider.api_settings(), **provider.desk_settings()})
    stack.consumer()
    stack.api()
    page.goto("/desk/")
    button = page.get_by_role("button", name="Sign in with your organisation")
    expect(button).to_be_visible()
    assert_accessible(page, "signed out, with an identity provider")
    button.click()

    expect(page.get_by_role("heading", name="Start an enquiry")).to_be_visible()
    expect(page.get_by_role("banner")).to_contain_text("Grace Hopper")
    assert "code=" not in page.url  # the code left the address bar (and the history)
    assert [form["grant_type"] for form in provider.exchanges] == ["authorization_code"]

    # The provider's token works for everything the desk does: an enquiry, its ticket, its stream.
    page.get_by_label("Find the citizen by").select_option("citizen_id")
    page.get_by_label("Citizen id").fill("C-IDP-1")
    page.get_by_role("button", name="Start enquiry").click()
    expect(page.get_by_role("heading", name="Citizen C-IDP-1")).to_be_visible()
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")


def test_a_short_lived_token_is_renewed_and_the_stream_goes_on_past_its_end(
    page: Page, stack: Stack, provider: Provider
) -> None:
    provider.lifetime = timedelta(seconds=20)
    stack.env.update(
        {
            **provider.api_settings(),
            # No leeway: the first token ends for the API when it says it does.
            "CITIZEN_CONTEXT_SECURITY_CLOCK_SKEW_S": "0",
            **provider.desk_settings(),
        }
    )
    stack.consumer()
    stack.api()
    page.goto("/desk/")
    page.get_by_role("button", name="Sign in with your organisation").click()
    page.get_by_label("Find the citizen by").select_option("citizen_id")
    page.get_by_label("Citizen id").fill("C-IDP-2")
    page.get_by_role("button", name="Start enquiry").click()
    live = page.locator("#connection")
    expect(live).to_have_attribute("data-state", "live")
    first = page.evaluate("() => sessionStorage.getItem('citizen-context.token')")
    ends_at = jwt.decode(first, options={"verify_signature": False})["exp"]
    # Every state the connection is said to be in from here on.
    page.evaluate(
        """() => {
            window.connectionStates = [];
            const node = document.getElementById("connection");
            new MutationObserver(() => window.connectionStates.push(node.dataset.state))
                .observe(node, { attributes: true, attributeFilter: ["data-state"] });
        }"""
    )

    # Renewed three quarters into its life, with the refresh token the provider gave.
    wait_until(
        lambda: any(form.get("grant_type") == "refresh_token" for form in provider.exchanges),
        what="the desk renewing its token",
        timeout_s=30,
    )
    # Past the first token's end, and the stream's next check of its access (every 5 s), the enquiry is
    # still live: the stream moved to the new token before the old one ended it.
    page.wait_for_timeout(max(0, ends_at + 7 - datetime.now(UTC).timestamp()) * 1000)
    expect(live).to_have_attribute("data-state", "live")
    expect(page.get_by_role("heading", name="Citizen C-IDP-2")).to_be_visible()
    assert page.evaluate("() => sessionStorage.getItem('citizen-context.token')") != first
    # Quietly: the agent was never told the connection was lost.
    assert page.evaluate("() => window.connectionStates") == []


def test_sign_out_ends_the_agents_session_at_the_identity_provider_too(
    page: Page, stack: Stack, provider: Provider
) -> None:
    # On a shared desk, the next agent's sign-in would otherwise find this agent's session still open there.
    stack.env.update(provider.desk_settings())
    stack.api()
    page.goto("/desk/")
    page.get_by_role("button", name="Sign in with your organisation").click()
    expect(page.get_by_role("heading", name="Start an enquiry")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    # Through the provider and back: the page that comes back is a new one.
    wait_until(lambda: len(provider.logouts) == 1, what="the provider asked to end the session")
    page.wait_for_url(f"{stack.api_url}/desk/")
    page.wait_for_load_state()
    expect(page.get_by_role("button", name="Sign in with your organisation")).to_be_visible()
    assert provider.logouts == [
        {
            "client_id": CLIENT_ID,
            "post_logout_redirect_uri": f"{stack.api_url}/desk/",
            "id_token_hint": provider.id_tokens[-1],
        }
    ]
    kept = page.evaluate(
        "() => Object.keys(sessionStorage).filter((key) => key.startsWith('citizen-context'))"
    )
    assert kept == []


def test_a_return_that_did_not_start_here_signs_nobody_in(
    page: Page, stack: Stack, provider: Provider
) -> None:
    stack.env.update(provider.desk_settings())
    stack.api()
    page.goto("/desk/?code=stolen&state=forged")
    expect(page.get_by_role("alert")).to_contain_text("did not start here")
    assert provider.exchanges == []  # the code was never even presented
    assert "code=" not in page.url


def test_a_sign_in_link_is_not_used_where_the_identity_provider_signs_agents_in(
    page: Page, stack: Stack, provider: Provider, agent_token: str
) -> None:
    stack.env.update(provider.desk_settings())
    stack.api()
    page.goto(f"/desk/#token={agent_token}")
    expect(page.get_by_role("alert")).to_have_text(
        "Sign-in links are not used here: sign in with your organisation."
    )
    expect(page.get_by_role("button", name="Sign in with your organisation")).to_be_visible()
    assert page.evaluate("() => sessionStorage.getItem('citizen-context.token')") is None
    assert "token=" not in page.url
