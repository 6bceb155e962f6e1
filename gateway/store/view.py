"""The catalog in memory: readers, bands, greeting names, tickets and sites, and what the
tills' band lists say of each guest's privilege, read whole at start and kept current from
``catalog_log``.

Theory of operation: every insert, update or delete on the catalog tables appends
(seq, kind, key) to ``catalog_log`` in the same transaction (triggers, migrations 0002, 0003
and 0007; a privilege only when what a list says of it changes), whoever made it: this
gateway, another gateway process, an operator in psql. Each decision transaction first calls
``follow`` inside that transaction, which reads the log past the last number it applied (an
index seek that finds nothing almost always) and re-reads just the keys named. So a band
blocked a moment ago is refused at the next tap, at any gateway, with no timer and no
notification channel; and what a decision reads from memory is what its transaction would read
from the tables. Past ``FULL_RELOAD_AFTER`` changes at once (a venue reloaded), reading
everything again is cheaper than key by key.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import Connection

from ..core.entry import Band, Reader, Site, Ticket
from ..core.payments.records import Privilege
from . import catalog

FULL_RELOAD_AFTER = 1000


class CatalogView:
    """Read by one thread (the decision worker) at a time; ``follow`` runs in its transaction."""

    def __init__(self) -> None:
        self._readers: dict[str, Reader] = {}
        self._bands: dict[bytes, Band] = {}
        self._names: dict[str, str] = {}
        self._tickets: dict[str, list[Ticket]] = {}
        self._sites: dict[str, Site] = {}
        self._privileges: dict[str, Privilege] = {}  # without PIN hashes (catalog.py)
        self.applied = -1  # the newest catalog_log entry reflected here; -1: never loaded
        self.reloads = 0
        self.keys_reread = 0
        self.generation = 0  # bumped whenever the readers may have changed (core/configs.py)

    # -- what decisions read ----------------------------------------------------------------

    def reader(self, reader_id: str) -> Reader | None:
        return self._readers.get(reader_id)

    def readers(self) -> list[Reader]:
        return list(self._readers.values())

    def band(self, uid: bytes) -> Band | None:
        return self._bands.get(uid)

    def bands(self) -> list[Band]:
        return list(self._bands.values())

    def site(self, site_id: str) -> Site | None:
        return self._sites.get(site_id)

    def greeting_name(self, guest_id: str) -> str | None:
        return self._names.get(guest_id)

    def tickets(self, guest_id: str) -> list[Ticket]:
        return self._tickets.get(guest_id, [])

    def privilege(self, guest_id: str) -> Privilege | None:
        """For band lists only (no PIN hash): a payment reads its guest's in its transaction."""
        return self._privileges.get(guest_id)

    # -- keeping up -------------------------------------------------------------------------

    def follow(self, conn: Connection) -> None:
        """Bring the view up to date with what ``conn``'s transaction sees."""
        if self.applied < 0:
            self._reload(conn)
            return
        changes = catalog.log_since(conn, self.applied, FULL_RELOAD_AFTER + 1)
        if len(changes) > FULL_RELOAD_AFTER:
            self._reload(conn)
            return
        for seq, kind, key in changes:
            self._reread(conn, kind, key)
            self.applied = seq
            self.keys_reread += 1

    def _reload(self, conn: Connection) -> None:
        # The head first: a change committed while we read is then re-read, never missed.
        head = catalog.log_head(conn)
        self._readers = {r.id: r for r in catalog.all_readers(conn)}
        self.generation += 1
        self._bands = {b.uid: b for b in catalog.all_bands(conn)}
        self._names = dict(catalog.all_greeting_names(conn))
        self._sites = {s.id: s for s in catalog.all_sites(conn)}
        tickets: defaultdict[str, list[Ticket]] = defaultdict(list)
        for ticket in catalog.all_tickets(conn):
            tickets[ticket.guest_id].append(ticket)
        self._tickets = dict(tickets)
        self._privileges = {p.guest_id: p for p in catalog.all_listed_privileges(conn)}
        self.applied = head
        self.reloads += 1

    def _reread(self, conn: Connection, kind: str, key: str) -> None:
        if kind == "reader":
            _put(self._readers, key, catalog.reader(conn, key))
            self.generation += 1
        elif kind == "band":
            uid = catalog.logged_uid(key)
            _put(self._bands, uid, catalog.band(conn, uid))
        elif kind == "guest":
            _put(self._names, key, catalog.greeting_name(conn, key))
        elif kind == "site":
            _put(self._sites, key, catalog.site(conn, key))
        elif kind == "ticket":
            _put(self._tickets, key, catalog.tickets_of(conn, key) or None)
        elif kind == "privilege":
            _put(self._privileges, key, catalog.listed_privilege(conn, key))


def _put(table: dict, key: object, value: object) -> None:  # type: ignore[type-arg]
    if value is None:
        table.pop(key, None)
    else:
        table[key] = value
