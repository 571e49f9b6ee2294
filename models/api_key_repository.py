"""All SQL about integrators' API keys."""

from datetime import datetime

from sqlalchemy import text, update
from sqlmodel import Session, col, select

from models.tables import ApiKey


def hold_client(session: Session, *, client: str) -> None:
    """Hold the changes to one client's keys until the session's transaction ends, so that changes of the
    same client's keys run one after the other: two creations or rotations at once each found room for one
    more key, and a rotation read a key that a revocation then revoked, and gave it a successor."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"), {"name": f"api-keys:{client}"}
        )
    else:
        # SQLite has one writer at a time: a first statement that writes (this one changes nothing) takes
        # the write lock for the whole transaction, the reads after it included; others wait their turn.
        session.execute(
            update(ApiKey)
            .where(col(ApiKey.client) == client)
            .values(client=ApiKey.client)
            .execution_options(synchronize_session=False)
        )


def add_key(session: Session, key: ApiKey) -> ApiKey:
    """Store a new key (committed with the session's other changes)."""
    session.add(key)
    session.flush()
    return key


def get_key(session: Session, *, key_id: str) -> ApiKey | None:
    """One key by id."""
    return session.get(ApiKey, key_id)


def list_keys(session: Session, *, client: str | None = None) -> list[ApiKey]:
    """Every key (of one client), newest first."""
    statement = select(ApiKey).order_by(col(ApiKey.created_at).desc())
    if client is not None:
        statement = statement.where(ApiKey.client == client)
    return list(session.exec(statement))


def usable_keys(session: Session, *, client: str, now: datetime) -> list[ApiKey]:
    """A client's keys that are neither revoked nor expired."""
    statement = select(ApiKey).where(
        ApiKey.client == client, col(ApiKey.revoked_at).is_(None), col(ApiKey.expires_at) > now
    )
    return list(session.exec(statement))


def shorten_usable(session: Session, *, key_id: str, expires_at: datetime, now: datetime) -> bool:
    """Move a usable key's expiry sooner (rotation shortens the old key's life to a grace period); False if
    the key is revoked or expired by now. Committed with the session's other changes."""
    result = session.execute(
        update(ApiKey)
        .where(col(ApiKey.id) == key_id, col(ApiKey.revoked_at).is_(None), col(ApiKey.expires_at) > now)
        .values(expires_at=expires_at)
        # Not compared in Python with the keys the session holds: SQLite hands their times back without
        # their zone.
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def revoke_key(session: Session, *, key_id: str, at: datetime) -> bool:
    """Revoke a key now (committed with the session's other changes); False if it did not exist or was
    already revoked."""
    result = session.execute(
        update(ApiKey).where(col(ApiKey.id) == key_id, col(ApiKey.revoked_at).is_(None)).values(revoked_at=at)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def mark_used(session: Session, *, key_id: str, at: datetime) -> None:
    """Note when a key was last used."""
    session.execute(update(ApiKey).where(col(ApiKey.id) == key_id).values(last_used_at=at))
    session.commit()
