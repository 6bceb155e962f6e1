"""Readers' Sparkplug sessions, where every gateway process sees them: a birth seen by one
process and its death seen by another still pair up, and a restarted gateway forgets nothing."""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, func, or_, select, update

from .engine import insert
from .schema import reader_sessions

_DEATH = (
    update(reader_sessions)
    .where(
        reader_sessions.c.reader_id == bindparam("reader"),
        reader_sessions.c.bdseq == bindparam("death_bdseq"),
        reader_sessions.c.online.is_(True),
    )
    .values(online=False, changed_ms=bindparam("now_ms"))
)
_ONLINE = select(func.count()).select_from(reader_sessions).where(reader_sessions.c.online)
_BDSEQ = select(reader_sessions.c.bdseq).where(reader_sessions.c.reader_id == bindparam("reader"))


class Sessions:
    def __init__(self, dialect: str) -> None:
        ins = insert(dialect, reader_sessions)
        table = reader_sessions.c
        # A birth replaces a closed session, or an open one with the same or a lower bdSeq; an
        # older birth (a late copy) while a newer session is open changes nothing.
        replaces = or_(table.online.is_(False), ins.excluded.bdseq >= table.bdseq)
        kept = ("bdseq", "online", "firmware", "list_version")
        changes = {name: ins.excluded[name] for name in kept}
        changes["changed_ms"] = ins.excluded.changed_ms
        self._birth = ins.on_conflict_do_update(
            index_elements=["reader_id"], set_=changes, where=replaces
        ).returning(table.reader_id)

    def birth(
        self,
        conn: Connection,
        reader: str,
        bdseq: int,
        firmware: str | None,
        now_ms: int,
        *,
        list_version: int | None = None,
    ) -> bool:
        """The reader's current session is now ``bdseq``, online, holding band list
        ``list_version``; False (and no change) if a session with a higher bdSeq is open: this
        birth is stale."""
        row = {
            "reader_id": reader,
            "bdseq": bdseq,
            "online": True,
            "firmware": firmware,
            "changed_ms": now_ms,
            "list_version": list_version,
        }
        # RETURNING, not rowcount: psycopg reports no rowcount for INSERT .. ON CONFLICT.
        return conn.execute(self._birth, row).first() is not None

    def death(self, conn: Connection, reader: str, bdseq: int, now_ms: int) -> bool:
        """Mark the reader offline if ``bdseq`` is its current, online session; False for the
        late will of an older session (or a second copy of this death)."""
        params = {"reader": reader, "death_bdseq": bdseq, "now_ms": now_ms}
        return conn.execute(_DEATH, params).rowcount == 1


def online_readers(conn: Connection) -> list[str]:
    query = select(reader_sessions.c.reader_id).where(reader_sessions.c.online)
    return [str(reader) for reader in conn.scalars(query.order_by(reader_sessions.c.reader_id))]


def online_count(conn: Connection) -> int:
    return int(conn.scalar(_ONLINE) or 0)


def current_bdseq(conn: Connection, reader: str) -> int | None:
    value = conn.scalar(_BDSEQ, {"reader": reader})
    return None if value is None else int(value)


def lists_held(conn: Connection) -> list[tuple[str, int | None]]:
    """(reader, the band list it holds) for every reader whose session is open."""
    table = reader_sessions.c
    query = select(table.reader_id, table.list_version).where(table.online)
    return [(str(row.reader_id), row.list_version) for row in conn.execute(query)]


def claim_list(conn: Connection, reader: str, held: int | None, new: int) -> bool:
    """Record that ``reader`` is sent list ``new`` in place of ``held``, if that is still what
    it holds: of two gateway processes seeing the same change, one sends the list."""
    table = reader_sessions.c
    statement = (
        update(reader_sessions)
        .where(table.reader_id == reader, table.online.is_(True))
        .where(table.list_version.is_not_distinct_from(held))
        .values(list_version=new)
    )
    return conn.execute(statement).rowcount == 1
