"""Bearer tokens: what is checked, keys by kid, and a signing key rotated at the identity provider live."""

import base64
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.security.settings import SecuritySettings
from api.security.tokens import InvalidToken, TokenVerifier
from context.settings import RedisSettings, TimelineSettings
from context.store import ProjectionWriter
from models.database import DatabaseSettings
from models.tables import AgentRole
from tests.factories import make_event, writes_for
from tests.jwks_endpoint import JwksEndpoint

ISSUER, AUDIENCE = "https://idp.test/realms/cc", "citizen-context"


def claims(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "agent-7",
        "roles": ["supervisor"],
        "exp": now + timedelta(minutes=5),
        **overrides,
    }


def hs_settings(**secrets: str) -> SecuritySettings:
    return SecuritySettings(
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwt_secrets={kid: SecretStr(secret) for kid, secret in secrets.items()},
    )


def hs256(kid: str, secret: str, **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), secret, algorithm="HS256", headers={"kid": kid})


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def test_a_valid_token_names_the_agent_and_roles() -> None:
    caller = TokenVerifier(hs_settings(k1="s" * 32)).verify(
        hs256("k1", "s" * 32, roles=["agent", "unknown-role"])
    )
    assert (caller.kind, caller.id, caller.roles) == ("agent", "agent-7", frozenset({AgentRole.agent}))
    assert caller.expires_at is not None


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": datetime.now(UTC) - timedelta(minutes=5)}, "expired"),
        ({"nbf": datetime.now(UTC) + timedelta(minutes=5)}, "not valid yet"),
        ({"aud": "another-service"}, "another audience"),
        ({"iss": "https://evil.test"}, "another issuer"),
    ],
)
def test_exp_nbf_aud_and_iss_are_checked(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidToken, match=reason):
        TokenVerifier(hs_settings(k1="s" * 32)).verify(hs256("k1", "s" * 32, **overrides))


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"sub": ""}, "names no agent"),
        ({"sub": "   "}, "names no agent"),
        # Cut to 200 characters, two agents' ids could become one in the audit trail.
        ({"sub": "a" * 201}, "longer than 200 characters"),
        # Recorded with each of the agent's reads: PostgreSQL refuses a NUL in text.
        ({"sub": "agent\u0000-7"}, "control character"),
        ({"sub": "agent\n7"}, "control character"),
        # JSON's unpaired escape: no database or Redis command takes the id.
        ({"sub": "agent\ud800"}, "not Unicode text"),
        # Signed, unexpired, and past any date a clock can hold.
        ({"exp": 10**30}, "expiry"),
    ],
)
def test_signed_claims_no_agent_can_be_made_of_are_refused_with_a_reason(
    overrides: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidToken, match=reason):
        TokenVerifier(hs_settings(k1="s" * 32)).verify(hs256("k1", "s" * 32, **overrides))


@pytest.mark.parametrize(
    ("claim", "reason"),
    [("sub", "the token names no agent (sub)"), ("exp", "the token has no exp claim")],
)
def test_a_token_without_a_required_claim_is_refused_naming_it(claim: str, reason: str) -> None:
    without = claims()
    del without[claim]
    token = jwt.encode(without, "s" * 32, algorithm="HS256", headers={"kid": "k1"})
    with pytest.raises(InvalidToken) as refused:
        TokenVerifier(hs_settings(k1="s" * 32)).verify(token)
    assert str(refused.value) == reason


def test_roles_that_are_not_role_names_grant_nothing() -> None:
    token = hs256("k1", "s" * 32, roles=[["supervisor"], {"role": "admin"}, 7, None, "agent"])
    assert TokenVerifier(hs_settings(k1="s" * 32)).verify(token).roles == frozenset({AgentRole.agent})


def test_odd_claims_are_a_401_through_the_api_never_a_500(
    redis_settings: RedisSettings, database_settings: DatabaseSettings
) -> None:
    security = hs_settings(k1="s" * 32)
    app = create_app(redis_settings=redis_settings, database=database_settings, security=security)
    with TestClient(app) as client:
        for overrides in ({"exp": 10**30}, {"sub": ""}, {"roles": [["agent"]]}):
            token = hs256("k1", "s" * 32, **overrides)
            response = client.get("/v1/enquiries", headers={"Authorization": f"Bearer {token}"})
            # Nested roles grant nothing: that token proves an agent without a role, refused as such.
            expected = 403 if "roles" in overrides else 401
            assert response.status_code == expected, (overrides, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")


def test_the_clock_skew_allowance_applies() -> None:
    token = hs256("k1", "s" * 32, exp=datetime.now(UTC) - timedelta(seconds=5))
    assert TokenVerifier(hs_settings(k1="s" * 32)).verify(token).id == "agent-7"


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        jwt.encode(claims(), "s" * 32, algorithm="HS256"),  # no kid
        hs256("retired", "s" * 32),  # a key no longer configured
        hs256("k1", "another-secret-of-32-characters!"),  # forged
        jwt.encode(claims(), "", algorithm="none", headers={"kid": "k1"}),  # unsigned
    ],
)
def test_tokens_that_prove_nothing_are_refused(token: str) -> None:
    with pytest.raises(InvalidToken):
        TokenVerifier(hs_settings(k1="s" * 32)).verify(token)


def test_several_keys_are_trusted_at_once_while_rotating() -> None:
    verifier = TokenVerifier(hs_settings(old="o" * 32, new="n" * 32))
    assert verifier.verify(hs256("old", "o" * 32)).id == verifier.verify(hs256("new", "n" * 32)).id


def test_public_keys_verify_their_own_algorithms_only() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    settings = SecuritySettings(
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwt_secrets={},
        jwt_public_keys={"r": pem(rsa_key), "e": pem(ec_key)},
    )
    verifier = TokenVerifier(settings)
    assert (
        verifier.verify(jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "r"})).id
        == "agent-7"
    )
    assert (
        verifier.verify(jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "e"})).id == "agent-7"
    )

    # The classic confusion: an HMAC "signed" with the public key's text must not pass as that key.
    # (PyJWT refuses to make such a token, so it is made by hand.)
    def segment(document: dict[str, Any]) -> bytes:
        raw = json.dumps(document, default=lambda moment: int(moment.timestamp())).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    signing_input = segment({"kid": "r", "alg": "HS256", "typ": "JWT"}) + b"." + segment(claims())
    mac = hmac.new(pem(rsa_key).encode(), signing_input, hashlib.sha256).digest()
    token = (signing_input + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode()
    with pytest.raises(InvalidToken):
        verifier.verify(token)


def test_keycloak_roles_are_read_from_their_claim() -> None:
    settings = hs_settings(k1="s" * 32).model_copy(update={"roles_claim": "realm_access.roles"})
    token = hs256("k1", "s" * 32, roles=None, realm_access={"roles": ["admin", "offline_access"]})
    assert TokenVerifier(settings).verify(token).roles == frozenset({AgentRole.admin})


def test_production_refuses_the_development_secrets() -> None:
    with pytest.raises(ValueError, match="development signing secret"):
        SecuritySettings(environment="production")


class IdentityProvider:
    """A JWKS endpoint on loopback whose keys the test changes, as a provider rotating its keys would."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.fetches = 0
        self._endpoint = JwksEndpoint(self._key_set)
        self.url = self._endpoint.url

    def _key_set(self) -> tuple[int, bytes]:
        self.fetches += 1
        keys = [
            {
                **json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())),
                "kid": kid,
                "alg": "RS256",
                "use": "sig",
            }
            for kid, key in list(self.keys.items())
        ]
        return 200, json.dumps({"keys": keys}).encode()

    def sign(self, kid: str) -> str:
        return jwt.encode(claims(), self.keys[kid], algorithm="RS256", headers={"kid": kid})

    def close(self) -> None:
        self._endpoint.close()


@pytest.fixture
def provider() -> Iterator[IdentityProvider]:
    idp = IdentityProvider()
    yield idp
    idp.close()


def test_a_signing_key_rotated_at_the_provider_fails_no_request_and_no_stream(
    provider: IdentityProvider,
    redis_settings: RedisSettings,
    database_settings: DatabaseSettings,
    redis_client: "redis.Redis",
) -> None:
    provider.keys["2026-10"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    security = SecuritySettings(
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwt_secrets={},
        jwks_url=provider.url,
        jwks_refetch_cooldown_s=0.2,
    )
    writer = ProjectionWriter(redis_client, prefix=redis_settings.key_prefix, timeline=TimelineSettings())
    writer.apply_batch(writes_for(make_event("C-ROT", minutes_ago=5)))
    app = create_app(redis_settings=redis_settings, database=database_settings, security=security)
    statuses: list[int] = []
    current = {"token": provider.sign("2026-10")}
    stop = threading.Event()
    reason = {"X-Access-Reason": "rotation drill"}

    with TestClient(app) as client:

        def keep_reading() -> None:
            while not stop.is_set():
                headers = {"Authorization": f"Bearer {current['token']}", **reason}
                statuses.append(client.get("/v1/citizens/C-ROT/context", headers=headers).status_code)

        stream_headers = {"Authorization": f"Bearer {current['token']}", **reason}
        with client.websocket_connect("/v1/citizens/C-ROT/stream", headers=stream_headers) as stream:
            assert stream.receive_json()["type"] == "snapshot"
            reader = threading.Thread(target=keep_reading)
            reader.start()
            try:
                time.sleep(0.5)  # longer than the refetch cooldown
                # The provider publishes its next key, then signs with it; the old key is withdrawn later.
                provider.keys["2026-11"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                current["token"] = provider.sign("2026-11")
                time.sleep(0.5)
                del provider.keys["2026-10"]
                time.sleep(0.5)
            finally:
                stop.set()
                reader.join()
            writer.apply_batch(writes_for(make_event("C-ROT", minutes_ago=1)))
            message = stream.receive_json()
            while message["type"] != "change":
                message = stream.receive_json()
            assert message["version"] == 2
    assert len(statuses) > 10
    assert set(statuses) == {200}
    assert provider.fetches >= 2  # the new kid was fetched when first seen, without a restart


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"jwt_secrets": {"k": SecretStr("too-short")}}, "at least 32 bytes"),
        ({"jwt_secrets": {}, "jwks_url": "http://idp.example/certs"}, "must use https"),
    ],
)
def test_production_refuses_weak_verification_settings(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SecuritySettings(environment="production", pseudonym_key=SecretStr("p" * 32), **changes)


def test_production_names_every_problem_of_its_settings_at_once() -> None:
    with pytest.raises(ValueError, match="development signing secret") as refused:
        SecuritySettings(environment="production", _env_file=None)
    message = str(refused.value)
    assert "development signing secret" in message
    assert "set CITIZEN_CONTEXT_SECURITY_JWT_ISSUER" in message
    assert "set CITIZEN_CONTEXT_SECURITY_PSEUDONYM_KEY" in message


def test_production_keeps_loading_a_pseudonym_key_it_loaded_before() -> None:
    # Changing it would split every citizen's trail in two: no length is asked of it.
    settings = SecuritySettings(
        environment="production",
        jwt_secrets={"k": SecretStr("s" * 32)},
        jwt_issuer="https://idp.example.org",
        pseudonym_key=SecretStr("a-production-pseudonym-key"),
    )
    assert settings.pseudonym_key.get_secret_value() == "a-production-pseudonym-key"


def test_a_setting_refused_does_not_show_the_secrets_in_its_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("CITIZEN_CONTEXT_SECURITY_")]:
        monkeypatch.delenv(name)  # the test session's rate limits: they would be shown last instead
    monkeypatch.setenv("CITIZEN_CONTEXT_SECURITY_ENVIRONMENT", "production")
    monkeypatch.setenv("CITIZEN_CONTEXT_SECURITY_JWT_SECRETS", '{"k": "short-but-secret"}')
    monkeypatch.setenv("CITIZEN_CONTEXT_SECURITY_PSEUDONYM_KEY", "p" * 32 + "-pseudonym-secret")
    with pytest.raises(ValueError, match="at least 32 bytes") as refused:
        SecuritySettings()
    assert "short-but-secret" not in str(refused.value)
    # pydantic shows the ends of the input it was given: the last setting read is the pseudonym key.
    assert "pseudonym-secret" not in str(refused.value)


def test_secrets_and_ids_swapped_are_refused_without_showing_the_secret() -> None:
    secret = "a-production-secret-of-enough-length-0123"  # noqa: S105 (the point: it must not be shown)
    with pytest.raises(ValueError, match="a key in the id's place") as refused:
        SecuritySettings(
            environment="production",
            jwt_secrets={secret: SecretStr("k1")},
            jwt_issuer="https://idp.example.org",
            pseudonym_key=SecretStr("p" * 32),
        )
    assert secret not in str(refused.value)


def test_a_verified_token_is_taken_on_trust_until_it_expires() -> None:
    verifier = TokenVerifier(hs_settings(k1="s" * 32))
    token = hs256("k1", "s" * 32, exp=datetime.now(UTC) + timedelta(minutes=5))
    assert verifier.verified(token) is None  # never verified
    caller = verifier.verify(token)
    assert verifier.verified(token) == caller
    skew = timedelta(seconds=hs_settings().clock_skew_s)
    assert caller.expires_at is not None
    assert verifier.verified(token, now=caller.expires_at + skew) is None
    # Verified afresh, an expired token is refused with its reason, never taken from the cache.
    expired = hs256("k1", "s" * 32, exp=datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(expired)
    assert verifier.verified(expired) is None
