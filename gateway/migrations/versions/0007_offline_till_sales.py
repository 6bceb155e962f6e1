"""Offline till sales: a pos reader's offline floor and cap (its Config's, so a change of either
is a new configuration version); the offline PIN check and its salt, kept with the guest's
privilege and logged to catalog_log when anything a till's band list says changes (so every
gateway's view, and the tills' lists, follow); the charge each pos tap answered and how far an
offline sale overdrew its account; and a wallet that an offline sale took below its floor
(``overdrawn``), the one case the floor's CHECK allows.

Revision ID: 0007
Revises: 0006
Create Date: hand-written
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

# What a reader's Config carries (0003's, and now the offline floor and cap).
_OLD_CONFIG_COLUMNS = ("site", "role", "gate", "direction", "deadline_ms", "hold_ms")
_CONFIG_COLUMNS = (*_OLD_CONFIG_COLUMNS, "offline_floor", "offline_cap")
# What a till's band list says of a guest (core/lists.py): a change to any is a list change.
_LISTED_COLUMNS = ("enabled", "locked", "pin_threshold", "pin_check", "pin_salt")
_NEXT = "(SELECT coalesce(max(seq), 0) FROM catalog_log) + 1"
_FLOOR = "floor IS NULL OR balance >= floor"
_FLOOR_OR_OVERDRAWN = "floor IS NULL OR balance >= floor OR overdrawn"


def upgrade() -> None:
    # Plain ADD COLUMN (0005 says why not batch mode) wherever the table has triggers.
    op.add_column("readers", sa.Column("offline_floor", sa.BigInteger(), nullable=True))
    op.add_column("readers", sa.Column("offline_cap", sa.BigInteger(), nullable=True))
    _config_version_trigger(_CONFIG_COLUMNS)
    op.add_column("charging", sa.Column("pin_check", sa.LargeBinary(), nullable=True))
    op.add_column("charging", sa.Column("pin_salt", sa.LargeBinary(), nullable=True))
    _log_privileges()
    op.add_column("taps", sa.Column("charge_id", sa.LargeBinary(16), nullable=True))
    op.add_column("taps", sa.Column("overdraft", sa.BigInteger(), nullable=True))
    # accounts has no triggers: on SQLite its CHECK changes by a batch copy. The copy drops
    # and renames the table parties and postings refer to: their foreign keys are checked at
    # the commit, when accounts is back.
    _defer_foreign_keys()
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(
            sa.Column("overdrawn", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.drop_constraint("ck_accounts_floor", type_="check")
        batch.create_check_constraint("ck_accounts_floor", _FLOOR_OR_OVERDRAWN)


def downgrade() -> None:
    _defer_foreign_keys()
    # An overdrawn account cannot meet the old CHECK: the downgrade fails rather than lose it.
    with op.batch_alter_table("accounts") as batch:
        batch.drop_constraint("ck_accounts_floor", type_="check")
        batch.create_check_constraint("ck_accounts_floor", _FLOOR)
        batch.drop_column("overdrawn")
    op.drop_column("taps", "overdraft")
    op.drop_column("taps", "charge_id")
    _unlog_privileges()
    op.drop_column("charging", "pin_salt")
    op.drop_column("charging", "pin_check")
    _config_version_trigger(_OLD_CONFIG_COLUMNS)
    op.drop_column("readers", "offline_cap")
    op.drop_column("readers", "offline_floor")


def _defer_foreign_keys() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("PRAGMA defer_foreign_keys = ON")  # until this transaction commits


def _config_version_trigger(columns: tuple[str, ...]) -> None:
    """0003's trigger, for these configuration columns."""
    if op.get_bind().dialect.name == "postgresql":
        old = ", ".join(f"OLD.{c}" for c in columns)
        new = ", ".join(f"NEW.{c}" for c in columns)
        op.execute(
            f"""
            CREATE OR REPLACE FUNCTION bandlink_reader_config_version() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'INSERT' THEN
                    NEW.config_version := {_NEXT};
                ELSIF ({new}) IS DISTINCT FROM ({old}) THEN
                    NEW.config_version := greatest(OLD.config_version + 1, {_NEXT});
                END IF;
                RETURN NEW;
            END $$
            """
        )
        return
    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in columns)
    op.execute("DROP TRIGGER readers_config_version")
    op.execute(
        f"CREATE TRIGGER readers_config_version AFTER UPDATE ON readers FOR EACH ROW "
        f"WHEN {changed} BEGIN UPDATE readers SET config_version = "
        f"max(OLD.config_version + 1, {_NEXT}) WHERE id = NEW.id; END"
    )


def _log_privileges() -> None:
    """A guest's privilege changes a till's list (0002's catalog log, kind "privilege"): on
    insert and delete, and on an update of what a list says (a wrong PIN that does not lock,
    or the count a right PIN clears, is no change to any list)."""
    if op.get_bind().dialect.name == "postgresql":
        old = ", ".join(f"OLD.{c}" for c in _LISTED_COLUMNS)
        new = ", ".join(f"NEW.{c}" for c in _LISTED_COLUMNS)
        function = "bandlink_catalog_changed('privilege', 'guest_id')"
        op.execute(
            "CREATE TRIGGER charging_logged AFTER INSERT OR DELETE ON charging "
            f"FOR EACH ROW EXECUTE FUNCTION {function}"
        )
        op.execute(
            "CREATE TRIGGER charging_changed_logged AFTER UPDATE ON charging FOR EACH ROW "
            f"WHEN (({new}) IS DISTINCT FROM ({old})) EXECUTE FUNCTION {function}"
        )
        return
    log = "INSERT INTO catalog_log (kind, key) VALUES ('privilege', {row}.guest_id);"
    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in _LISTED_COLUMNS)
    for event, row, when in (
        ("insert", "NEW", ""),
        ("delete", "OLD", ""),
        ("update", "NEW", f"WHEN {changed} "),
    ):
        op.execute(
            f"CREATE TRIGGER charging_{event}_logged AFTER {event.upper()} ON charging "
            f"FOR EACH ROW {when}BEGIN {log.format(row=row)} END"
        )


def _unlog_privileges() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER charging_changed_logged ON charging")
        op.execute("DROP TRIGGER charging_logged ON charging")
        return
    for event in ("insert", "delete", "update"):
        op.execute(f"DROP TRIGGER charging_{event}_logged")
