"""The application's database failing its readers, for real: PostgreSQL refusing connections (those open
ended), or, on SQLite, which has no server to refuse, the table the code under test reads moved away (an
OperationalError all the same)."""

import psycopg
from sqlalchemy import make_url

from models.database import DatabaseSettings, create_db_engine


class DatabaseOutage:
    """`begin()` takes the database away (on SQLite: `sqlite_table`), `restore()` brings it back."""

    def __init__(self, database: DatabaseSettings, *, sqlite_table: str) -> None:
        self._url = make_url(database.url)
        self._table = sqlite_table
        self._failing = False

    def begin(self) -> None:
        if not self._failing:
            self._set(available=False)

    def restore(self) -> None:
        if self._failing:
            self._set(available=True)

    def _set(self, *, available: bool) -> None:
        self._failing = not available
        if self._url.get_backend_name() == "sqlite":
            away = f"{self._table}_away"
            names = (away, self._table) if available else (self._table, away)
            engine = create_db_engine(DatabaseSettings(url=str(self._url)))
            try:
                with engine.begin() as connection:
                    connection.exec_driver_sql("ALTER TABLE {} RENAME TO {}".format(*names))
            finally:
                engine.dispose()
            return
        name = self._url.database
        maintenance = self._url.set(drivername="postgresql", database="postgres")
        with psycopg.connect(maintenance.render_as_string(hide_password=False), autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(available).lower()}')
            if not available:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
                )
