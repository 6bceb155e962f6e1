"""The store: the only SQL in the gateway (SQLAlchemy 2 Core, Alembic migrations), one module
per concept: ``catalog`` (guests, bands, tickets, readers), ``view`` (the catalog in memory),
``presence``, ``taps``, ``sessions``; ``schema`` declares the tables, ``engine`` the back ends.

``Store.transaction()`` is the unit of work: one decision batch, one transaction, one commit
(one fsync), durable before it returns. It never decides anything itself: the core does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.engine import Engine

from ..core.entry import Band, Presence, Reader, Ticket
from ..core.records import TapRecord
from . import audit, bands, catalog, idempotency, ledger, sessions, staff, taps, tokens
from .audit import AuditEntry
from .bands import BandInfo
from .engine import SQLITE_BEGIN, Conflict, is_retryable, make_engine
from .idempotency import Answer
from .ledger import Books
from .presence import PresenceTable
from .schema import metadata
from .sessions import Sessions
from .staff import StaffMember, WebSession
from .view import CatalogView

__all__ = [
    "Answer",
    "AuditEntry",
    "BandInfo",
    "Books",
    "Conflict",
    "KeyReused",
    "StaffMember",
    "Store",
    "TapRecord",
    "Transaction",
    "WebSession",
    "is_retryable",
    "metadata",
    "retried",
]
T = TypeVar("T")
ATTEMPTS = 5  # a transaction that loses this many races in a row gives up

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Any constant: the advisory lock two PostgreSQL gateways starting at once take to migrate.
_MIGRATION_LOCK = 0x62616E646C696E6B
# Alembic runs a migration through module-level proxies (alembic.context, alembic.op) that each
# run sets and clears: two stores migrating at once in one process, even on two databases,
# clear each other's. One at a time per process, then.
_ALEMBIC = threading.Lock()


class Transaction:
    """What one decision batch may read and write, all inside one database transaction."""

    def __init__(
        self,
        conn: Connection,
        view: CatalogView,
        presence: PresenceTable,
        tap_log: taps.TapLog,
        reader_sessions: Sessions,
    ) -> None:
        self.conn = conn
        self.view = view
        self._presence = presence
        self._taps = tap_log
        self._sessions = reader_sessions
        self._books: Books | None = None

    @property
    def books(self) -> Books:
        """A pos tap's payment, in the same transaction (made for the batches that need it)."""
        if self._books is None:
            self._books = Books(self.conn)
        return self._books

    def presence(self, guest_id: str, site: str) -> Presence | None:
        return self._presence.read(self.conn, guest_id, site)

    def write_presence(self, read: Presence | None, new: Presence) -> None:
        self._presence.write(self.conn, read, new)

    def record_tap(self, tap: TapRecord) -> TapRecord:
        return self._taps.record(self.conn, tap)

    def tap_by_mid(self, mid: bytes) -> TapRecord | None:
        return taps.by_mid(self.conn, mid)

    def last_counter(self, uid: bytes) -> int | None:
        return bands.last_counter(self.conn, uid)

    def accept_reading(self, uid: bytes, counter: int, *, reader_id: str, at_ms: int) -> bool:
        return bands.accept_reading(self.conn, uid, counter, reader_id=reader_id, at_ms=at_ms)

    def reading_shown(self, uid: bytes, counter: int) -> bool:
        return taps.reading_shown(self.conn, uid, counter)

    def birth(
        self,
        reader: str,
        bdseq: int,
        firmware: str | None,
        now_ms: int,
        *,
        list_version: int | None = None,
    ) -> bool:
        return self._sessions.birth(
            self.conn, reader, bdseq, firmware, now_ms, list_version=list_version
        )

    def claim_list(self, reader: str, held: int | None, new: int) -> bool:
        return sessions.claim_list(self.conn, reader, held, new)

    def death(self, reader: str, bdseq: int, now_ms: int) -> bool:
        return self._sessions.death(self.conn, reader, bdseq, now_ms)


def retried(attempt: Callable[[], T], on_retry: Callable[[Exception], object] | None = None) -> T:
    """``attempt()`` (one whole transaction), again from the start each time it loses a race
    (``is_retryable``), up to ATTEMPTS times; ``on_retry`` hears of each lost one."""
    for number in range(1, ATTEMPTS + 1):
        try:
            return attempt()
        except Exception as err:
            if not is_retryable(err) or number == ATTEMPTS:
                raise
            if on_retry is not None:
                on_retry(err)
    raise AssertionError("unreachable")


class KeyReused(Exception):
    """An Idempotency-Key sent again with a different request."""


class Store:
    """Engine, migrations, the unit of work, and reads for tools and tests.

    Thread-safe: a writing thread (the decision worker) keeps its own connection open for the
    next transaction (a pool checkout per call costs more than a small query); reads check one
    out of the pool and give it back. Transactions of one Store take turns (the
    memory view is one); several processes may share one SQLite file or PostgreSQL database.
    """

    def __init__(self, url: str) -> None:
        self._engine: Engine = make_engine(url)
        self.dialect = self._engine.dialect.name
        self.view = CatalogView()
        self._taps = taps.TapLog(self.dialect)
        self._presence = PresenceTable(self.dialect)
        self._sessions = Sessions(self.dialect)
        self._local = threading.local()
        self._conns: list[Connection] = []
        self._conns_lock = threading.Lock()
        self._unit_lock = threading.Lock()

    @property
    def url(self) -> str:
        return self._engine.url.render_as_string(hide_password=True)

    def migrate(self) -> None:
        """Bring the schema to the newest revision (Alembic ``upgrade head``); idempotent, and
        safe when several gateways start at once (they take turns), or several stores in one
        process."""
        config = Config()
        # ConfigParser interpolation: a literal % in the path must be doubled.
        config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
        with _ALEMBIC, self._write() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def close(self) -> None:
        """Close every thread's connection; call when no thread uses the store any more."""
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        self._engine.dispose()

    # -- the unit of work -------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One decision batch: the view brought up to date inside it, committed (durably) when
        the block ends, rolled back if it raises (``is_retryable`` says whether to run again)."""
        with self._unit_lock, self._kept_write() as conn:
            self.view.follow(conn)
            yield Transaction(conn, self.view, self._presence, self._taps, self._sessions)

    def follow_catalog(self) -> None:
        """Bring the view up to date between decisions (an idle gateway, so a changed Config
        goes out): a read, which on SQLite takes no write lock from the other processes."""
        with self._unit_lock, self._read() as conn:
            self.view.follow(conn)

    # -- money: one request, one transaction ------------------------------------------------

    def run(self, work: Callable[[Books], T]) -> T:
        """``work`` in one write transaction, committed when it returns, rolled back if it
        raises; run again from the start when it lost a race (up to ATTEMPTS times)."""

        def once() -> T:
            with self._write() as conn:
                return work(Books(conn))

        return retried(once)

    def read(self, work: Callable[[Books], T]) -> T:
        """``work`` reading the books, in a read transaction: no write lock on SQLite (a till
        waiting for its charge polls; it must not queue behind every decision)."""
        with self._read() as conn:
            return work(Books(conn))

    def once(
        self,
        principal: str,
        key: str,
        fingerprint: str,
        now_ms: int,
        work: Callable[[Books], Answer],
    ) -> Answer:
        """``work`` done once per (principal, key): the first request's answer, stored in its
        transaction, is every repeat's answer. KeyReused if the key came with another request."""

        def attempt(books: Books) -> Answer:
            stored = idempotency.claim(books.conn, principal, key, fingerprint, now_ms)
            if stored is not None:
                if stored.fingerprint != fingerprint:
                    raise KeyReused(key)
                return stored.answer
            answered = work(books)
            idempotency.answer(books.conn, principal, key, answered)
            return answered

        return self.run(attempt)

    def pin_hash(self, guest_id: str) -> str | None:
        """The guest's stored PIN hash (a read)."""
        return self.read(lambda books: books.privilege(guest_id).pin_hash)

    def charges_due(self, now_ms: int) -> bool:
        """Whether some pending charge is past its time (a read: no write lock)."""
        with self._read() as conn:
            return ledger.charges_due(conn, now_ms)

    def add_token(self, token: tokens.Token, digest: str) -> None:
        with self._write() as conn:
            tokens.add(conn, token, digest)

    def token(self, digest: str) -> tokens.Token | None:
        with self._read() as conn:
            return tokens.by_digest(conn, digest)

    def load_venue(self, venue: Mapping[str, Any], *, today: date, currency: str = "EUR") -> None:
        """Upsert a venue's guests, bands, tickets and readers, its parties and their accounts
        (see venue.DEMO_VENUE)."""
        with self._write() as conn:
            catalog.load_venue(conn, venue, today=today)
            books = Books(conn)
            ledger.load_parties(books, venue.get("parties", []), currency)
            for guest in venue.get("guests", []):
                if "charging" in guest:
                    ledger.load_charging(books, guest["id"], guest["charging"])

    # -- reads, for tools and tests (decisions read the view and their transaction) ---------

    def reader(self, reader_id: str) -> Reader | None:
        with self._read() as conn:
            return catalog.reader(conn, reader_id)

    def band(self, uid: bytes) -> Band | None:
        with self._read() as conn:
            return catalog.band(conn, uid)

    def guest_name(self, guest_id: str) -> str | None:
        with self._read() as conn:
            return catalog.greeting_name(conn, guest_id)

    def tickets_for(self, guest_id: str) -> list[Ticket]:
        with self._read() as conn:
            return catalog.tickets_of(conn, guest_id)

    def presence(self, guest_id: str, site: str) -> Presence | None:
        with self._read() as conn:
            return self._presence.read(conn, guest_id, site)

    def tap_by_mid(self, mid: bytes) -> TapRecord | None:
        with self._read() as conn:
            return taps.by_mid(conn, mid)

    def last_counter(self, uid: bytes) -> int | None:
        """The last SUN counter accepted from this band."""
        with self._read() as conn:
            return bands.last_counter(conn, uid)

    def issue_band(
        self, uid: bytes, guest_id: str, *, sun: bool = True, entry: AuditEntry | None = None
    ) -> None:
        """Link a new band to a guest (enrolment), with its audit entry in the same
        transaction. ValueError if the guest is unknown or the band is already issued."""
        with self._write() as conn:
            bands.issue(conn, uid, guest_id, sun=sun)
            if entry is not None:
                audit.record(conn, entry)

    # -- bands at the desk, each action in one transaction with its audit entry -------------

    def band_info(self, uid: bytes) -> BandInfo | None:
        with self._read() as conn:
            return bands.info(conn, uid)

    def band_taps(self, uid: bytes, limit: int = 20) -> list[TapRecord]:
        """The band's newest taps first: where and when it was seen, and what it was told."""
        with self._read() as conn:
            return taps.of_band(conn, uid, limit)

    def block_band(self, uid: bytes, *, reason: str, now_ms: int) -> BandInfo:
        with self._write() as conn:
            return bands.block(conn, uid, reason=reason, now_ms=now_ms)

    def replace_band(
        self, old: bytes, new: bytes, *, reason: str, now_ms: int, sun: bool = True
    ) -> str:
        """Block ``old`` and issue ``new`` to its guest, carrying everything over; the guest."""
        with self._write() as conn:
            return bands.replace_band(conn, old, new, reason=reason, now_ms=now_ms, sun=sun)

    # -- people: staff, sessions, the audit log ---------------------------------------------

    def audit(self, entry: AuditEntry) -> None:
        with self._write() as conn:
            audit.record(conn, entry)

    def audit_since(self, seq: int = 0, limit: int = 100) -> list[AuditEntry]:
        with self._read() as conn:
            return audit.since(conn, seq, limit)

    def add_staff(self, member: StaffMember, now_ms: int, entry: AuditEntry) -> None:
        """A new staff member, and the audit entry saying who added them (the command line)."""
        with self._write() as conn:
            staff.add(conn, member, now_ms)
            audit.record(conn, entry)

    def staff_member(self, staff_id: str) -> StaffMember | None:
        with self._read() as conn:
            return staff.member(conn, staff_id)

    def claim_login(self, login: str, now_ms: int) -> int | None:
        """One more attempt at ``login``: its count in a row, or None while it is locked."""
        with self._write() as conn:
            return staff.claim_login(conn, login, now_ms)

    def end_login(self, login: str, *, ok: bool, lock_until_ms: int | None) -> None:
        """After the password check: a success clears the count; a failure that used the last
        attempt locks the login until ``lock_until_ms``."""
        with self._write() as conn:
            if ok:
                staff.clear_login(conn, login)
            elif lock_until_ms is not None:
                staff.lock_login(conn, login, lock_until_ms)

    def login_locked_until(self, login: str) -> int | None:
        with self._read() as conn:
            return staff.login_locked_until(conn, login)

    def open_session(self, digest: str, session: WebSession, *, source: str | None) -> None:
        with self._write() as conn:
            staff.open_session(conn, digest, session, source)

    def guest_login(
        self, uid: bytes, counter: int, digest: str, session: WebSession, *, source: str | None
    ) -> bool:
        """Open a guest's session for one SUN reading of their band, if that reading was never
        used (by a tap or another login) and the band is not blocked: the counter advances in
        the same transaction. A block of the band ends the sessions it opened."""

        with self._write() as conn:
            band = bands.info(conn, uid)
            if band is None or band.blocked or band.guest_id != session.subject:
                return False  # blocked (or moved) since the caller looked
            at_ms = session.created_ms
            if not bands.accept_reading(conn, uid, counter, reader_id="phone", at_ms=at_ms):
                return False
            staff.open_session(conn, digest, session, source, band=uid)
            return True

    def web_session(self, digest: str, now_ms: int) -> WebSession | None:
        with self._read() as conn:
            return staff.session(conn, digest, now_ms)

    def close_session(self, digest: str) -> None:
        with self._write() as conn:
            staff.close_session(conn, digest)

    def band_list_delta(self, since: int) -> catalog.BandListDelta:
        """What offline readers' band lists must change since catalog version ``since``."""
        with self._read() as conn:
            return catalog.band_list_delta(conn, since)

    def plain_uid_bands(self) -> int:
        with self._read() as conn:
            return catalog.plain_uid_bands(conn)

    def count_taps(self) -> int:
        with self._read() as conn:
            return taps.count(conn)

    def recent_taps(self, limit: int = 50) -> list[TapRecord]:
        """The newest taps first."""
        with self._read() as conn:
            return taps.recent(conn, limit)

    def offline_taps(
        self,
        *,
        since_ms: int = 0,
        until_ms: int = (1 << 63) - 1,
        reader: str | None = None,
        exceptions_only: bool = False,
    ) -> list[TapRecord]:
        """What readers decided alone, by when it happened (the reconciliation report)."""
        with self._read() as conn:
            return taps.offline(
                conn,
                since_ms=since_ms,
                until_ms=until_ms,
                reader=reader,
                exceptions_only=exceptions_only,
            )

    def readers_online(self) -> int:
        with self._read() as conn:
            return sessions.online_count(conn)

    def lists_held(self) -> list[tuple[str, int | None]]:
        """(reader, the band list it holds) for each reader whose session is open."""
        with self._read() as conn:
            return sessions.lists_held(conn)

    def open_sessions(self) -> list[str]:
        """The readers whose current session is open (on any gateway process)."""
        with self._read() as conn:
            return sessions.online_readers(conn)

    def session_of(self, reader_id: str) -> int | None:
        """The bdSeq of the reader's current session, if it ever had one."""
        with self._read() as conn:
            return sessions.current_bdseq(conn, reader_id)

    # -- connections ------------------------------------------------------------------------

    def _conn(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._engine.connect()
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction: on SQLite it takes the write lock at BEGIN, so what it reads
        cannot change before it commits. On a pooled connection, given back after: requests
        come from the HTTP server's many threads, and a connection kept per thread would drain
        the pool."""
        with self._engine.connect() as pooled:
            conn = pooled.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
            with conn.begin():
                yield conn

    @contextmanager
    def _kept_write(self) -> Iterator[Connection]:
        """A write transaction on this thread's own connection, kept open: the decision
        worker's, one thread, a transaction per batch."""
        conn = self._conn().execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
        with conn.begin():
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        # From the pool and back: reads come from short-lived threads too (each metrics scrape
        # is one), which would otherwise each keep a connection until the pool ran dry. In a
        # transaction, ended at once: an open one would pin a WAL snapshot.
        with self._engine.connect() as conn, conn.begin():
            yield conn
