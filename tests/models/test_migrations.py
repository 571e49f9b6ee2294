"""Schema migrations: they build the tables and can run again safely."""

from pathlib import Path

from sqlalchemy import inspect, text

from models.database import DatabaseSettings, create_db_engine, migrate


def test_migrations_create_the_schema_and_are_idempotent(tmp_path: Path) -> None:
    settings = DatabaseSettings(url=f"sqlite:///{tmp_path / 'nested' / 'db.sqlite'}")
    migrate(settings)
    migrate(settings)
    engine = create_db_engine(settings)
    try:
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as connection:
            revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        engine.dispose()
    assert {"agents", "alembic_version"} <= tables
    assert revision == "0001"


def test_the_tables_match_the_models(tmp_path: Path) -> None:
    """What the migrations build is what the SQLModel classes describe (no drift)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    import models.tables  # noqa: F401  (registers the tables)

    settings = DatabaseSettings(url=f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(settings)
    engine = create_db_engine(settings)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    finally:
        engine.dispose()
    assert differences == []
