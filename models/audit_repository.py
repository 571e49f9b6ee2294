"""All SQL about the audit trail: records are only ever added and read."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session, col, select

from models.tables import AuditAction, AuditRecord


@dataclass(frozen=True)
class AuditFilter:
    """Which records to read; every field narrows the selection."""

    citizen: str | None = None  # pseudonym
    actor_id: str | None = None
    action: AuditAction | None = None
    since: datetime | None = None
    until: datetime | None = None
    after_id: int = 0


def add_record(session: Session, record: AuditRecord) -> AuditRecord:
    """Append one record."""
    session.add(record)
    session.commit()
    session.refresh(record)
    return record


def read_records(session: Session, *, where: AuditFilter, limit: int) -> list[AuditRecord]:
    """Records matching `where`, oldest first, after `where.after_id`."""
    statement = select(AuditRecord).where(col(AuditRecord.id) > where.after_id)
    if where.citizen is not None:
        statement = statement.where(AuditRecord.citizen == where.citizen)
    if where.actor_id is not None:
        statement = statement.where(AuditRecord.actor_id == where.actor_id)
    if where.action is not None:
        statement = statement.where(AuditRecord.action == where.action)
    # In UTC, as stored: SQLite compares timestamps as text, so an offset other than +00:00 would mislead.
    if where.since is not None:
        statement = statement.where(col(AuditRecord.at) >= where.since.astimezone(UTC))
    if where.until is not None:
        statement = statement.where(col(AuditRecord.at) < where.until.astimezone(UTC))
    return list(session.exec(statement.order_by(col(AuditRecord.id)).limit(limit)))


def iterate_records(session: Session, *, where: AuditFilter, page: int = 1000) -> Iterator[AuditRecord]:
    """Every matching record, oldest first, read a page at a time (for exports)."""
    after = where.after_id
    while True:
        records = read_records(
            session,
            where=AuditFilter(where.citizen, where.actor_id, where.action, where.since, where.until, after),
            limit=page,
        )
        yield from records
        if len(records) < page:
            return
        after = records[-1].id or after
