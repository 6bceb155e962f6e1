"""The catalog: guests, bands, tickets and readers. Loaded from a venue file, read whole into
each gateway's memory view, and re-read one key at a time as ``catalog_log`` reports changes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection, bindparam, func, select
from sqlalchemy.engine import Row

from ..core.configs import ROLE_CODES
from ..core.entry import DEFAULT_DEADLINE_MS, DEFAULT_HOLD_MS, Band, Reader, Site, Ticket
from ..core.payments.records import Privilege
from ..venue import parse_closing, parse_zone, resolve_date
from .engine import upsert
from .schema import bands, catalog_log, charging, guests, readers, sites, tickets

_READER = select(readers).where(readers.c.id == bindparam("id"))
_BAND_COLUMNS = (
    bands.c.uid,
    bands.c.guest_id,
    bands.c.blocked,
    bands.c.sun,
    bands.c.blocked_reason,
)
_BAND = select(*_BAND_COLUMNS).where(bands.c.uid == bindparam("uid"))
_GUEST = select(guests.c.id, guests.c.first_name, guests.c.name).where(
    guests.c.id == bindparam("id")
)
_TICKETS = select(tickets).where(tickets.c.guest_id == bindparam("guest_id")).order_by(tickets.c.id)
_SITE = select(sites).where(sites.c.id == bindparam("id"))
# What the view keeps of a guest's privilege, for the tills' lists: all but the PIN's hash
# (decisions read the privilege in their transaction, hash and all: store/ledger.py).
_LISTED_PRIVILEGES = select(*(c for c in charging.c if c.name != "pin_hash"))
_LISTED_PRIVILEGE = _LISTED_PRIVILEGES.where(charging.c.guest_id == bindparam("guest_id"))
_LOG_SINCE = (
    select(catalog_log.c.seq, catalog_log.c.kind, catalog_log.c.key)
    .where(catalog_log.c.seq > bindparam("seq"))
    .order_by(catalog_log.c.seq)
    .limit(bindparam("limit"))
)
_LOG_HEAD = select(func.coalesce(func.max(catalog_log.c.seq), 0))
GATE_NAME_MAX = 24  # a Config's gate (protocol/messages.py)
# A venue file's band_security, and a band's own "security": SUN bands prove every tap;
# plain-UID bands are the weaker mode, chosen explicitly (docs/SECURITY.md).
SUN, PLAIN_UID = "sun", "plain-uid"


def reader(conn: Connection, reader_id: str) -> Reader | None:
    row = conn.execute(_READER, {"id": reader_id}).first()
    return None if row is None else _reader(row)


def band(conn: Connection, uid: bytes) -> Band | None:
    row = conn.execute(_BAND, {"uid": uid}).first()
    return None if row is None else _band(row)


def site(conn: Connection, site_id: str) -> Site | None:
    row = conn.execute(_SITE, {"id": site_id}).first()
    return None if row is None else _site(row)


def all_sites(conn: Connection) -> Iterable[Site]:
    return (_site(row) for row in conn.execute(select(sites)))


def greeting_name(conn: Connection, guest_id: str) -> str | None:
    """The name a reader greets with: the first name, else the full name."""
    row = conn.execute(_GUEST, {"id": guest_id}).first()
    return None if row is None else _greeting(row)


def tickets_of(conn: Connection, guest_id: str) -> list[Ticket]:
    return [_ticket(row) for row in conn.execute(_TICKETS, {"guest_id": guest_id})]


def listed_privilege(conn: Connection, guest_id: str) -> Privilege | None:
    """A guest's privilege as a till's band list needs it (no PIN hash); None: no row, the
    defaults."""
    row = conn.execute(_LISTED_PRIVILEGE, {"guest_id": guest_id}).first()
    return None if row is None else privilege_of(row)


def all_listed_privileges(conn: Connection) -> Iterable[Privilege]:
    return (privilege_of(row) for row in conn.execute(_LISTED_PRIVILEGES))


def privilege_of(row: Row[Any]) -> Privilege:
    """A charging row as a Privilege (one read without ``pin_hash``: with none)."""
    values = row._mapping
    return Privilege(
        values["guest_id"],
        enabled=bool(values["enabled"]),
        daily_limit=values["daily_limit"],
        pin_threshold=values["pin_threshold"],
        pin_hash=values.get("pin_hash"),
        failures=values["failures"],
        locked=bool(values["locked"]),
        pin_check=values["pin_check"],
        pin_salt=values["pin_salt"],
    )


def all_readers(conn: Connection) -> Iterable[Reader]:
    return (_reader(row) for row in conn.execute(select(readers)))


def all_bands(conn: Connection) -> Iterable[Band]:
    return (_band(row) for row in conn.execute(select(*_BAND_COLUMNS)))


def all_greeting_names(conn: Connection) -> Iterable[tuple[str, str]]:
    query = select(guests.c.id, guests.c.first_name, guests.c.name)
    return ((row.id, _greeting(row)) for row in conn.execute(query))


def all_tickets(conn: Connection) -> Iterable[Ticket]:
    return (_ticket(row) for row in conn.execute(select(tickets).order_by(tickets.c.id)))


def log_head(conn: Connection) -> int:
    """The newest change's number (0 when nothing ever changed)."""
    return int(conn.scalar(_LOG_HEAD) or 0)


def log_since(conn: Connection, seq: int, limit: int) -> list[tuple[int, str, str]]:
    """Changes after ``seq``, oldest first, at most ``limit``: (seq, kind, key)."""
    rows = conn.execute(_LOG_SINCE, {"seq": seq, "limit": limit})
    return [(row.seq, row.kind, row.key) for row in rows]


@dataclass(frozen=True, slots=True)
class BandListDelta:
    """How a reader's band list (the bands it may admit alone: issued, not blocked) goes from
    catalog version ``since`` to ``version``: the bands to add and to remove."""

    version: int
    add: list[bytes]
    remove: list[bytes]


_BANDS_CHANGED = (
    select(catalog_log.c.key)
    .where(catalog_log.c.kind == "band", catalog_log.c.seq > bindparam("seq"))
    .order_by(catalog_log.c.seq)
)


def band_list_delta(conn: Connection, since: int) -> BandListDelta:
    """Every band changed after ``since`` (the catalog log says which), as it is now: a block,
    a replacement or a band no longer issued is a removal, a new or unblocked one an addition."""
    version = log_head(conn)
    rows = conn.execute(_BANDS_CHANGED, {"seq": since})
    changed = dict.fromkeys(logged_uid(row.key) for row in rows)  # in order, once each
    add: list[bytes] = []
    remove: list[bytes] = []
    for uid in changed:
        found = band(conn, uid)
        admitted = found is not None and found.guest_id is not None and not found.blocked
        (add if admitted else remove).append(uid)
    return BandListDelta(version, add, remove)


def logged_uid(key: str) -> bytes:
    """A band's UID as the catalog log keeps it: SQLite's hex() and PostgreSQL's bytea as JSON
    ("\\x..") both come back as text."""
    return bytes.fromhex(key.removeprefix("\\x"))


def load_venue(conn: Connection, venue: Mapping[str, Any], *, today: date) -> None:
    """Upsert guests, bands, tickets and readers from a plain dict (see venue.DEMO_VENUE).

    Dates are ISO strings, ``date`` objects, or "today", "today+N", "today-N"."""
    site = venue.get("site")
    security = _band_security(venue.get("band_security", SUN), "the venue's band_security")
    for entry in venue.get("sites", []):
        _upsert_row(conn, sites, _site_row(entry))
    for guest in venue.get("guests", []):
        _load_guest(conn, guest, site=site, today=today, security=security)
    for entry in venue.get("readers", []):
        _upsert_row(conn, readers, _reader_row(entry, site=site))


ROLES = tuple(ROLE_CODES)  # the roles a Config can name
READER_DEFAULTS = {
    "direction": "in",
    "deadline_ms": DEFAULT_DEADLINE_MS,
    "hold_ms": DEFAULT_HOLD_MS,
}


def _reader_row(entry: Mapping[str, Any], *, site: str | None) -> dict[str, Any]:
    """A venue file's reader, checked: what its Config will say must be sayable."""
    row = {k: entry[k] for k in ("id", "role")}
    row["gate"] = entry.get("gate", "")
    row["outlet"] = entry.get("outlet")
    row["site"] = entry.get("site", site)
    row.update({k: entry.get(k) for k in OFFLINE_LIMITS})
    row.update({k: entry.get(k, default) for k, default in READER_DEFAULTS.items()})
    problems = []
    if row["role"] not in ROLES:
        problems.append(f"role must be one of {', '.join(ROLES)}")
    if row["direction"] not in ("in", "out"):
        problems.append("direction must be 'in' or 'out'")
    if not isinstance(row["gate"], str) or len(row["gate"]) > GATE_NAME_MAX:
        problems.append(f"gate must be text of at most {GATE_NAME_MAX} characters")
    for name in ("deadline_ms", "hold_ms"):  # a Config's u32, and never 0 (SPEC, Configuration)
        value = row[name]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 1 << 32:
            problems.append(f"{name} must be a whole number of milliseconds, 1 to 2^32-1")
    if row["role"] == "pos" and not isinstance(row["outlet"], str):
        problems.append("a pos reader names its outlet")
    problems += _offline_limit_problems(row)
    if problems:
        raise ValueError(f"reader {row['id']!r}: " + "; ".join(problems))
    return row


# A pos reader's offline sales (its Config's keys 8 and 9): money, absent for none.
OFFLINE_LIMITS = ("offline_floor", "offline_cap")


def _offline_limit_problems(row: Mapping[str, Any]) -> list[str]:
    given = [name for name in OFFLINE_LIMITS if row[name] is not None]
    if given and row["role"] != "pos":
        return [f"only a pos reader takes {' and '.join(given)}"]
    problems = []
    for name in given:
        value = row[name]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 63:
            problems.append(f"{name} must be a whole number of minor units, 0 or more")
    return problems


def _load_guest(
    conn: Connection, guest: Mapping[str, Any], *, site: str | None, today: date, security: str
) -> None:
    row = {"id": guest["id"], "name": guest["name"], "first_name": guest.get("first_name")}
    _upsert_row(conn, guests, row)
    for band_entry in guest.get("bands", []):
        spec = {"uid": band_entry} if isinstance(band_entry, str) else band_entry
        uid = bytes.fromhex(spec["uid"])
        # A band a desk blocked stays blocked: a venue file reloaded at the next start must not
        # make a lost or stolen band work again (unblocking is a desk's decision).
        blocked = bool(spec.get("blocked", False)) or _blocked_at_desk(conn, uid)
        sun = _band_security(spec.get("security", security), f"band {spec['uid']}") == SUN
        band_row = {"uid": uid, "guest_id": guest["id"], "blocked": blocked, "sun": sun}
        _upsert_row(conn, bands, band_row)
    for ticket in guest.get("tickets", []):
        row = {
            "id": ticket["id"],
            "guest_id": guest["id"],
            "site": ticket.get("site", site),
            "valid_from": resolve_date(ticket["valid_from"], today=today),
            "valid_until": resolve_date(ticket["valid_until"], today=today),
        }
        _upsert_row(conn, tickets, row)


def _blocked_at_desk(conn: Connection, uid: bytes) -> bool:
    query = select(bands.c.uid).where(bands.c.uid == uid, bands.c.blocked_reason.is_not(None))
    return conn.execute(query).first() is not None


def _band_security(value: object, where: str) -> str:
    if value not in (SUN, PLAIN_UID):
        raise ValueError(f"{where} must be {SUN!r} or {PLAIN_UID!r}, not {value!r}")
    return str(value)


def plain_uid_bands(conn: Connection) -> int:
    """How many bands prove nothing (the gateway warns of them when it starts)."""
    return int(conn.scalar(select(func.count()).select_from(bands).where(~bands.c.sun)) or 0)


def _upsert_row(conn: Connection, table: Any, row: dict[str, Any]) -> None:
    conn.execute(upsert(conn.dialect.name, table, list(row), only_changes=True), row)


def _site_row(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A venue file's site, checked: a zone Python knows, a closing time "HH:MM" (either left
    out: NULL, the gateway's setting)."""
    zone = entry.get("timezone")
    closing = entry.get("closing")
    try:
        if zone is not None:
            parse_zone(zone)
        if closing is not None:
            parse_closing(closing)
    except ValueError as err:
        raise ValueError(f"site {entry['id']!r}: {err}") from None
    return {"id": entry["id"], "timezone": zone, "closing": closing}


def _site(row: Row[Any]) -> Site:
    # Checked when loaded from a venue file; a value set by hand in SQL that does not parse
    # falls back to the defaults rather than stopping every decision.
    try:
        zone = parse_zone(row.timezone) if row.timezone else None
    except ValueError:
        zone = None
    try:
        closing = parse_closing(row.closing) if row.closing else None
    except ValueError:
        closing = None
    return Site(row.id, zone, closing)


def _reader(row: Row[Any]) -> Reader:
    return Reader(
        row.id,
        row.site,
        row.role,
        row.gate,
        direction=row.direction,
        config_version=row.config_version,
        deadline_ms=row.deadline_ms,
        hold_ms=row.hold_ms,
        outlet=row.outlet,
        offline_floor=row.offline_floor,
        offline_cap=row.offline_cap,
    )


def _band(row: Any) -> Band:
    return Band(
        row.uid,
        row.guest_id,
        bool(row.blocked),
        sun=bool(row.sun),
        blocked_reason=row.blocked_reason,
    )


def _greeting(row: Any) -> str:
    return str(row.first_name or row.name)


def _ticket(row: Row[Any]) -> Ticket:
    return Ticket(row.id, row.guest_id, row.site, row.valid_from, row.valid_until)
