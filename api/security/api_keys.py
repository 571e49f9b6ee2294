"""Integrators' API keys: random, shown once, stored as a hash, scoped, expiring, rotated two at a time.

A key reads `cck_<id>_<secret>`. The id finds the row; the secret is compared by its SHA-256 hash (a
plain hash is enough: the secret is 256 random bits, not a password that could be guessed).

Every change of a key (created, rotated, revoked) is written to the audit trail in the change's own
transaction, naming who made it: a key never changes without its record, nor is a record left of a
change that did not happen.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session

from api.security.audit import Actor, key_change
from api.security.principal import Caller, Scope
from models import api_key_repository, audit_repository
from models.tables import ApiKey, AuditAction

PREFIX = "cck"
# Two at once: the old key keeps working while clients move to the new one, then it is revoked.
MAX_USABLE_PER_CLIENT = 2
# `last_used_at` is written at most this often per key, not on every request.
USAGE_PRECISION = timedelta(minutes=1)


class KeyProblem(Exception):
    """A key operation that cannot be done; `status` and `detail` become problem details."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class InvalidKey(Exception):
    """The presented key proves nothing; the message is safe to show the caller."""


@dataclass(frozen=True)
class IssuedKey:
    """A new key: the only moment its secret exists outside the client's hands."""

    record: ApiKey
    key: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _aware(moment: datetime) -> datetime:
    # SQLite hands timestamps back without their zone; they were written in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def scopes_of(record: ApiKey) -> frozenset[Scope]:
    """The scopes a key grants."""
    return frozenset(Scope(scope) for scope in record.scopes.split() if scope in Scope._value2member_map_)


def create_key(engine: Engine, *, client: str, scopes: list[Scope], ttl: timedelta, by: Actor) -> IssuedKey:
    """A new key for `client`, by `by`; refused when the client already holds two usable keys."""
    if not scopes:
        raise KeyProblem(422, "A key needs at least one scope.")
    now = datetime.now(UTC)
    with Session(engine) as session:
        api_key_repository.hold_client(session, client=client)
        if len(api_key_repository.usable_keys(session, client=client, now=now)) >= MAX_USABLE_PER_CLIENT:
            raise KeyProblem(409, f"{client} already holds {MAX_USABLE_PER_CLIENT} keys; revoke one first.")
        issued = _issue(session, client=client, scopes=sorted(set(scopes)), now=now, ttl=ttl)
        granted = issued.record.scopes
        _audit(session, by, AuditAction.key_created, issued.record.id, f"client {client}; scopes {granted}")
        return _committed(session, issued)


def _issue(session: Session, *, client: str, scopes: list[Scope], now: datetime, ttl: timedelta) -> IssuedKey:
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    record = ApiKey(
        id=key_id,
        client=client,
        secret_hash=_hash(secret),
        scopes=" ".join(scope.value for scope in scopes),
        created_at=now,
        expires_at=now + ttl,
    )
    return IssuedKey(api_key_repository.add_key(session, record), f"{PREFIX}_{key_id}_{secret}")


def _audit(session: Session, by: Actor, action: AuditAction, key_id: str, reason: str | None) -> None:
    """The change's audit record, in the session's transaction (committed with the change)."""
    audit_repository.add_records(session.connection(), [key_change(by, action, key_id=key_id, reason=reason)])


def _committed(session: Session, issued: IssuedKey) -> IssuedKey:
    """Commit the session's transaction; the key's record is read back, for use once the session is closed."""
    session.commit()
    session.refresh(issued.record)
    return issued


def rotate_key(engine: Engine, *, key_id: str, grace: timedelta, by: Actor) -> IssuedKey:
    """A successor with the same client, scopes and lifetime, by `by`; the old key lives on for `grace` at
    most."""
    unusable = KeyProblem(404, "No usable key has this id.")
    with Session(engine) as session:
        found = api_key_repository.get_key(session, key_id=key_id)
        if found is None:
            raise unusable
        client = found.client
        # Everything from here is one transaction, after any other change of the client's keys.
        api_key_repository.hold_client(session, client=client)
        session.expire_all()
        now = datetime.now(UTC)
        old = api_key_repository.get_key(session, key_id=key_id)
        if old is None or old.revoked_at is not None or _aware(old.expires_at) <= now:
            raise unusable
        usable = api_key_repository.usable_keys(session, client=client, now=now)
        if len(usable) >= MAX_USABLE_PER_CLIENT:
            raise KeyProblem(409, f"{client} already holds a second key; revoke one before rotating.")
        lifetime = _aware(old.expires_at) - _aware(old.created_at)
        scopes = sorted(scopes_of(old))
        expires_at = min(_aware(old.expires_at), now + grace)
        if not api_key_repository.shorten_usable(session, key_id=key_id, expires_at=expires_at, now=now):
            raise unusable  # revoked or expired meanwhile (a revocation does not wait for the hold)
        issued = _issue(session, client=client, scopes=scopes, now=now, ttl=lifetime)
        successor = f"successor {issued.record.id}; this key expires at {expires_at.isoformat()}"
        _audit(session, by, AuditAction.key_rotated, key_id, successor)
        return _committed(session, issued)


def revoke_key(engine: Engine, *, key_id: str, by: Actor) -> None:
    """Revoke a key at once, by `by`; requests and streams using it are refused from now on."""
    with Session(engine) as session:
        if not api_key_repository.revoke_key(session, key_id=key_id, at=datetime.now(UTC)):
            raise KeyProblem(404, "No unrevoked key has this id.")
        _audit(session, by, AuditAction.key_revoked, key_id, None)
        session.commit()


def list_keys(engine: Engine, *, client: str | None = None) -> list[ApiKey]:
    """Every key (of one client), newest first; secrets are not held, so none is shown."""
    with Session(engine) as session:
        return api_key_repository.list_keys(session, client=client)


def authenticate_key(engine: Engine, presented: str) -> Caller:
    """The integrator a key proves, or InvalidKey."""
    prefix, _, rest = presented.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != PREFIX or not key_id or not secret:
        raise InvalidKey("the API key is malformed")
    now = datetime.now(UTC)
    with Session(engine) as session:
        record = api_key_repository.get_key(session, key_id=key_id[:32])
        if record is None or not hmac.compare_digest(record.secret_hash, _hash(secret)):
            raise InvalidKey("the API key is not valid")
        if record.revoked_at is not None:
            raise InvalidKey("the API key has been revoked")
        if _aware(record.expires_at) <= now:
            raise InvalidKey("the API key has expired")
        if record.last_used_at is None or now - _aware(record.last_used_at) >= USAGE_PRECISION:
            api_key_repository.mark_used(session, key_id=record.id, at=now)
        return Caller(
            kind="integrator",
            id=record.id,
            scopes=scopes_of(record),
            client=record.client,
            expires_at=_aware(record.expires_at),
        )


def lapse(engine: Engine, *, key_id: str) -> str | None:
    """Why a key no longer holds ("revoked", "expired"), or None while it does (open streams check this)."""
    with Session(engine) as session:
        record = api_key_repository.get_key(session, key_id=key_id)
    if record is None or record.revoked_at is not None:
        return "revoked"
    return "expired" if _aware(record.expires_at) <= datetime.now(UTC) else None
