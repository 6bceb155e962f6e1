"""Issue 7: the role a tap was made in (a mid names one operation of one reader); each
reader's configuration (direction, deadline, hold) and its version, bumped by a trigger on
every change of it, whoever makes it; sites with their own time zone and closing time,
logged to catalog_log like the other catalog tables.

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


# What a reader's Config carries: a change to any of them is a new configuration version.
_CONFIG_COLUMNS = ("site", "role", "gate", "direction", "deadline_ms", "hold_ms")


def upgrade() -> None:
    with op.batch_alter_table("taps") as batch:
        # Every tap recorded before this revision was a gate tap: no other role was served.
        batch.add_column(sa.Column("role", sa.Text(), nullable=False, server_default="gate"))
    with op.batch_alter_table("readers") as batch:
        batch.add_column(sa.Column("direction", sa.Text(), nullable=False, server_default="in"))
        batch.add_column(
            sa.Column("deadline_ms", sa.Integer(), nullable=False, server_default="800")
        )
        batch.add_column(sa.Column("hold_ms", sa.Integer(), nullable=False, server_default="1500"))
        batch.add_column(
            sa.Column("config_version", sa.BigInteger(), nullable=False, server_default="1")
        )
    op.create_table(
        "sites",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("timezone", sa.Text(), nullable=True),
        sa.Column("closing", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sites"),
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgresql_version_trigger()
        op.execute(
            "CREATE TRIGGER sites_logged AFTER INSERT OR UPDATE OR DELETE ON sites "
            "FOR EACH ROW EXECUTE FUNCTION bandlink_catalog_changed('site', 'id')"
        )
    else:
        _sqlite_version_trigger()
        for event, rows in {
            "insert": ("NEW",),
            "update": ("OLD", "NEW"),
            "delete": ("OLD",),
        }.items():
            body = " ".join(
                f"INSERT INTO catalog_log (kind, key) VALUES ('site', {row}.id);" for row in rows
            )
            op.execute(
                f"CREATE TRIGGER sites_{event}_logged AFTER {event.upper()} ON sites "
                f"FOR EACH ROW BEGIN {body} END"
            )


# A new version is above the reader's last one, and above every version any reader ever had
# (the catalog log's head grows with every catalog change): a reader removed and added again
# gets a version higher than the one it runs, which it would otherwise ignore.
_NEXT = "(SELECT coalesce(max(seq), 0) FROM catalog_log) + 1"


def _sqlite_version_trigger() -> None:
    # AFTER, with an UPDATE of their own (SQLite's triggers cannot assign NEW); recursive
    # triggers are off, and that UPDATE changes no configuration column anyway.
    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in _CONFIG_COLUMNS)
    op.execute(
        f"CREATE TRIGGER readers_config_version AFTER UPDATE ON readers FOR EACH ROW "
        f"WHEN {changed} BEGIN UPDATE readers SET config_version = "
        f"max(OLD.config_version + 1, {_NEXT}) WHERE id = NEW.id; END"
    )
    op.execute(
        f"CREATE TRIGGER readers_first_config_version AFTER INSERT ON readers FOR EACH ROW "
        f"BEGIN UPDATE readers SET config_version = {_NEXT} WHERE id = NEW.id; END"
    )


def _postgresql_version_trigger() -> None:
    old = ", ".join(f"OLD.{c}" for c in _CONFIG_COLUMNS)
    new = ", ".join(f"NEW.{c}" for c in _CONFIG_COLUMNS)
    op.execute(
        f"""
        CREATE FUNCTION bandlink_reader_config_version() RETURNS trigger LANGUAGE plpgsql AS $$
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
    op.execute(
        "CREATE TRIGGER readers_config_version BEFORE INSERT OR UPDATE ON readers "
        "FOR EACH ROW EXECUTE FUNCTION bandlink_reader_config_version()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER sites_logged ON sites")
        op.execute("DROP TRIGGER readers_config_version ON readers")
        op.execute("DROP FUNCTION bandlink_reader_config_version()")
    else:
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER sites_{event}_logged")
        op.execute("DROP TRIGGER readers_config_version")
        op.execute("DROP TRIGGER readers_first_config_version")
    op.drop_table("sites")
    with op.batch_alter_table("readers") as batch:
        for column in ("config_version", "hold_ms", "deadline_ms", "direction"):
            batch.drop_column(column)
    with op.batch_alter_table("taps") as batch:
        batch.drop_column("role")
