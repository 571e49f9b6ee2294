"""The audit trail refuses TRUNCATE on PostgreSQL as well: row triggers (0003) do not fire for it, so a
mistaken script could still empty the table at once. SQLite has no TRUNCATE.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # The function of 0003 raises whatever it is called for.
        op.execute(
            "CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records"
            " FOR EACH STATEMENT EXECUTE FUNCTION audit_records_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_records_no_truncate ON audit_records")
