"""An index for the question every context read asks: does this agent hold an active enquiry for this
citizen?

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_enquiries_holder", "enquiries", ["agent_id", "citizen_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_enquiries_holder", table_name="enquiries")
