"""The tap log: one row per ``mid``, the decision it got. The primary key, not a look-up first,
decides that one mid takes effect once, across threads and processes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, func, select
from sqlalchemy.engine import Row

from ..core.records import TapRecord
from .engine import insert
from .schema import taps

_TAP = select(taps).where(taps.c.mid == bindparam("mid"))
_COUNT = select(func.count()).select_from(taps)


class TapLog:
    def __init__(self, dialect: str) -> None:
        # RETURNING, not rowcount: psycopg reports no rowcount for INSERT .. ON CONFLICT.
        self._insert = (
            insert(dialect, taps)
            .on_conflict_do_nothing(index_elements=["mid"])
            .returning(taps.c.mid)
        )

    def record(self, conn: Connection, tap: TapRecord) -> TapRecord:
        """Insert ``tap``; if its mid is taken, the record stored first (a duplicate gets the
        answer it got then). The caller applies the tap's effects only if ``tap`` came back."""
        if conn.execute(self._insert, _values(tap)).first() is not None:
            return tap
        # Taken by a committed transaction (SQLite: we hold the write lock; PostgreSQL: the
        # insert waited for the other inserter), or earlier in this one: readable either way.
        return _record(conn.execute(_TAP, {"mid": tap.mid}).one())


def by_mid(conn: Connection, mid: bytes) -> TapRecord | None:
    row = conn.execute(_TAP, {"mid": mid}).first()
    return None if row is None else _record(row)


def of_band(conn: Connection, uid: bytes, limit: int) -> list[TapRecord]:
    query = select(taps).where(taps.c.uid == uid).order_by(taps.c.received_ms.desc())
    return [_record(row) for row in conn.execute(query.limit(limit))]


_READING_SHOWN = (
    select(taps.c.mid)
    .where(taps.c.uid == bindparam("uid"), taps.c.sun_counter == bindparam("counter"))
    .where(taps.c.proof == "sun")
    .limit(1)
)


def reading_shown(conn: Connection, uid: bytes, counter: int) -> bool:
    """Whether a recorded tap of this band showed the SUN reading with this counter: an offline
    tap's reading may be older than the band's last accepted one (taps reach the gateway out of
    order), so it is a replay only if that very reading was recorded before."""
    return conn.execute(_READING_SHOWN, {"uid": uid, "counter": counter}).first() is not None


def offline(
    conn: Connection, *, since_ms: int, until_ms: int, reader: str | None, exceptions_only: bool
) -> list[TapRecord]:
    """Taps readers decided alone that happened (by the reader's clock) in [since, until),
    oldest first; only the exceptions if asked."""
    query = select(taps).where(
        taps.c.offline.is_(True),
        taps.c.reader_ts_ms >= since_ms,
        taps.c.reader_ts_ms < until_ms,
    )
    if reader is not None:
        query = query.where(taps.c.reader_id == reader)
    if exceptions_only:
        query = query.where(taps.c.exception.is_not(None))
    return [_record(row) for row in conn.execute(query.order_by(taps.c.reader_ts_ms, taps.c.mid))]


def count(conn: Connection) -> int:
    return int(conn.scalar(_COUNT) or 0)


def recent(conn: Connection, limit: int) -> list[TapRecord]:
    """The newest taps first."""
    query = select(taps).order_by(taps.c.received_ms.desc()).limit(limit)
    return [_record(row) for row in conn.execute(query)]


def _values(tap: TapRecord) -> dict[str, Any]:
    # Explicit rather than dataclasses.asdict, which deep-copies: this is the hot path.
    return {
        "mid": tap.mid,
        "reader_id": tap.reader_id,
        "uid": tap.uid,
        "direction": tap.direction,
        "reader_ts_ms": tap.reader_ts_ms,
        "received_ms": tap.received_ms,
        "granted": tap.granted,
        "reason": tap.reason,
        "guest_id": tap.guest_id,
        "seq": tap.seq,
        "role": tap.role,
        "text": tap.text,
        "balance": tap.balance,
        "proof": tap.proof,
        "sun_counter": tap.sun_counter,
        "offline": tap.offline,
        "gateway_reason": tap.gateway_reason,
        "exception": tap.exception,
        "charge_id": tap.charge_id,
        "overdraft": tap.overdraft,
    }


def _record(row: Row[Any]) -> TapRecord:
    return TapRecord(
        mid=row.mid,
        reader_id=row.reader_id,
        uid=row.uid,
        direction=row.direction,
        reader_ts_ms=row.reader_ts_ms,
        received_ms=row.received_ms,
        granted=bool(row.granted),
        reason=row.reason,
        guest_id=row.guest_id,
        seq=row.seq,
        role=row.role,
        text=row.text,
        balance=row.balance,
        proof=row.proof,
        sun_counter=row.sun_counter,
        offline=bool(row.offline),
        gateway_reason=row.gateway_reason,
        exception=row.exception,
        charge_id=row.charge_id,
        overdraft=row.overdraft,
    )
