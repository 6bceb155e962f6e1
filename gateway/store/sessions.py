"""Readers' Sparkplug sessions, where every gateway process sees them: a birth seen by one
process and its death seen by another still pair up, and a restarted gateway forgets nothing."""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, func, select, update

from .engine import upsert
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
        columns = ["reader_id", "bdseq", "online", "firmware", "changed_ms"]
        self._birth = upsert(dialect, reader_sessions, columns)

    def birth(
        self, conn: Connection, reader: str, bdseq: int, firmware: str | None, now_ms: int
    ) -> None:
        """The reader's current session is now ``bdseq``, online."""
        row = {
            "reader_id": reader,
            "bdseq": bdseq,
            "online": True,
            "firmware": firmware,
            "changed_ms": now_ms,
        }
        conn.execute(self._birth, row)

    def death(self, conn: Connection, reader: str, bdseq: int, now_ms: int) -> bool:
        """Mark the reader offline if ``bdseq`` is its current, online session; False for the
        late will of an older session (or a second copy of this death)."""
        params = {"reader": reader, "death_bdseq": bdseq, "now_ms": now_ms}
        return conn.execute(_DEATH, params).rowcount == 1


def online_count(conn: Connection) -> int:
    return int(conn.scalar(_ONLINE) or 0)


def current_bdseq(conn: Connection, reader: str) -> int | None:
    value = conn.scalar(_BDSEQ, {"reader": reader})
    return None if value is None else int(value)
