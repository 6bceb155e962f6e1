"""The store: the only module with SQL (SQLAlchemy 2 Core, Alembic migrations).

It reads and writes; it does not decide (``entry.decide_entry`` does). Tables are declared here
once, for queries and for comparing against the migrations; the schema itself is created by
``migrations/versions``. Constructs stay portable (SQLite now, PostgreSQL later): the only
dialect-specific SQL is INSERT .. ON CONFLICT, chosen by ``_insert``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    bindparam,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, Row

from .entry import Band, Presence, Reader, Ticket
from .venue import resolve_date

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Named constraints, so that migrations (and SQLite batch mode) can refer to them later.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

guests = Table(
    "guests",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("first_name", Text, nullable=True),
)
bands = Table(
    "bands",
    metadata,
    Column("uid", LargeBinary, primary_key=True),
    Column("guest_id", Text, ForeignKey("guests.id"), nullable=True),
    Column("blocked", Boolean, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
tickets = Table(
    "tickets",
    metadata,
    Column("id", Text, primary_key=True),
    Column("guest_id", Text, ForeignKey("guests.id"), nullable=False, index=True),
    Column("site", Text, nullable=False),
    Column("valid_from", Date, nullable=False),
    Column("valid_until", Date, nullable=False),
)
readers = Table(
    "readers",
    metadata,
    Column("id", Text, primary_key=True),
    Column("site", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("gate", Text, nullable=False),
)
presence = Table(
    "presence",
    metadata,
    Column("guest_id", Text, ForeignKey("guests.id"), primary_key=True),
    Column("site", Text, primary_key=True),
    Column("inside", Boolean, nullable=False),
    Column("gate", Text, nullable=False),
    Column("changed_ms", BigInteger, nullable=False),
)
# No foreign keys on taps: it is the log of what readers sent, and a tap from a reader or band
# nobody registered must still be recorded (and answered the same way if it is repeated).
taps = Table(
    "taps",
    metadata,
    Column("mid", LargeBinary(16), primary_key=True),
    Column("reader_id", Text, nullable=False),
    Column("uid", LargeBinary, nullable=False),
    Column("direction", Text, nullable=False),
    Column("reader_ts_ms", BigInteger, nullable=False),
    Column("received_ms", BigInteger, nullable=False),
    Column("granted", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("guest_id", Text, nullable=True),
    Column("seq", Integer, nullable=False),
    Index("ix_taps_received_ms", "received_ms"),
    Index("ix_taps_uid", "uid"),
)


@dataclass(frozen=True, slots=True)
class TapRecord:
    """One row of ``taps``: a tap as received and the answer given. ``mid`` is the key."""

    mid: bytes
    reader_id: str
    uid: bytes
    direction: str
    reader_ts_ms: int
    received_ms: int
    granted: bool
    reason: str
    guest_id: str | None
    seq: int

    def __post_init__(self) -> None:
        if len(self.mid) != 16:
            raise ValueError(f"mid must be 16 bytes, not {len(self.mid)}")


# Queries built once: executing one then costs a compiled-cache lookup, not a rebuild.
_READER = select(readers).where(readers.c.id == bindparam("id"))
_BAND = (
    select(
        bands.c.uid,
        bands.c.guest_id,
        bands.c.blocked,
        func.coalesce(guests.c.first_name, guests.c.name).label("guest_name"),
    )
    .select_from(bands.outerjoin(guests, bands.c.guest_id == guests.c.id))
    .where(bands.c.uid == bindparam("uid"))
)
_TICKETS = select(tickets).where(tickets.c.guest_id == bindparam("guest_id")).order_by(tickets.c.id)
_PRESENCE = select(presence).where(
    presence.c.guest_id == bindparam("guest_id"), presence.c.site == bindparam("site")
)
_GUEST_NAME = select(guests.c.first_name, guests.c.name).where(guests.c.id == bindparam("id"))
_TAP = select(taps).where(taps.c.mid == bindparam("mid"))
_COUNT_TAPS = select(func.count()).select_from(taps)


class Store:
    """Engine, migrations, reads and writes.

    Thread-safe: each thread gets its own connection, kept open for the next call (a pool
    checkout per call costs more than a small query). Several processes may share one SQLite
    file or PostgreSQL database; ``record_tap`` stays exactly-once per mid across them.
    """

    def __init__(self, url: str) -> None:
        self._engine: Engine = create_engine(url)
        dialect = self._engine.dialect.name
        if dialect == "sqlite":
            _configure_sqlite(self._engine)
        self._insert_tap = _insert(dialect, taps).on_conflict_do_nothing(index_elements=["mid"])
        self._upsert_presence = _upsert(dialect, presence, list(presence.c.keys()))
        self._local = threading.local()
        self._conns: list[Connection] = []
        self._conns_lock = threading.Lock()

    def migrate(self) -> None:
        """Bring the schema to the newest revision (Alembic ``upgrade head``); idempotent."""
        config = Config()
        # ConfigParser interpolation: a literal % in the path must be doubled.
        config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
        with self._engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def close(self) -> None:
        """Close every thread's connection; call when no thread uses the store any more."""
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        self._engine.dispose()

    # -- reads ------------------------------------------------------------------------------

    def reader(self, reader_id: str) -> Reader | None:
        row = self._first(_READER, id=reader_id)
        return None if row is None else Reader(row.id, row.site, row.role, row.gate)

    def band(self, uid: bytes) -> Band | None:
        row = self._first(_BAND, uid=uid)
        return (
            None if row is None else Band(row.uid, row.guest_id, bool(row.blocked), row.guest_name)
        )

    def tickets_for(self, guest_id: str) -> list[Ticket]:
        with self._tx() as conn:
            return [_ticket(row) for row in conn.execute(_TICKETS, {"guest_id": guest_id})]

    def presence(self, guest_id: str, site: str) -> Presence | None:
        row = self._first(_PRESENCE, guest_id=guest_id, site=site)
        return None if row is None else _presence(row)

    def guest_name(self, guest_id: str) -> str | None:
        """The name a reader greets with: the first name, else the full name."""
        row = self._first(_GUEST_NAME, id=guest_id)
        return None if row is None else (row.first_name or row.name)

    def tap_by_mid(self, mid: bytes) -> TapRecord | None:
        row = self._first(_TAP, mid=mid)
        return None if row is None else _tap(row)

    def count_taps(self) -> int:
        with self._tx() as conn:
            return int(conn.scalar(_COUNT_TAPS) or 0)

    def recent_taps(self, limit: int = 50) -> list[TapRecord]:
        """The newest taps first."""
        query = select(taps).order_by(taps.c.received_ms.desc()).limit(limit)
        with self._tx() as conn:
            return [_tap(row) for row in conn.execute(query)]

    # -- writes -----------------------------------------------------------------------------

    def record_tap(self, tap: TapRecord, presence: Presence | None) -> TapRecord:
        """Record a tap and its presence change in one transaction, once per ``mid``.

        Returns ``tap`` if it was recorded now, else the record stored earlier under its mid
        (the caller answers a duplicate with it). The primary key decides who wins a race (no
        read-then-write), so one mid's presence change is applied once, even across processes.
        """
        with self._tx() as conn:
            if conn.execute(self._insert_tap, _tap_values(tap)).rowcount == 1:
                if presence is not None:
                    conn.execute(self._upsert_presence, _presence_values(presence))
                return tap
            # The insert did nothing: the mid is taken, by a committed transaction (SQLite
            # held the write lock; PostgreSQL waited for the other inserter), so it is readable.
            return _tap(conn.execute(_TAP, {"mid": tap.mid}).one())

    def load_venue(self, venue: Mapping[str, Any], *, today: date) -> None:
        """Upsert guests, bands, tickets and readers from a plain dict (see venue.DEMO_VENUE).

        Dates are ISO strings, ``date`` objects, or "today", "today+N", "today-N"."""
        site = venue.get("site")
        with self._tx() as conn:
            for guest in venue.get("guests", []):
                _load_guest(conn, guest, site=site, today=today)
            for reader in venue.get("readers", []):
                row = {k: reader[k] for k in ("id", "role", "gate")}
                row["site"] = reader.get("site", site)
                _upsert_row(conn, readers, row)

    # -- helpers ----------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """A transaction on this thread's own connection, committed unless it raises."""
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._engine.connect()
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        with conn.begin():
            yield conn

    def _first(self, query: Any, **params: Any) -> Row[Any] | None:
        # Reads run in a transaction too, ended at once: an open one would pin a WAL snapshot.
        with self._tx() as conn:
            return conn.execute(query, params).first()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take BEGIN away from the sqlite3 module, whose legacy mode would not begin before a
        # SELECT or DDL (no repeatable reads, no transactional migrations): see _on_begin.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        # WAL: readers never block the writer. NORMAL: no fsync per commit (~3x the rate of
        # FULL); a gateway crash loses nothing, a power cut may lose the last commits but never
        # corrupts. busy_timeout: wait for another writer (thread or process) rather than fail
        # at once with "database is locked".
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")


def _insert(dialect: str, table: Table) -> Any:
    """An INSERT that supports ON CONFLICT, in the given dialect."""
    if dialect == "sqlite":
        return sqlite.insert(table)
    if dialect == "postgresql":
        return postgresql.insert(table)
    raise NotImplementedError(f"no INSERT .. ON CONFLICT for dialect {dialect!r}")


def _upsert(dialect: str, table: Table, columns: Sequence[str]) -> Any:
    """INSERT the given columns, or UPDATE those outside the primary key if the row exists."""
    ins = _insert(dialect, table)
    key = [c.name for c in table.primary_key]
    changes = {name: ins.excluded[name] for name in columns if name not in key}
    return ins.on_conflict_do_update(index_elements=key, set_=changes)


def _upsert_row(conn: Connection, table: Table, row: dict[str, Any]) -> None:
    conn.execute(_upsert(conn.dialect.name, table, list(row)), row)


def _load_guest(
    conn: Connection, guest: Mapping[str, Any], *, site: str | None, today: date
) -> None:
    row = {"id": guest["id"], "name": guest["name"], "first_name": guest.get("first_name")}
    _upsert_row(conn, guests, row)
    for band in guest.get("bands", []):
        spec = {"uid": band} if isinstance(band, str) else band
        uid = bytes.fromhex(spec["uid"])
        blocked = bool(spec.get("blocked", False))
        _upsert_row(conn, bands, {"uid": uid, "guest_id": guest["id"], "blocked": blocked})
    for ticket in guest.get("tickets", []):
        row = {
            "id": ticket["id"],
            "guest_id": guest["id"],
            "site": ticket.get("site", site),
            "valid_from": resolve_date(ticket["valid_from"], today=today),
            "valid_until": resolve_date(ticket["valid_until"], today=today),
        }
        _upsert_row(conn, tickets, row)


def _tap_values(tap: TapRecord) -> dict[str, Any]:
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
    }


def _presence_values(p: Presence) -> dict[str, Any]:
    return {
        "guest_id": p.guest_id,
        "site": p.site,
        "inside": p.inside,
        "gate": p.gate,
        "changed_ms": p.changed_ms,
    }


def _tap(row: Row[Any]) -> TapRecord:
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
    )


def _ticket(row: Row[Any]) -> Ticket:
    return Ticket(row.id, row.guest_id, row.site, row.valid_from, row.valid_until)


def _presence(row: Row[Any]) -> Presence:
    return Presence(row.guest_id, row.site, bool(row.inside), row.gate, row.changed_ms)
