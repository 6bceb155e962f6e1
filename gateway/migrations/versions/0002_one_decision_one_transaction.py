"""Shared state for N gateway processes: presence versions (compare-and-set), reader sessions,
and a catalog change log written by triggers, which every process's memory view follows.

Revision ID: 0002
Revises: 0001
Create Date: hand-written
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

# table -> (kind logged, the key column; tickets are looked up by their guest)
_LOGGED = {
    "guests": ("guest", "id"),
    "bands": ("band", "uid"),
    "tickets": ("ticket", "guest_id"),
    "readers": ("reader", "id"),
}


def upgrade() -> None:
    with op.batch_alter_table("presence") as batch:
        batch.add_column(sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_index("ix_bands_guest_id", "bands", ["guest_id"])
    op.create_table(
        "reader_sessions",
        sa.Column("reader_id", sa.Text(), nullable=False),
        sa.Column("bdseq", sa.BigInteger(), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("firmware", sa.Text(), nullable=True),
        sa.Column("changed_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("reader_id", name="pk_reader_sessions"),
    )
    op.create_table(
        "catalog_log",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            autoincrement=True,
        ),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_catalog_log"),
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgresql_triggers()
    else:
        _sqlite_triggers()


def _sqlite_triggers() -> None:
    for table, (kind, column) in _LOGGED.items():
        rows = {"insert": ("NEW",), "update": ("OLD", "NEW"), "delete": ("OLD",)}
        for event, which in rows.items():
            body = " ".join(_sqlite_log(kind, column, row) for row in which)
            op.execute(
                f"CREATE TRIGGER {table}_{event}_logged AFTER {event.upper()} ON {table} "
                f"FOR EACH ROW BEGIN {body} END"
            )


def _sqlite_log(kind: str, column: str, row: str) -> str:
    key = f"hex({row}.{column})" if column == "uid" else f"{row}.{column}"
    return f"INSERT INTO catalog_log (kind, key) VALUES ('{kind}', {key});"


def _postgresql_triggers() -> None:
    # LOCK: catalog writers take turns, so log sequence numbers become visible in order (a view
    # reading "seq > last" never skips a number a slower transaction committed later).
    op.execute(
        """
        CREATE FUNCTION bandlink_catalog_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            LOCK TABLE catalog_log IN EXCLUSIVE MODE;
            IF TG_OP <> 'INSERT' THEN
                INSERT INTO catalog_log (kind, key)
                VALUES (TG_ARGV[0], to_jsonb(OLD) ->> TG_ARGV[1]);
            END IF;
            IF TG_OP <> 'DELETE' THEN
                INSERT INTO catalog_log (kind, key)
                VALUES (TG_ARGV[0], to_jsonb(NEW) ->> TG_ARGV[1]);
            END IF;
            RETURN NULL;
        END $$
        """
    )
    for table, (kind, column) in _LOGGED.items():
        op.execute(
            f"CREATE TRIGGER {table}_logged AFTER INSERT OR UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION bandlink_catalog_changed('{kind}', '{column}')"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _LOGGED:
            op.execute(f"DROP TRIGGER {table}_logged ON {table}")
        op.execute("DROP FUNCTION bandlink_catalog_changed()")
    else:
        for table in _LOGGED:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER {table}_{event}_logged")
    op.drop_table("catalog_log")
    op.drop_table("reader_sessions")
    op.drop_index("ix_bands_guest_id", "bands")
    with op.batch_alter_table("presence") as batch:
        batch.drop_column("version")
