"""Agents' bearer tokens (JWT): verified against keys chosen by `kid`, so signing keys rotate freely.

Keys come from three places, all active at once: shared secrets (HS256, small deployments), public keys
(PEM), and an identity provider's JWKS URL, fetched and held for a while (fetched again when a token names
a `kid` it does not hold, which is how a provider's rotation reaches us without a restart; see
provider_keys.py).
"""

import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import structlog
from cachetools import TTLCache
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from api.security.principal import Caller
from api.security.provider_keys import KeysUnavailable, ProviderKeys, UnknownKey
from api.security.settings import SecuritySettings
from models.security import has_control_characters, has_lone_surrogates
from models.tables import AgentRole

log = structlog.get_logger("security")

# How long a verified token is taken on trust before its signature and claims are checked again, and how
# many are remembered (a desktop sends the same token with every request for hours).
VERIFIED_TTL_S = 60
VERIFIED_MAX = 10_000

# Each kind of key admits only its own algorithms: a public key must never be taken as an HMAC secret.
_RSA_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
_EC_ALGORITHMS = ["ES256", "ES384", "ES512"]


# The longest agent id a token may carry (the audit trail and the enquiries store it whole).
MAX_AGENT_ID = 200


class InvalidToken(Exception):
    """The token proves nothing; `reason` is safe to show the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Key:
    key: Any
    algorithms: list[str]


class TokenVerifier:
    """Checks signature, `exp`, `nbf`, `iss` and `aud`, and turns the claims into a `Caller`."""

    def __init__(self, settings: SecuritySettings) -> None:
        self._settings = settings
        self._keys: dict[str, _Key] = {
            kid: _Key(secret.get_secret_value().encode(), ["HS256"])
            for kid, secret in settings.jwt_secrets.items()
        }
        for kid, pem in settings.jwt_public_keys.items():
            self._keys[kid] = _public_key(pem)
        self._jwks = (
            ProviderKeys(
                settings.jwks_url,
                lifespan_s=settings.jwks_cache_s,
                # An unknown kid refetches (a provider's new key), but not on every forged token.
                cooldown_s=settings.jwks_refetch_cooldown_s,
            )
            if settings.jwks_url
            else None
        )
        # Verifying a signature and its claims cost a context read more than its Redis round trip (see
        # README, Benchmarks), and a desktop sends the same token with every request: a token verified in
        # the last minute is taken on trust, its expiry still checked on every use. A key withdrawn from
        # the provider therefore stops admitting its tokens a minute after the key set is next fetched
        # (`jwks_cache_s` at most; twice that while the provider cannot be reached), not at once.
        self._verified: TTLCache[str, Caller] = TTLCache(maxsize=VERIFIED_MAX, ttl=VERIFIED_TTL_S)
        self._verified_lock = threading.Lock()  # `verify` also runs in worker threads (JWKS fetches)

    def fetch_keys(self) -> None:
        """Fetch the identity provider's key set now, if there is one (blocking I/O: from a thread)."""
        if self._jwks is not None:
            self._jwks.fetch()

    @property
    def fetches_keys(self) -> bool:
        """True when verifying may fetch from the JWKS URL (blocking I/O: call it from a thread)."""
        return self._jwks is not None

    def verified(self, token: str, *, now: datetime | None = None) -> Caller | None:
        """The agent of a token verified within the last minute and not expired since; None otherwise."""
        with self._verified_lock:
            caller = self._verified.get(token)
        if caller is None or caller.expires_at is None:
            return None
        leeway = timedelta(seconds=self._settings.clock_skew_s)
        if caller.expires_at + leeway <= (now or datetime.now(UTC)):
            return None  # verified afresh, so it is refused as expired with the usual reason
        return caller

    def verify(self, token: str) -> Caller:
        """The agent the token proves, or InvalidToken."""
        caller = self._verify(token)
        with self._verified_lock:
            self._verified[token] = caller
        return caller

    def _verify(self, token: str) -> Caller:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise InvalidToken("the token is not a JWT") from error
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("the token names no key (kid)")
        key = self._key(kid)
        settings = self._settings
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=key.algorithms,
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
                leeway=settings.clock_skew_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as error:
            raise InvalidToken("the token has expired") from error
        except jwt.ImmatureSignatureError as error:
            raise InvalidToken("the token is not valid yet") from error
        except jwt.InvalidAudienceError as error:
            raise InvalidToken("the token is for another audience") from error
        except jwt.InvalidIssuerError as error:
            raise InvalidToken("the token is from another issuer") from error
        except jwt.MissingRequiredClaimError as error:
            if error.claim == "sub":
                raise InvalidToken("the token names no agent (sub)") from error
            raise InvalidToken(f"the token has no {error.claim} claim") from error
        except jwt.PyJWTError as error:
            raise InvalidToken("the token is not valid") from error
        return _caller(claims, roles_claim=settings.roles_claim)

    def _key(self, kid: str) -> _Key:
        known = self._keys.get(kid)
        if known is not None:
            return known
        if self._jwks is not None:
            try:
                held = self._jwks.key(kid)
            except KeysUnavailable as error:
                raise InvalidToken("the identity provider's keys could not be fetched") from error
            except UnknownKey as error:
                raise InvalidToken("the token's key is not known (rotated out?)") from error
            return _Key(held.key, held.algorithms)
        raise InvalidToken("the token's key is not known (rotated out?)")


def _public_key(pem: str) -> _Key:
    key = load_pem_public_key(pem.encode())
    if isinstance(key, rsa.RSAPublicKey):
        return _Key(key, _RSA_ALGORITHMS)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _Key(key, _EC_ALGORITHMS)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return _Key(key, ["EdDSA"])
    raise ValueError(f"unsupported public key type {type(key).__name__}")


def _caller(claims: dict[str, Any], *, roles_claim: str) -> Caller:
    """The agent a verified token's claims name; InvalidToken for claims no agent can be made of.

    The signature only proves who issued the claims: an identity provider's mapping can still put odd
    values in them, and each is refused with a reason rather than failing the request.
    """
    found: Any = claims
    for part in roles_claim.split("."):
        found = found.get(part) if isinstance(found, dict) else None
    granted = found if isinstance(found, list) else [found] if isinstance(found, str) else []
    # Anything but a role's name (a nested list, a number) grants nothing.
    roles = frozenset(
        AgentRole(role) for role in granted if isinstance(role, str) and role in AgentRole.__members__
    )
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject.strip():
        raise InvalidToken("the token names no agent (sub)")
    if len(subject) > MAX_AGENT_ID:
        # Cut short, two agents' ids could become one: the audit trail would no longer tell them apart.
        raise InvalidToken(f"the token's agent id (sub) is longer than {MAX_AGENT_ID} characters")
    if has_control_characters(subject):
        # The id goes into every audit record of the agent's, where PostgreSQL refuses a NUL in text.
        raise InvalidToken("the token's agent id (sub) holds a control character")
    if has_lone_surrogates(subject):
        # JSON's unpaired "\\ud800" escape: no database or Redis command takes it (models/security.py).
        raise InvalidToken("the token's agent id (sub) is not Unicode text (it holds a lone surrogate)")
    return Caller(
        kind="agent",
        id=subject,
        roles=roles,
        name=str(claims.get("name") or "")[:200],
        expires_at=_expiry(claims.get("exp")),
        token_id=str(claims.get("jti") or ""),
    )


def _expiry(expires: Any) -> datetime | None:
    """The token's expiry as a time; InvalidToken for one past any date a clock can hold."""
    if not isinstance(expires, int | float) or isinstance(expires, bool):
        return None
    try:
        return datetime.fromtimestamp(expires, UTC)
    except (OverflowError, ValueError, OSError) as error:
        raise InvalidToken("the token's expiry (exp) is not a time") from error


class DevelopmentOnly(Exception):
    """Refused outside a development set-up."""


def checked_agent_id(agent_id: str) -> str:
    """`agent_id` if a development token may carry it; ValueError saying why not (the CLI's usage error)."""
    if not agent_id.strip() or len(agent_id) > MAX_AGENT_ID:
        raise ValueError(f"the agent id must be 1 to {MAX_AGENT_ID} characters, not blank")
    if has_control_characters(agent_id):
        # The API refuses such a token (see _caller): printing it would only defer the error.
        raise ValueError("the agent id must not hold a control character (a line break, a tab, ...)")
    if has_lone_surrogates(agent_id):
        # An argument that was not UTF-8 arrives with its bytes as lone surrogates; the API would refuse it.
        raise ValueError("the agent id must be UTF-8 text")
    return agent_id


def mint_development_token(
    settings: SecuritySettings,
    *,
    agent_id: str,
    roles: list[AgentRole],
    name: str = "",
    ttl: timedelta = timedelta(hours=8),
) -> str:
    """A token signed with the development key; refuses to run outside development settings."""
    if not settings.development:
        raise DevelopmentOnly("`citizen-context token` only runs with development settings")
    checked_agent_id(agent_id)
    kid = settings.development_signing_kid
    secret = settings.jwt_secrets.get(kid)
    if secret is None:
        raise DevelopmentOnly(f"no signing secret is configured for kid {kid!r}")
    now = datetime.now(UTC)
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": agent_id,
        "name": name or agent_id,
        "roles": [role.value for role in roles],
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret.get_secret_value(), algorithm="HS256", headers={"kid": kid})
