"""Enquiries table; timestamps carry their timezone.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "enquiries",
        sa.Column("id", sa.String(length=36), primary_key=True),
        sa.Column("citizen_id", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("agent_id", sa.String(length=200), nullable=False),
        sa.Column("status", sa.Enum("active", "completed", name="enquirystatus"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=64), nullable=True),
        sa.Column("notes", sa.String(length=4000), nullable=True),
    )
    op.create_index("ix_enquiries_citizen_id", "enquiries", ["citizen_id"])
    op.create_index("ix_enquiries_agent_id", "enquiries", ["agent_id"])
    op.create_index("ix_enquiries_status", "enquiries", ["status"])
    with op.batch_alter_table("agents") as agents:
        agents.alter_column("created_at", type_=sa.DateTime(timezone=True), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("agents") as agents:
        agents.alter_column("created_at", type_=sa.DateTime(), existing_nullable=False)
    op.drop_index("ix_enquiries_status", table_name="enquiries")
    op.drop_index("ix_enquiries_agent_id", table_name="enquiries")
    op.drop_index("ix_enquiries_citizen_id", table_name="enquiries")
    op.drop_table("enquiries")
    sa.Enum(name="enquirystatus").drop(op.get_bind(), checkfirst=True)
