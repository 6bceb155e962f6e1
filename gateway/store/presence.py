"""Who is inside each site. Read and written inside the decision's transaction; a write is a
compare-and-set on the version it read, so two gateway processes deciding on one guest at the
same instant cannot both apply a change: the second gets ``Conflict`` and decides again."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.engine import Row

from ..core.entry import Presence
from .engine import Conflict, insert
from .schema import presence

_READ = select(presence).where(
    presence.c.guest_id == bindparam("guest_id"), presence.c.site == bindparam("site")
)
_UPDATE = (
    update(presence)
    .where(
        presence.c.guest_id == bindparam("key_guest"),
        presence.c.site == bindparam("key_site"),
        presence.c.version == bindparam("read_version"),
    )
    .values(
        inside=bindparam("inside"),
        gate=bindparam("gate"),
        changed_ms=bindparam("changed_ms"),
        version=bindparam("version"),
    )
)


class PresenceTable:
    def __init__(self, dialect: str) -> None:
        # RETURNING, not rowcount: psycopg reports no rowcount for INSERT .. ON CONFLICT.
        self._insert_new = (
            insert(dialect, presence).on_conflict_do_nothing().returning(presence.c.version)
        )

    def read(self, conn: Connection, guest_id: str, site: str) -> Presence | None:
        row = conn.execute(_READ, {"guest_id": guest_id, "site": site}).first()
        return None if row is None else _presence(row)

    def write(self, conn: Connection, read: Presence | None, new: Presence) -> None:
        """Store ``new`` if the row is still as ``read`` left it (None: there was no row)."""
        values = {
            "inside": new.inside,
            "gate": new.gate,
            "changed_ms": new.changed_ms,
            "version": new.version,
        }
        if read is None:
            params = {"guest_id": new.guest_id, "site": new.site, **values}
            written = conn.execute(self._insert_new, params).first() is not None
        else:
            params = {"key_guest": new.guest_id, "key_site": new.site, **values}
            params["read_version"] = read.version
            written = conn.execute(_UPDATE, params).rowcount == 1
        if not written:
            raise Conflict(f"presence of {new.guest_id} at {new.site} changed under us")


def _presence(row: Row[Any]) -> Presence:
    return Presence(row.guest_id, row.site, bool(row.inside), row.gate, row.changed_ms, row.version)
