"""Issue 7: the role a tap was made in (a mid names one operation of one reader).

Revision ID: 0003
Revises: 0002
Create Date: hand-written
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("taps") as batch:
        # Every tap recorded before this revision was a gate tap: no other role was served.
        batch.add_column(sa.Column("role", sa.Text(), nullable=False, server_default="gate"))


def downgrade() -> None:
    with op.batch_alter_table("taps") as batch:
        batch.drop_column("role")
