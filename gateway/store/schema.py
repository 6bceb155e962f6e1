"""Every table of the store, declared once: for queries, and for comparing with the migrations
(the schema itself is built by ``migrations/versions``, frozen copies of what is here)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
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
    false,
    func,
    text,
    true,
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
    # True: an NTAG 424 DNA that proves every tap with SUN. False: a plain-UID band, the
    # weaker mode a venue file must ask for band by band.
    Column("sun", Boolean, nullable=False, server_default=true()),
    # Why and when a desk blocked it (lost, stolen, damaged, replaced), and its replacement.
    Column("blocked_reason", Text, nullable=True),
    Column("blocked_ms", BigInteger, nullable=True),
    Column("replaced_by", LargeBinary, nullable=True),
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
    # A pos reader's outlet: where its sales are booked, and which tills may charge at it.
    Column("outlet", Text, nullable=True),
    # A pos reader's largest sale decided offline, and the most one band spends offline there
    # until its journal is acknowledged (minor units; NULL: no offline sales). In its Config.
    Column("offline_floor", BigInteger, nullable=True),
    Column("offline_cap", BigInteger, nullable=True),
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
    Column("kind", Text, nullable=False),  # guest | band | ticket | reader | site | privilege
    Column("key", Text, nullable=False),  # guest id, band uid in hex, ticket's guest id, reader id
)
CATALOG_TABLES = {
    "guests": "guest",
    "bands": "band",
    "tickets": "ticket",
    "readers": "reader",
    "sites": "site",
    "charging": "privilege",  # what a till's band list says of a guest (migration 0007)
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
    Column("text", Text, nullable=True),
    Column("balance", BigInteger, nullable=True),
    # How the band proved itself ("sun", "plain"), and the SUN reading's counter.
    Column("proof", Text, nullable=True),
    Column("sun_counter", Integer, nullable=True),
    # A tap the reader decided alone (uploaded in a Journal): granted and reason are what the
    # guest saw; gateway_reason what the gateway would have answered at the tap's time; and
    # exception, where the two disagree so the venue must look (the reconciliation report).
    Column("offline", Boolean, nullable=False, server_default=false()),
    Column("gateway_reason", Text, nullable=True),
    Column("exception", Text, nullable=True),
    # A pos tap's charge; and, for an offline sale posted past its account's floor, by how
    # much it took the account below the floor (its overdraft).
    Column("charge_id", LargeBinary(16), nullable=True),
    Column("overdraft", BigInteger, nullable=True),
    Index("ix_taps_received_ms", "received_ms"),
    Index("ix_taps_exception", "exception"),
    Index("ix_taps_uid", "uid"),
)
# The last SUN counter the gateway accepted from each band, where and when: a reading whose
# counter is not above it is a replay. Advanced by compare-and-set (store/bands.py).
band_counters = Table(
    "band_counters",
    metadata,
    Column("uid", LargeBinary, primary_key=True),
    Column("counter", Integer, nullable=False),
    Column("reader_id", Text, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
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
    # The band list the reader holds, as far as the gateways know: what its birth reported,
    # then each list sent to it since (store.claim_list).
    Column("list_version", BigInteger, nullable=True),
)

# -- money: a double-entry ledger (docs/LEDGER.md) ------------------------------------------

# One row per account. ``balance`` is the sum of the account's postings, kept by the statement
# that posts them; ``floor`` is the lowest it may go (0 for a wallet, minus the credit limit for
# a folio, NULL for the venue's own accounts), checked by that statement's WHERE and again here.
# ``overdrawn``: an offline sale (the guest has the goods) was posted past the floor; only such
# a posting raises it, the posting that brings the balance back to the floor clears it.
accounts = Table(
    "accounts",
    metadata,
    Column("id", Text, primary_key=True),
    Column("kind", Text, nullable=False),  # wallet | folio | revenue | refunds | cash
    Column("currency", Text, nullable=False),
    Column("floor", BigInteger, nullable=True),
    Column("balance", BigInteger, nullable=False, server_default="0"),
    Column("overdrawn", Boolean, nullable=False, server_default=false()),
    CheckConstraint("floor IS NULL OR balance >= floor OR overdrawn", name="ck_accounts_floor"),
)
# A party pays for its members from one account (a wallet, or a folio); a guest not in any
# party gets a party of their own at their first top-up.
parties = Table(
    "parties",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("account_id", Text, ForeignKey("accounts.id"), nullable=False),
)
party_members = Table(
    "party_members",
    metadata,
    Column("guest_id", Text, ForeignKey("guests.id"), primary_key=True),
    Column("party_id", Text, ForeignKey("parties.id"), nullable=False, index=True),
)
# One row per movement of money; never updated or deleted (triggers, migration 0004). A
# correction is a new transfer linked to the charge it corrects.
transfers = Table(
    "transfers",
    metadata,
    Column("id", Text, primary_key=True),
    Column("kind", Text, nullable=False),  # topup | charge | refund | cashout
    Column("amount", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("guest_id", Text, nullable=True),
    Column("charge_id", LargeBinary(16), nullable=True),
    Column("reference", Text, nullable=True),
    Column("actor", Text, nullable=False),  # the token id, or reader:<id>
    Column("created_ms", BigInteger, nullable=False),
    CheckConstraint("amount > 0", name="ck_transfers_amount"),
    # One charge is paid at most once, whatever races to pay it.
    Index(
        "uq_transfers_paid_charge",
        "charge_id",
        unique=True,
        sqlite_where=text("kind = 'charge'"),
        postgresql_where=text("kind = 'charge'"),
    ),
)
postings = Table(
    "postings",
    metadata,
    Column("transfer_id", Text, ForeignKey("transfers.id"), primary_key=True),
    Column("account_id", Text, ForeignKey("accounts.id"), primary_key=True),
    Column("amount", BigInteger, nullable=False),  # signed; a transfer's postings sum to zero
    Index("ix_postings_account_id", "account_id"),
)
# A till's request to take money at one pos reader. ``state`` moves once, from pending to
# approved, declined, cancelled or expired, by a compare-and-set on it.
charges = Table(
    "charges",
    metadata,
    Column("id", LargeBinary(16), primary_key=True),  # the Command's and the Tap's `charge`
    Column("reader_id", Text, nullable=False),
    Column("outlet", Text, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("reference", Text, nullable=True),
    Column("label", Text, nullable=False),
    Column("lines", Text, nullable=False),  # JSON: the receipt's lines
    Column("state", Text, nullable=False),
    Column("reason", Text, nullable=True),
    Column("guest_id", Text, nullable=True),
    Column("tap_mid", LargeBinary(16), nullable=True),
    Column("transfer_id", Text, nullable=True),
    Column("refunded", BigInteger, nullable=False, server_default="0"),
    Column("actor", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Column("completed_ms", BigInteger, nullable=True),
    CheckConstraint("amount > 0", name="ck_charges_amount"),
    CheckConstraint("refunded >= 0 AND refunded <= amount", name="ck_charges_refunded"),
    # A reader shows one sale at a time.
    Index(
        "uq_charges_pending_reader",
        "reader_id",
        unique=True,
        sqlite_where=text("state = 'pending'"),
        postgresql_where=text("state = 'pending'"),
    ),
)
# What a guest may spend, and how they prove it is them: no row is the defaults (charging on,
# no daily limit, no PIN asked). The PIN is kept as a slow hash (argon2id, peppered with the
# gateway's secret key); ``failures`` wrong PINs in a row lock charging until a desk unlocks it.
charging = Table(
    "charging",
    metadata,
    Column("guest_id", Text, ForeignKey("guests.id"), primary_key=True),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("daily_limit", BigInteger, nullable=True),
    Column("pin_threshold", BigInteger, nullable=True),
    Column("pin_hash", Text, nullable=True),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("locked", Boolean, nullable=False, server_default=text("false")),
    # The offline PIN check a till's band list carries (SPEC, "Offline PIN check"), and its
    # salt: 2 bytes each, drawn and computed when the PIN is set (the PIN is not kept).
    Column("pin_check", LargeBinary, nullable=True),
    Column("pin_salt", LargeBinary, nullable=True),
)
# What each guest spent per venue day, for their daily limit: raised by a statement that
# refuses to pass the limit.
spending = Table(
    "spending",
    metadata,
    Column("guest_id", Text, ForeignKey("guests.id"), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("spent", BigInteger, nullable=False),
)

# -- the HTTP side ----------------------------------------------------------------------------

# Bearer tokens for tills and staff: only a SHA-256 of the token is kept (it is 32 random
# bytes, so no slow hash is needed to make guessing it hopeless).
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Text, primary_key=True),
    Column("hash", Text, nullable=False, unique=True),
    Column("role", Text, nullable=False),  # till | desk | admin
    Column("outlet", Text, nullable=True),  # a till's
    Column("created_ms", BigInteger, nullable=False),
    Column("revoked_ms", BigInteger, nullable=True),
)
# Every operator action: who (a token or a staff member), what, when, from where, and how it
# ended. Append-only: triggers refuse UPDATE and DELETE, and no endpoint writes it but by acting.
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("actor", Text, nullable=False),  # token:<id> | staff:<name> | cli | guest:<id>
    Column("role", Text, nullable=False),
    Column("action", Text, nullable=False),  # e.g. "POST /v1/bands/{uid}/replace", "login"
    Column("target", Text, nullable=True),
    Column("status", Integer, nullable=False),  # the HTTP status it was answered with
    Column("source", Text, nullable=True),  # the client's address
    Column("detail", Text, nullable=True),  # JSON
    Index("ix_audit_log_at_ms", "at_ms"),
)
# People who log in to the pages and the API with a password (argon2id, peppered).
staff = Table(
    "staff",
    metadata,
    Column("id", Text, primary_key=True),  # the login name
    Column("name", Text, nullable=False),
    Column("role", Text, nullable=False),  # admin | desk | operator | till
    Column("outlet", Text, nullable=True),  # a till's
    Column("password_hash", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("disabled_ms", BigInteger, nullable=True),
)
# Wrong passwords in a row per login name, whether or not anybody has that login (so the
# answers do not tell which names exist), and until when the name is locked.
login_attempts = Table(
    "login_attempts",
    metadata,
    Column("login", Text, primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("locked_until_ms", BigInteger, nullable=True),
)
# Logged-in sessions behind a cookie: a staff member's, or a guest's opened by a band's tap.
# Only a SHA-256 of the cookie is kept.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("digest", Text, primary_key=True),
    Column("kind", Text, nullable=False),  # staff | guest
    Column("subject", Text, nullable=False),  # the staff id or the guest id
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Column("source", Text, nullable=True),
    Column("band", LargeBinary, nullable=True),  # a guest's: the band whose tap opened it
)
# The answer each Idempotency-Key got, stored in the transaction that did the work: a repeat
# gets it back, byte for byte. ``fingerprint`` is a hash of the request it answered.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("principal", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("fingerprint", Text, nullable=False),
    Column("status", Integer, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)
