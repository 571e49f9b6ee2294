"""Alembic environment: runs on the connection `models.database.migrate` hands over."""

from alembic import context
from sqlmodel import SQLModel

import models.tables  # noqa: F401  (registers the tables on SQLModel.metadata)

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
# The run is inside the one transaction `migrate` began (DDL included, on SQLite too), so this begins
# nothing of its own and a failure rolls back every revision of the run. SQLite ignores PRAGMA
# foreign_keys inside a transaction: a batch migration cannot switch foreign keys off for its rebuild.
with context.begin_transaction():
    context.run_migrations()
