"""Issue 9: bands you can trust. Each band is a SUN band or, marked, a plain-UID one, and may be
blocked (why, when, its replacement); the last SUN counter accepted from each band; how each
tap's band proved itself. Staff with passwords, web sessions (staff and guests), and the
append-only audit log of every operator action.

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
    op.add_column("bands", sa.Column("blocked_reason", sa.Text(), nullable=True))
    op.add_column("bands", sa.Column("blocked_ms", sa.BigInteger(), nullable=True))
    op.add_column("bands", sa.Column("replaced_by", sa.LargeBinary(), nullable=True))
    op.create_table(
        "band_counters",
        sa.Column("uid", sa.LargeBinary(), nullable=False),
        sa.Column("counter", sa.Integer(), nullable=False),
        sa.Column("reader_id", sa.Text(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("uid", name="pk_band_counters"),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at_ms", "audit_log", ["at_ms"])
    _append_only("audit_log")
    op.create_table(
        "staff",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("outlet", sa.Text(), nullable=True),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("disabled_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_staff"),
    )
    op.create_table(
        "login_attempts",
        sa.Column("login", sa.Text(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("login", name="pk_login_attempts"),
    )
    op.create_table(
        "web_sessions",
        sa.Column("digest", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("band", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("digest", name="pk_web_sessions"),
    )


def _append_only(table: str) -> None:
    """What happened stays what happened: the database refuses to change or remove it."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION bandlink_history_kept() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
            END $$
            """
        )
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION bandlink_history_kept()"
        )
        # Row triggers do not see TRUNCATE.
        op.execute(
            f"CREATE TRIGGER {table}_not_truncated BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION bandlink_history_kept()"
        )
        return
    for event in ("update", "delete"):
        op.execute(
            f"CREATE TRIGGER {table}_no_{event} BEFORE {event.upper()} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_log_not_truncated ON audit_log")
        op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION bandlink_history_kept()")
    for table in ("web_sessions", "login_attempts", "staff", "audit_log"):
        op.drop_table(table)
    op.drop_table("band_counters")
    with op.batch_alter_table("taps") as batch:
        batch.drop_column("sun_counter")
        batch.drop_column("proof")
    with op.batch_alter_table("bands") as batch:
        for column in ("replaced_by", "blocked_ms", "blocked_reason", "sun"):
            batch.drop_column(column)
    if op.get_bind().dialect.name == "sqlite":
        # The batch copied bands into a new table, without its catalog_log triggers (0002's).
        for event, rows in (("insert", ("NEW",)), ("update", ("OLD", "NEW")), ("delete", ("OLD",))):
            body = " ".join(
                f"INSERT INTO catalog_log (kind, key) VALUES ('band', hex({row}.uid));"
                for row in rows
            )
            op.execute(
                f"CREATE TRIGGER bands_{event}_logged AFTER {event.upper()} ON bands "
                f"FOR EACH ROW BEGIN {body} END"
            )
