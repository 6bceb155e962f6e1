"""Bands through their life: issued to a guest; and each band's last accepted SUN counter. A
reading is good once: the counter is advanced by a compare-and-set on the value the decision
read, so of two gateway processes accepting readings of one band at once, one wins and the
other decides again (and sees a replay)."""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, select, update

from ..core.records import Raced
from .engine import insert
from .schema import band_counters, bands, guests

_COUNTER = select(band_counters.c.counter).where(band_counters.c.uid == bindparam("uid"))
_COLUMNS = ("counter", "reader_id", "at_ms")
_ADVANCE = (
    update(band_counters)
    .where(band_counters.c.uid == bindparam("b_uid"))
    .where(band_counters.c.counter == bindparam("b_last"))
    .values({name: bindparam(name) for name in _COLUMNS})
)


class CounterRaced(Raced):
    """Another transaction accepted a reading of this band after this one read its counter."""


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
        raise ValueError(f"band {uid.hex()} is issued already")


def last_counter(conn: Connection, uid: bytes) -> int | None:
    value = conn.scalar(_COUNTER, {"uid": uid})
    return None if value is None else int(value)


def advance_counter(
    conn: Connection, uid: bytes, *, last: int | None, counter: int, reader_id: str, at_ms: int
) -> None:
    """Store ``counter`` as the band's last, if the last is still ``last`` (None: none yet)."""
    values = {"counter": counter, "reader_id": reader_id, "at_ms": at_ms}
    if last is None:
        first = (
            insert(conn.dialect.name, band_counters)
            .on_conflict_do_nothing(index_elements=["uid"])
            .returning(band_counters.c.uid)
        )
        done = conn.execute(first, {"uid": uid, **values}).first() is not None
    else:
        done = conn.execute(_ADVANCE, {"b_uid": uid, "b_last": last, **values}).rowcount == 1
    if not done:
        raise CounterRaced(f"band {uid.hex()}: its counter moved on since it was read")
