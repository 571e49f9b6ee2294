"""The engines: one in autocommit commits each statement as it runs; the usual one waits for COMMIT."""

from sqlalchemy import text

from models.database import DatabaseSettings, create_db_engine, migrate

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
