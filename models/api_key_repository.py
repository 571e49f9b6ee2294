"""All SQL about integrators' API keys."""

from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from models.tables import ApiKey


def add_key(session: Session, key: ApiKey) -> ApiKey:
    """Store a new key."""
    session.add(key)
    session.commit()
    session.refresh(key)
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


def set_expiry(session: Session, *, key_id: str, expires_at: datetime) -> None:
    """Move a key's expiry (rotation shortens the old key's life to a grace period)."""
    session.execute(update(ApiKey).where(col(ApiKey.id) == key_id).values(expires_at=expires_at))
    session.commit()


def revoke_key(session: Session, *, key_id: str, at: datetime) -> bool:
    """Revoke a key now; False if it did not exist or was already revoked."""
    result = session.execute(
        update(ApiKey).where(col(ApiKey.id) == key_id, col(ApiKey.revoked_at).is_(None)).values(revoked_at=at)
    )
    session.commit()
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def mark_used(session: Session, *, key_id: str, at: datetime) -> None:
    """Note when a key was last used."""
    session.execute(update(ApiKey).where(col(ApiKey.id) == key_id).values(last_used_at=at))
    session.commit()
