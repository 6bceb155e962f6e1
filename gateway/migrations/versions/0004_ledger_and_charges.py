"""Issue 8: money. A double-entry ledger (accounts, transfers, postings: append-only), parties
paying for their members, charges at pos readers, guests' charging privileges and PINs, daily
spending; bearer tokens and idempotency keys for the HTTP API; a pos reader's outlet.

Revision ID: 0004
Revises: 0003
Create Date: hand-written
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_APPEND_ONLY = ("transfers", "postings")


def upgrade() -> None:
    with op.batch_alter_table("readers") as batch:
        batch.add_column(sa.Column("outlet", sa.Text(), nullable=True))
    with op.batch_alter_table("taps") as batch:
        batch.add_column(sa.Column("text", sa.Text(), nullable=True))
        batch.add_column(sa.Column("balance", sa.BigInteger(), nullable=True))
    op.create_table(
        "accounts",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("floor", sa.BigInteger(), nullable=True),
        sa.Column("balance", sa.BigInteger(), nullable=False, server_default="0"),
        sa.CheckConstraint("floor IS NULL OR balance >= floor", name="ck_accounts_floor"),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
    )
    op.create_table(
        "parties",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_parties_account_id_accounts"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_parties"),
    )
    op.create_table(
        "party_members",
        sa.Column("guest_id", sa.Text(), nullable=False),
        sa.Column("party_id", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["guest_id"], ["guests.id"], name="fk_party_members_guest_id_guests"
        ),
        sa.ForeignKeyConstraint(
            ["party_id"], ["parties.id"], name="fk_party_members_party_id_parties"
        ),
        sa.PrimaryKeyConstraint("guest_id", name="pk_party_members"),
    )
    op.create_index("ix_party_members_party_id", "party_members", ["party_id"])
    op.create_table(
        "transfers",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("guest_id", sa.Text(), nullable=True),
        sa.Column("charge_id", sa.LargeBinary(16), nullable=True),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("amount > 0", name="ck_transfers_amount"),
        sa.PrimaryKeyConstraint("id", name="pk_transfers"),
    )
    op.create_index(
        "uq_transfers_paid_charge",
        "transfers",
        ["charge_id"],
        unique=True,
        sqlite_where=sa.text("kind = 'charge'"),
        postgresql_where=sa.text("kind = 'charge'"),
    )
    op.create_table(
        "postings",
        sa.Column("transfer_id", sa.Text(), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["transfer_id"], ["transfers.id"], name="fk_postings_transfer_id_transfers"
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_postings_account_id_accounts"
        ),
        sa.PrimaryKeyConstraint("transfer_id", "account_id", name="pk_postings"),
    )
    op.create_index("ix_postings_account_id", "postings", ["account_id"])
    op.create_table(
        "charges",
        sa.Column("id", sa.LargeBinary(16), nullable=False),
        sa.Column("reader_id", sa.Text(), nullable=False),
        sa.Column("outlet", sa.Text(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("lines", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("guest_id", sa.Text(), nullable=True),
        sa.Column("tap_mid", sa.LargeBinary(16), nullable=True),
        sa.Column("transfer_id", sa.Text(), nullable=True),
        sa.Column("refunded", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("completed_ms", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("amount > 0", name="ck_charges_amount"),
        sa.CheckConstraint("refunded >= 0 AND refunded <= amount", name="ck_charges_refunded"),
        sa.PrimaryKeyConstraint("id", name="pk_charges"),
    )
    op.create_index(
        "uq_charges_pending_reader",
        "charges",
        ["reader_id"],
        unique=True,
        sqlite_where=sa.text("state = 'pending'"),
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_table(
        "charging",
        sa.Column("guest_id", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.text("true")),
        sa.Column("daily_limit", sa.BigInteger(), nullable=True),
        sa.Column("pin_threshold", sa.BigInteger(), nullable=True),
        sa.Column("pin_hash", sa.Text(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("locked", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.ForeignKeyConstraint(["guest_id"], ["guests.id"], name="fk_charging_guest_id_guests"),
        sa.PrimaryKeyConstraint("guest_id", name="pk_charging"),
    )
    op.create_table(
        "spending",
        sa.Column("guest_id", sa.Text(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("spent", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["guest_id"], ["guests.id"], name="fk_spending_guest_id_guests"),
        sa.PrimaryKeyConstraint("guest_id", "day", name="pk_spending"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("outlet", sa.Text(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("revoked_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("hash", name="uq_api_tokens_hash"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("principal", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("principal", "key", name="pk_idempotency_keys"),
    )
    _append_only()


def _append_only() -> None:
    """Money once posted stays posted: the database refuses to change or remove it."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION bandlink_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only: post a correcting transfer', TG_TABLE_NAME;
            END $$
            """
        )
        for table in _APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION bandlink_append_only()"
            )
        return
    for table in _APPEND_ONLY:
        for event in ("update", "delete"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{event} BEFORE {event.upper()} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: post a correcting "
                "transfer'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _APPEND_ONLY:
            op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
        op.execute("DROP FUNCTION bandlink_append_only()")
    for table in (
        "idempotency_keys",
        "api_tokens",
        "spending",
        "charging",
        "charges",
        "postings",
        "transfers",
        "party_members",
        "parties",
        "accounts",
    ):
        op.drop_table(table)
    with op.batch_alter_table("readers") as batch:
        batch.drop_column("outlet")
    with op.batch_alter_table("taps") as batch:
        batch.drop_column("balance")
        batch.drop_column("text")
