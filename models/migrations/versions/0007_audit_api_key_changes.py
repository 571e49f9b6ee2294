"""The audit trail records API key changes: three actions (a key created, rotated, revoked) and the
key's id.

PostgreSQL cannot take a value out of an enum type, so a downgrade leaves the three actions in the type
(its records stay as well: the trail is append-only); only the column goes.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The actions' names, as the enum stores them (0003); no longer than the longest before (13 characters),
# so that SQLite's text column, sized by 0003, still describes them.
KEY_ACTIONS = ("key_created", "key_rotated", "key_revoked")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # A value added in a transaction may be used once it commits (PostgreSQL 12 and later); the
        # migration writes no record.
        for action in KEY_ACTIONS:
            op.execute(f"ALTER TYPE auditaction ADD VALUE IF NOT EXISTS '{action}'")
    # SQLite keeps the enum as text without a constraint (0003): any name fits.
    op.add_column("audit_records", sa.Column("api_key_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    op.drop_column("audit_records", "api_key_id")
