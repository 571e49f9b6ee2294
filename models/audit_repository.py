"""All SQL about the audit trail: records are only ever added and read."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypedDict

from sqlalchemy import Connection, insert
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


# A Core INSERT of the table, many rows at once: every context read appends a record, and the ORM's unit
# of work (instrumented objects, flush, then a refresh to read the id back) cost several times the INSERT
# itself. Nobody reads a record back as it is written, so nothing is refreshed.
_INSERT = insert(AuditRecord.__table__)  # type: ignore[attr-defined]


class AuditRow(TypedDict):
    """One record as it is inserted: `AuditRecordBase`'s fields (the database assigns the id).

    A plain mapping, not the model: every context read appends one, and building and dumping a validated
    model took a third of the audit thread's own Python per read, in the thread that holds the
    interpreter lock the event loop serving the reads waits for. The values are bounded where they are
    made (a token's subject, a client address, a reason, a role, a pseudonym); tests hold the keys to the
    model's fields and the longest values a caller can bring to the model's limits.
    """

    at: datetime
    actor_kind: str
    actor_id: str
    actor_role: str
    action: AuditAction
    outcome: str
    citizen: str | None
    enquiry_id: str | None
    reason: str | None
    client_address: str | None


def add_records(connection: Connection, rows: list[AuditRow]) -> None:
    """Append records in the connection's transaction (the caller commits it)."""
    connection.execute(_INSERT, rows)


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
