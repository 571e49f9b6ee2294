"""An identity provider whose key set cannot be had: its agents' tokens are a 401 saying so, never a 500.

The provider is a real HTTP server on loopback, answering the JWKS fetch in each broken way a provider
(or what stands in front of it) can.
"""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from api.app import create_app
from api.security.settings import SecuritySettings
from api.security.tokens import InvalidToken, TokenVerifier
from context.settings import RedisSettings
from models.database import DatabaseSettings
from tests.jwks_endpoint import JwksEndpoint

ISSUER, AUDIENCE = "https://idp.test/realms/cc", "citizen-context"
UNAVAILABLE = "the identity provider's keys could not be fetched"
SIGNING_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)

# How the provider answers: a status and a body, or "reset" (the connection is cut without an answer).
FAULTS = {
    "not-json": (200, b"<html><body>Service temporarily unavailable</body></html>"),
    "not-utf-8": (200, b'{"keys": ["\xff\xfe"]}'),
    "no-keys": (200, b'{"keys": []}'),
    "no-usable-key": (200, json.dumps({"keys": [{"kty": "unknown", "kid": "k1"}]}).encode()),
    "keys-not-a-list": (200, b'{"keys": "k1"}'),
    "server-error": (502, b"Bad Gateway"),  # refused as unavailable before too, the model for the rest
    "reset": None,
}


@pytest.fixture(params=list(FAULTS))
def provider(request: pytest.FixtureRequest) -> Iterator[JwksEndpoint]:
    """A JWKS endpoint that answers every fetch with one fault."""
    fault = FAULTS[request.param]
    broken = JwksEndpoint(lambda: fault)
    yield broken
    broken.close()


def settings(provider: JwksEndpoint) -> SecuritySettings:
    return SecuritySettings(jwt_issuer=ISSUER, jwt_audience=AUDIENCE, jwt_secrets={}, jwks_url=provider.url)


def token() -> str:
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "agent-7",
        "roles": ["agent"],
        "exp": datetime.now(UTC) + timedelta(minutes=5),
    }
    return jwt.encode(claims, SIGNING_KEY, algorithm="RS256", headers={"kid": "k1"})


def test_a_key_set_that_cannot_be_had_refuses_the_token_with_the_reason(provider: JwksEndpoint) -> None:
    verifier = TokenVerifier(settings(provider))
    with pytest.raises(InvalidToken, match=UNAVAILABLE):
        verifier.verify(token())


def test_a_key_set_that_cannot_be_had_is_a_401_for_a_request_and_a_4401_for_a_stream(
    provider: JwksEndpoint, redis_settings: RedisSettings, database_settings: DatabaseSettings
) -> None:
    app = create_app(redis_settings=redis_settings, database=database_settings, security=settings(provider))
    headers = {"Authorization": f"Bearer {token()}"}
    with TestClient(app) as client:
        response = client.get("/v1/enquiries", headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"] == f"Not signed in: {UNAVAILABLE}."
        with (
            client.websocket_connect("/v1/citizens/C-1/stream", headers=headers) as websocket,
            pytest.raises(WebSocketDisconnect) as ended,
        ):
            websocket.receive_json()
        assert (ended.value.code, ended.value.reason) == (4401, f"Not signed in: {UNAVAILABLE}.")
