"""Schema migrations: they build the tables and can run again safely."""

import threading
from pathlib import Path

from sqlalchemy import Engine, inspect, text

from models.database import MIGRATION_LOCK, DatabaseSettings, create_db_engine, downgrade, migrate
from tests.conftest import wait_until


def test_migrations_create_the_schema_and_are_idempotent(sql_database: DatabaseSettings) -> None:
    settings = sql_database
    migrate(settings)
    migrate(settings)
    engine = create_db_engine(settings)
    try:
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as connection:
            revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        engine.dispose()
    assert {"agents", "enquiries", "api_keys", "audit_records", "alembic_version"} <= tables
    assert revision == "0007"


def test_the_sqlite_folder_is_created(tmp_path: Path) -> None:
    migrate(DatabaseSettings(url=f"sqlite:///{tmp_path / 'nested' / 'db.sqlite'}"))
    assert (tmp_path / "nested" / "db.sqlite").exists()


def test_migrations_downgrade_to_nothing_and_back(sql_database: DatabaseSettings) -> None:
    migrate(sql_database)
    downgrade(sql_database, "base")
    engine = create_db_engine(sql_database)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    migrate(sql_database)


def test_the_tables_match_the_models(sql_database: DatabaseSettings) -> None:
    """What the migrations build is what the SQLModel classes describe (no drift)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    import models.tables  # noqa: F401  (registers the tables)

    migrate(sql_database)
    engine = create_db_engine(sql_database)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_migrations_of_replicas_starting_together_take_turns_on_postgresql(
    postgres_database: DatabaseSettings,
) -> None:
    # Another replica's migration holds the lock: this one waits for it, then finds nothing to do.
    engine = create_db_engine(postgres_database)
    failures: list[BaseException] = []

    def migrate_reporting() -> None:
        try:
            migrate(postgres_database)
        except BaseException as error:
            failures.append(error)

    try:
        with engine.begin() as other:
            other.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            waiting = threading.Thread(target=migrate_reporting)
            waiting.start()
            wait_until(
                lambda: _advisory_lock_waiters(engine) == 1, what="the second migration waiting for the lock"
            )
            assert waiting.is_alive()
        waiting.join(timeout=60)
        assert not waiting.is_alive()
        assert failures == []
        with engine.connect() as connection:
            revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        assert revision == "0007"
    finally:
        engine.dispose()


def _advisory_lock_waiters(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            ).scalar_one()
        )
