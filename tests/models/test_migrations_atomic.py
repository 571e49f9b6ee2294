"""A migration runs in one transaction: one that fails part-way leaves the schema as it was."""

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import SQLAlchemyError

from models.database import DatabaseSettings, create_db_engine, create_migration_engine, migrate

# 0003 creates api_keys (and its index) first and audit_records after: a table of that name already
# there makes 0003 fail half-way, after its first statements ran.
BEFORE_FAILING = "0002"
OBSTACLE = "audit_records"


def _schema(settings: DatabaseSettings) -> dict[str, Any]:
    """Every table with its columns and indexes, and the revision alembic_version names."""
    engine = create_db_engine(settings)
    try:
        with engine.connect() as connection:
            inspector = inspect(connection)
            tables = {
                table: (
                    [column["name"] for column in inspector.get_columns(table)],
                    sorted(str(index["name"]) for index in inspector.get_indexes(table)),
                )
                for table in inspector.get_table_names()
            }
            revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        engine.dispose()
    return {"tables": tables, "revision": revision}


def _execute(settings: DatabaseSettings, statement: str) -> None:
    engine = create_db_engine(settings)
    try:
        with engine.begin() as connection:
            connection.execute(text(statement))
    finally:
        engine.dispose()


def test_a_migration_that_fails_part_way_leaves_no_trace(sql_database: DatabaseSettings) -> None:
    migrate(sql_database, BEFORE_FAILING)
    _execute(sql_database, f"CREATE TABLE {OBSTACLE} (id INTEGER)")
    before = _schema(sql_database)

    with pytest.raises(SQLAlchemyError):
        migrate(sql_database)

    after = _schema(sql_database)
    assert "api_keys" not in after["tables"]
    assert after == before
    assert after["revision"] == BEFORE_FAILING

    _execute(sql_database, f"DROP TABLE {OBSTACLE}")
    migrate(sql_database)
    assert _schema(sql_database)["revision"] == "0007"


def test_the_connection_pragmas_hold_inside_a_migration(tmp_path: Path) -> None:
    """They are set before BEGIN: inside a transaction SQLite ignores foreign_keys and refuses WAL."""
    engine = create_migration_engine(DatabaseSettings(url=f"sqlite:///{tmp_path / 'test.db'}"))
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            connection.exec_driver_sql("CREATE TABLE probe (id INTEGER)")
            connection.rollback()
        with engine.connect() as connection:
            assert "probe" not in inspect(connection).get_table_names()
    finally:
        engine.dispose()
