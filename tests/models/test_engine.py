"""The engines: one in autocommit commits each statement as it runs; the usual one waits for COMMIT; SQLite
URLs of either spelling are set up alike; settings errors keep the URL to themselves; an error is told by
its driver's code."""

from pathlib import Path

import pydantic
import pytest
import sqlalchemy
from sqlalchemy import text

from models.database import (
    DatabaseSettings,
    create_db_engine,
    driver_code_log_fields,
    driver_error_code,
    migrate,
)

COUNT_AGENTS = text("SELECT COUNT(*) FROM agents")
ADD_AGENT = text(
    "INSERT INTO agents (id, display_name, role, created_at)"
    " VALUES ('A-1', 'One', 'agent', CURRENT_TIMESTAMP)"
)


def test_in_autocommit_a_statement_is_committed_as_it_runs(sql_database: DatabaseSettings) -> None:
    migrate(sql_database)
    writer = create_db_engine(sql_database, autocommit=True)
    reader = create_db_engine(sql_database)
    try:
        with writer.connect() as connection:
            connection.execute(ADD_AGENT)
            # No commit, and the connection is still open: another one sees the row already.
            with reader.connect() as other:
                assert other.execute(COUNT_AGENTS).scalar_one() == 1
            connection.rollback()  # nothing to roll back: the row stays
        with reader.connect() as other:
            assert other.execute(COUNT_AGENTS).scalar_one() == 1
    finally:
        writer.dispose()
        reader.dispose()


def test_otherwise_a_statement_waits_for_its_transaction(sql_database: DatabaseSettings) -> None:
    migrate(sql_database)
    engine = create_db_engine(sql_database)
    try:
        with engine.connect() as connection:
            connection.execute(ADD_AGENT)
            connection.rollback()
        with engine.connect() as other:
            assert other.execute(COUNT_AGENTS).scalar_one() == 0
    finally:
        engine.dispose()


@pytest.mark.parametrize("scheme", ["sqlite", "sqlite+pysqlite"])
def test_a_sqlite_url_of_either_spelling_gets_its_folder_and_pragmas(scheme: str, tmp_path: Path) -> None:
    settings = DatabaseSettings(url=f"{scheme}:///{tmp_path / 'new-folder' / 'test.db'}")
    engine = create_db_engine(settings)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_a_settings_error_does_not_repeat_the_database_url() -> None:
    with pytest.raises(pydantic.ValidationError) as refused:
        DatabaseSettings(url="foo://agent:s3cret-pw@db/x")
    assert "s3cret-pw" not in str(refused.value)


def test_a_database_error_carries_the_drivers_code_not_its_data(sql_database: DatabaseSettings) -> None:
    engine = create_db_engine(sql_database)
    try:
        with pytest.raises(sqlalchemy.exc.DBAPIError) as raised, engine.connect() as connection:
            connection.execute(text("SELECT secret FROM no_such_table WHERE id = :id"), {"id": "C-1"})
    finally:
        engine.dispose()
    expected = "SQLITE_ERROR" if engine.dialect.name == "sqlite" else "42P01"  # PostgreSQL's undefined_table
    assert driver_error_code(raised.value) == expected
    fields = driver_code_log_fields(raised.value)
    assert fields == {"driver_code": expected}
    assert str(raised.value.orig) not in str(fields)  # the driver's message stays out of the log


def test_a_sqlite_lock_held_past_the_busy_timeout_is_told_by_its_code(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'test.db'}"
    holder = create_db_engine(DatabaseSettings(url=url), autocommit=True)
    # The same database with no busy timeout at all: the lock is reported at once rather than in 5 s.
    impatient = sqlalchemy.create_engine(url, connect_args={"timeout": 0})
    try:
        with holder.connect() as holding, impatient.connect() as waiting:
            holding.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY)")
            holding.exec_driver_sql("BEGIN EXCLUSIVE")
            with pytest.raises(sqlalchemy.exc.OperationalError) as raised:
                waiting.exec_driver_sql("INSERT INTO notes (id) VALUES (1)")
            holding.exec_driver_sql("ROLLBACK")
    finally:
        holder.dispose()
        impatient.dispose()
    assert driver_error_code(raised.value) == "SQLITE_BUSY"


def test_an_error_from_elsewhere_has_no_drivers_code_and_logs_none() -> None:
    assert driver_error_code(RuntimeError("not the database's")) is None
    assert driver_code_log_fields(RuntimeError("not the database's")) == {}
