"""Issue 9: bands prove their taps. Each band is a SUN band or, marked, a plain-UID one; the
last SUN counter accepted from each band; how each tap's band proved itself.

Revision ID: 0005
Revises: 0004
Create Date: hand-written
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Plain ADD COLUMN, not batch mode: on SQLite a batch copies the table, and the copy would
    # lose the catalog_log triggers of bands.
    op.add_column("bands", sa.Column("sun", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.add_column("taps", sa.Column("proof", sa.Text(), nullable=True))
    op.add_column("taps", sa.Column("sun_counter", sa.Integer(), nullable=True))
    op.create_table(
        "band_counters",
        sa.Column("uid", sa.LargeBinary(), nullable=False),
        sa.Column("counter", sa.Integer(), nullable=False),
        sa.Column("reader_id", sa.Text(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("uid", name="pk_band_counters"),
    )


def downgrade() -> None:
    op.drop_table("band_counters")
    with op.batch_alter_table("taps") as batch:
        batch.drop_column("sun_counter")
        batch.drop_column("proof")
    with op.batch_alter_table("bands") as batch:
        batch.drop_column("sun")
