"""Drop two single-column indexes on enquiries that only misled SQLite's planner.

- The agent's: the (agent, citizen, status) index of 0004 leads with the agent, so it finds an agent's
  enquiries as well, and each enquiry written kept both.
- The status's: no query asks by status alone, and with a handful of distinct values it narrows little.
  Yet SQLite's planner, without statistics, preferred it for an agent's active enquiries (as it had for the
  audit's holder lookup before 0004), and then walked every active enquiry of every agent.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_enquiries_agent_id", table_name="enquiries")
    op.drop_index("ix_enquiries_status", table_name="enquiries")


def downgrade() -> None:
    op.create_index("ix_enquiries_status", "enquiries", ["status"])
    op.create_index("ix_enquiries_agent_id", "enquiries", ["agent_id"])
