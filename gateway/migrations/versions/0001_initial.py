"""Initial schema: guests, bands, tickets, readers, presence, taps.

Revision ID: 0001
Revises:
Create Date: hand-written
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # A frozen copy of the schema, not an import of store.py's tables: later revisions change
    # the tables, and this revision must keep building the schema as it was.
    op.create_table(
        "guests",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("first_name", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_guests"),
    )
    op.create_table(
        "bands",
        sa.Column("uid", sa.LargeBinary(), nullable=False),
        sa.Column("guest_id", sa.Text(), nullable=True),
        sa.Column("blocked", sa.Boolean(), nullable=False),
        sa.Column(
            "issued_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.ForeignKeyConstraint(["guest_id"], ["guests.id"], name="fk_bands_guest_id_guests"),
        sa.PrimaryKeyConstraint("uid", name="pk_bands"),
    )
    op.create_table(
        "tickets",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("guest_id", sa.Text(), nullable=False),
        sa.Column("site", sa.Text(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(["guest_id"], ["guests.id"], name="fk_tickets_guest_id_guests"),
        sa.PrimaryKeyConstraint("id", name="pk_tickets"),
    )
    op.create_index("ix_tickets_guest_id", "tickets", ["guest_id"])
    op.create_table(
        "readers",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("site", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("gate", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_readers"),
    )
    op.create_table(
        "presence",
        sa.Column("guest_id", sa.Text(), nullable=False),
        sa.Column("site", sa.Text(), nullable=False),
        sa.Column("inside", sa.Boolean(), nullable=False),
        sa.Column("gate", sa.Text(), nullable=False),
        sa.Column("changed_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["guest_id"], ["guests.id"], name="fk_presence_guest_id_guests"),
        sa.PrimaryKeyConstraint("guest_id", "site", name="pk_presence"),
    )
    op.create_table(
        "taps",
        sa.Column("mid", sa.LargeBinary(16), nullable=False),
        sa.Column("reader_id", sa.Text(), nullable=False),
        sa.Column("uid", sa.LargeBinary(), nullable=False),
        sa.Column("direction", sa.Text(), nullable=False),
        sa.Column("reader_ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("guest_id", sa.Text(), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("mid", name="pk_taps"),
    )
    op.create_index("ix_taps_received_ms", "taps", ["received_ms"])
    op.create_index("ix_taps_uid", "taps", ["uid"])


def downgrade() -> None:
    op.drop_table("taps")
    op.drop_table("presence")
    op.drop_table("readers")
    op.drop_table("tickets")
    op.drop_table("bands")
    op.drop_table("guests")
