"""Every table of the store, declared once: for queries, and for comparing with the migrations
(the schema itself is built by ``migrations/versions``, frozen copies of what is here)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    func,
)

from ..core.entry import DEFAULT_DEADLINE_MS, DEFAULT_HOLD_MS

# Named constraints, so that migrations (and SQLite batch mode) can refer to them later.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# -- the catalog: what a decision reads from memory (store/view.py) ----------------------------

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
    Column("guest_id", Text, ForeignKey("guests.id"), nullable=True, index=True),
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
    # The reader's configuration, published to it retained (its Config): "in" or "out" for a
    # gate; how long a guest waits for an answer, and a light stays on. The version is bumped
    # by a trigger (migration 0003) on every change to the configuration, whoever makes it.
    Column("direction", Text, nullable=False, server_default="in"),
    Column("deadline_ms", Integer, nullable=False, server_default=str(DEFAULT_DEADLINE_MS)),
    Column("hold_ms", Integer, nullable=False, server_default=str(DEFAULT_HOLD_MS)),
    Column("config_version", BigInteger, nullable=False, server_default="1"),
)
# A site's own clock: its IANA time zone (NULL: the gateway's ``timezone`` setting) and the
# local time it closes ("HH:MM"; NULL: the gateway's ``closing`` setting). Tickets count by the
# site's calendar date; presence does not outlive a closing (core/entry.py).
sites = Table(
    "sites",
    metadata,
    Column("id", Text, primary_key=True),
    Column("timezone", Text, nullable=True),
    Column("closing", Text),
)
# One row per change to the catalog tables above, written by triggers (migration 0002), so every
# gateway process's memory view follows changes made by any process, or by hand in SQL.
catalog_log = Table(
    "catalog_log",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("kind", Text, nullable=False),  # guest | band | ticket | reader | site
    Column("key", Text, nullable=False),  # guest id, band uid in hex, ticket's guest id, reader id
)
CATALOG_TABLES = {
    "guests": "guest",
    "bands": "band",
    "tickets": "ticket",
    "readers": "reader",
    "sites": "site",
}

# -- state a decision reads and writes in its transaction -------------------------------------

presence = Table(
    "presence",
    metadata,
    Column("guest_id", Text, ForeignKey("guests.id"), primary_key=True),
    Column("site", Text, primary_key=True),
    Column("inside", Boolean, nullable=False),
    Column("gate", Text, nullable=False),
    Column("changed_ms", BigInteger, nullable=False),
    # Bumped by every change: a write names the version it read (compare-and-set).
    Column("version", BigInteger, nullable=False, server_default="0"),
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
    # gate | pos | photo: with reader, uid and direction, what makes one operation (its mid)
    Column("role", Text, nullable=False, server_default="gate"),
    Index("ix_taps_received_ms", "received_ms"),
    Index("ix_taps_uid", "uid"),
)
# Each reader's current Sparkplug session, shared by every gateway process (a birth and its
# death may reach different processes) and kept across gateway restarts.
reader_sessions = Table(
    "reader_sessions",
    metadata,
    Column("reader_id", Text, primary_key=True),
    Column("bdseq", BigInteger, nullable=False),
    Column("online", Boolean, nullable=False),
    Column("firmware", Text, nullable=True),
    Column("changed_ms", BigInteger, nullable=False),
)
