"""Issue 10: offline decisions, reconciled. A tap a reader decided alone is recorded as it
happened (``granted``/``reason`` are what the guest saw) with what the gateway would have
answered at that time (``gateway_reason``), and, where the two disagree in a way the venue must
see, the ``exception`` that puts it on the reconciliation report. And the band list each reader
holds, as far as the gateways know (they push it lists to decide from when offline).

Revision ID: 0006
Revises: 0005
Create Date: hand-written
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Plain ADD COLUMN (0005 says why not batch mode).
    op.add_column(
        "taps", sa.Column("offline", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column("taps", sa.Column("gateway_reason", sa.Text(), nullable=True))
    op.add_column("taps", sa.Column("exception", sa.Text(), nullable=True))
    op.create_index("ix_taps_exception", "taps", ["exception"])
    op.add_column("reader_sessions", sa.Column("list_version", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("reader_sessions", "list_version")
    op.drop_index("ix_taps_exception", table_name="taps")
    for column in ("exception", "gateway_reason", "offline"):
        op.drop_column("taps", column)
