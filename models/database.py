"""The SQL side: settings, the engine and schema migrations (Alembic)."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Connection, Engine, event, make_url, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlmodel import create_engine

MIGRATIONS = Path(__file__).with_name("migrations")
# The PostgreSQL advisory lock a migration holds until its transaction ends: the ASCII bytes "ccmigrat" read
# as a signed 64-bit integer, a key no other user of the database is likely to take.
MIGRATION_LOCK = int.from_bytes(b"ccmigrat", "big", signed=True)


# The databases the project runs on, as SQLAlchemy names them, and the driver it installs for PostgreSQL.
SUPPORTED_DATABASES = ("sqlite", "postgresql")
POSTGRES_EXAMPLE = "postgresql+psycopg://user:password@host:5432/citizen_context"


class DatabaseLocationError(Exception):
    """The SQLite database's folder cannot be created (a file in its place, no permission)."""


class DatabaseSettings(BaseSettings):
    """The relational database: SQLite by default, PostgreSQL in production."""

    # hide_input_in_errors: the URL may hold a password, which a settings error must not repeat.
    model_config = SettingsConfigDict(
        env_prefix="CITIZEN_CONTEXT_DATABASE_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    url: str = Field(
        default="sqlite:///.data/citizen-context.db",
        description="SQLAlchemy URL of the database (SQLite by default; required outside development).",
    )

    @field_validator("url")
    @classmethod
    def _names_a_supported_database(cls, value: str) -> str:
        # Said here, as any other setting's error is, rather than as a traceback from the first command that
        # opens the database. The messages never repeat the URL: it may hold a password.
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(f"not a database URL; for example {POSTGRES_EXAMPLE}") from None
        backend = url.get_backend_name()
        if backend not in SUPPORTED_DATABASES:
            raise ValueError(f"the database must be SQLite or PostgreSQL, not {backend!r}")
        try:
            url.get_dialect().import_dbapi()
        except (ImportError, NoSuchModuleError):
            driver = url.get_driver_name()
            raise ValueError(
                f"no driver {driver!r} is installed for {backend}; for example {POSTGRES_EXAMPLE}"
            ) from None
        return value


def create_db_engine(settings: DatabaseSettings, *, autocommit: bool = False) -> Engine:
    """Build the engine for the configured URL (the SQLite file's folder is created if missing).

    With `autocommit`, every statement is a transaction of its own, committed as it runs: for a writer
    whose every write is one statement (the audit trail), which then needs no BEGIN and no COMMIT.
    """
    # hide_parameters: SQL errors would otherwise quote the values (citizen ids, enquiry notes) in logs.
    options: dict[str, Any] = {"hide_parameters": True}
    if autocommit:
        options["isolation_level"] = "AUTOCOMMIT"
    url = make_url(settings.url)
    if url.get_backend_name() == "sqlite":  # whatever its driver is named (`sqlite+pysqlite://...`)
        database = url.database
        if database and database != ":memory:":
            folder = Path(database).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise DatabaseLocationError(
                    f"cannot create the SQLite database's folder {folder}: {error.strerror or error}"
                ) from error
        engine = create_engine(settings.url, connect_args={"check_same_thread": False}, **options)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(settings.url, pool_pre_ping=True, **options)


def driver_error_code(error: BaseException) -> str | None:
    """The driver's own code for a database error wrapped by SQLAlchemy: SQLite's extended result name
    (SQLITE_BUSY_SNAPSHOT tells a stale snapshot from SQLITE_BUSY, a lock held past the busy timeout),
    PostgreSQL's SQLSTATE. None for an error that has none (a connection refused, the pool's wait run out)."""
    original = getattr(error, "orig", None)
    for name in ("sqlite_errorname", "sqlstate", "pgcode"):  # sqlite3, psycopg 3, psycopg2
        code = getattr(original, name, None)
        if isinstance(code, str) and code:
            return code
    return None


def driver_code_log_fields(error: BaseException) -> dict[str, str]:
    """What a log line adds about a database error: its driver's code, when it has one. Never its message,
    which may quote the statement's data."""
    code = driver_error_code(error)
    return {"driver_code": code} if code else {}


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    # WAL lets the API read while a migration or another process writes; foreign keys are off by default.
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_migration_engine(settings: DatabaseSettings) -> Engine:
    """The engine migrations run on: as `create_db_engine`, but on SQLite a transaction covers DDL too.

    sqlite3 (in its legacy transaction control) begins a transaction before INSERT, UPDATE and DELETE
    only, so each CREATE, ALTER or DROP would be committed as it runs, and a migration failing half-way
    would leave its first statements applied under the previous revision. SQLAlchemy's recipe for
    transactional DDL on sqlite3: the driver begins nothing, and every transaction starts with our BEGIN.
    """
    engine = create_db_engine(settings)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_driver_begins_nothing)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_driver_begins_nothing(dbapi_connection: object, _record: object) -> None:
    dbapi_connection.isolation_level = None  # type: ignore[attr-defined]


def _sqlite_begin(connection: Connection) -> None:
    # IMMEDIATE takes the write lock at once (waiting out another writer): a migration reads
    # alembic_version before it writes, and in WAL a deferred transaction whose snapshot another
    # migration has since changed could not write at all.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def migrate(settings: DatabaseSettings, revision: str = "head") -> None:
    """Bring the schema up to `revision` (idempotent)."""
    _run(settings, command.upgrade, revision)


def downgrade(settings: DatabaseSettings, revision: str) -> None:
    """Take the schema down to `revision` ("base": no tables)."""
    _run(settings, command.downgrade, revision)


def _run(settings: DatabaseSettings, step: Callable[[Config, str], None], revision: str) -> None:
    engine = create_migration_engine(settings)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Replicas starting together (each API migrates as it starts, and so do the `keys`
                # commands) take turns: the next finds the schema current and changes nothing. Without it,
                # both would read the same revision and the second fail on tables the first created.
                # Held until this transaction ends, which on PostgreSQL covers the DDL too.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            step(config, revision)
    finally:
        engine.dispose()


def ping(engine: Engine) -> None:
    """Raise unless the database answers a trivial query."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
