"""All SQL about the audit trail: records are only ever added and read."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TypedDict

from sqlalchemy import Connection, Dialect
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
    api_key_id: str | None


# Rows per INSERT statement: one parameter per field of each, under the 999 parameters of SQLite's oldest
# default builds (32,766 since SQLite 3.32; PostgreSQL's limit is 65,535).
ROWS_PER_STATEMENT = 999 // len(AuditRow.__annotations__)


def add_records(connection: Connection, rows: list[AuditRow]) -> None:
    """Append records: one statement per ROWS_PER_STATEMENT rows, in the connection's transaction (the
    caller commits it), or each committed as it runs on an autocommit engine."""
    # One multi-row INSERT per batch, not one statement per row (`executemany`), and no ORM: nobody reads
    # a record back as it is written. The batch is written by a worker thread of the API, and SQLite's
    # driver lets go of the interpreter lock around every statement it steps: with the event loop busy,
    # each of those was a wait of up to the switch interval to get the lock back, and the batch's
    # records (its readers' answers) waited with it (README, Benchmarks).
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        insert = _multi_row_insert(connection.dialect, len(chunk))
        connection.exec_driver_sql(insert.sql, insert.parameters(chunk))


@dataclass(frozen=True)
class _MultiRowInsert:
    """`INSERT ... VALUES (...), (...)` for a number of rows, in a dialect's own placeholders."""

    sql: str
    # Each column's name and the dialect's conversion of its values (as SQLAlchemy applies it), if any.
    columns: tuple[tuple[str, Callable[[Any], Any] | None], ...]

    def parameters(self, rows: list[AuditRow]) -> tuple[Any, ...]:
        """The rows' values in placeholder order, converted as SQLAlchemy would."""
        return tuple(
            value if convert is None or value is None else convert(value)
            for row in rows
            for name, convert in self.columns
            for value in (row[name],)  # type: ignore[literal-required]
        )


# The positional placeholder of each paramstyle the supported drivers use (sqlite3, psycopg).
_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


@lru_cache(maxsize=2 * ROWS_PER_STATEMENT)
def _multi_row_insert(dialect: Dialect, rows: int) -> _MultiRowInsert:
    """The statement for `rows` records, built once per dialect and number of rows."""
    table = AuditRecord.__table__  # type: ignore[attr-defined]
    columns = [column for column in table.columns if column.name in AuditRow.__annotations__]
    quote = dialect.identifier_preparer
    mark = _PLACEHOLDERS.get(dialect.paramstyle)
    if mark is None:
        raise ValueError(
            f"the audit trail cannot be written through a driver of paramstyle {dialect.paramstyle}"
        )
    row = "(" + ", ".join([mark] * len(columns)) + ")"
    names = ", ".join(quote.format_column(column) for column in columns)
    # Only the table's own names (quoted by the dialect) and placeholders: every value is a parameter.
    sql = f"INSERT INTO {quote.format_table(table)} ({names}) VALUES {', '.join([row] * rows)}"  # noqa: S608
    return _MultiRowInsert(
        sql=sql,
        columns=tuple(
            (column.name, column.type.dialect_impl(dialect).bind_processor(dialect)) for column in columns
        ),
    )


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
