"""Bands through their life: issued to a guest, blocked, replaced; and each band's last accepted
SUN counter. A reading is good once: it is accepted by one conditional statement, so of two
gateway processes shown one reading, one accepts it and the other sees a replay."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from . import staff
from .engine import insert
from .schema import band_counters, bands, guests

_COUNTER = select(band_counters.c.counter).where(band_counters.c.uid == bindparam("uid"))


BLOCK_REASONS = ("lost", "stolen", "damaged", "replaced")


class BandIssued(ValueError):
    """The band is issued already (to this guest or another)."""


class BandReplaced(ValueError):
    """The band was replaced already."""


@dataclass(frozen=True, slots=True)
class BandInfo:
    uid: bytes
    guest_id: str | None
    sun: bool
    blocked: bool
    blocked_reason: str | None
    blocked_ms: int | None
    replaced_by: bytes | None
    last_counter: int | None


def info(conn: Connection, uid: bytes) -> BandInfo | None:
    query = select(bands, band_counters.c.counter).outerjoin(
        band_counters, band_counters.c.uid == bands.c.uid
    )
    row = conn.execute(query.where(bands.c.uid == uid)).first()
    if row is None:
        return None
    return BandInfo(
        row.uid,
        row.guest_id,
        bool(row.sun),
        bool(row.blocked),
        row.blocked_reason,
        row.blocked_ms,
        row.replaced_by,
        row.counter,
    )


def block(conn: Connection, uid: bytes, *, reason: str, now_ms: int) -> BandInfo:
    """Block a band everywhere (the catalog log carries it to every gateway's view at its
    next decision). A band blocked already keeps its first reason and time."""
    if reason not in BLOCK_REASONS:
        raise ValueError(f"reason must be one of {', '.join(BLOCK_REASONS)}")
    found = info(conn, uid)
    if found is None:
        raise LookupError(f"no band {uid.hex()}")
    if not found.blocked:
        values = {"blocked": True, "blocked_reason": reason, "blocked_ms": now_ms}
        conn.execute(update(bands).where(bands.c.uid == uid).values(values))
    staff.close_sessions_of_band(conn, uid)
    result = info(conn, uid)
    assert result is not None
    return result


def replace_band(
    conn: Connection, old: bytes, new: bytes, *, reason: str, now_ms: int, sun: bool = True
) -> str:
    """Issue ``new`` to the guest of ``old`` and block ``old``, in the caller's transaction; the
    guest's id. Everything a guest has (tickets, presence, party, wallet, limits, PIN, photos)
    is the guest's, not the band's, so it is the new band's from this commit on. The new band
    is a SUN band unless the desk says otherwise: a plain-UID one is chosen, never inherited."""
    found = info(conn, old)
    if found is None or found.guest_id is None:
        raise LookupError(f"no band {old.hex()} issued to a guest")
    if found.replaced_by is not None:
        raise BandReplaced(f"band {old.hex()} was replaced by {found.replaced_by.hex()} already")
    issue(conn, new, found.guest_id, sun=sun)
    block(conn, old, reason=reason, now_ms=now_ms)
    conn.execute(update(bands).where(bands.c.uid == old).values(replaced_by=new))
    return found.guest_id


def issue(conn: Connection, uid: bytes, guest_id: str, *, sun: bool) -> None:
    if conn.scalar(select(guests.c.id).where(guests.c.id == guest_id)) is None:
        raise ValueError(f"no guest {guest_id!r}")
    row = {"uid": uid, "guest_id": guest_id, "blocked": False, "sun": sun}
    added = (
        insert(conn.dialect.name, bands)
        .on_conflict_do_nothing(index_elements=["uid"])
        .returning(bands.c.uid)
    )
    if conn.execute(added, row).first() is None:
        raise BandIssued(f"band {uid.hex()} is issued already")


def last_counter(conn: Connection, uid: bytes) -> int | None:
    value = conn.scalar(_COUNTER, {"uid": uid})
    return None if value is None else int(value)


def accept_reading(
    conn: Connection, uid: bytes, counter: int, *, reader_id: str, at_ms: int
) -> bool:
    """Make ``counter`` the band's last accepted, if it is above the last one: one statement,
    an insert or a conditional update. False: the reading (or a later one) was accepted before,
    in a committed transaction or earlier in this one. On PostgreSQL a transaction accepting the
    same band's reading meanwhile holds the row; this one waits for it and then sees its
    counter, so of two processes shown one reading, one accepts it."""
    values = {"uid": uid, "counter": counter, "reader_id": reader_id, "at_ms": at_ms}
    statement = _ACCEPT.get(conn.dialect.name)
    if statement is None:
        ins = insert(conn.dialect.name, band_counters)
        statement = _ACCEPT[conn.dialect.name] = ins.on_conflict_do_update(
            index_elements=["uid"],
            set_={name: ins.excluded[name] for name in ("counter", "reader_id", "at_ms")},
            where=band_counters.c.counter < ins.excluded.counter,
        ).returning(band_counters.c.uid)
    return conn.execute(statement, values).first() is not None


_ACCEPT: dict[str, Any] = {}  # the statement, per dialect
