"""Band lists: what a reader may decide from alone when no gateway answers (SPEC, "The band
list"). Pure: made from the catalog in memory, no I/O.

Theory of operation
-------------------

A gate's list holds one entry for every band it may let in today: issued to a guest, not
blocked, and the guest has a ticket valid at the gate's site on the site's day. A band not on
the list is refused offline, so a band blocked at the desk is off the list with the next delta.

A till's list (a pos reader with an offline floor and cap: without them it takes no offline
sale) holds every band issued to a guest, not blocked, whose charging is on and not locked,
with flag PAY; and flag PIN with the guest's offline PIN check and salt when the guest's PIN
threshold is below the till's floor (an offline sale could pass it). A guest who needs a PIN
and has no check a till could compare with (none set, or set before checks were kept) is not
listed. The privileges come from the catalog view too (the store logs every change of what a
list says of a guest, kind "privilege"), so a till's list follows a PIN set, a lock, charging
switched off, as a gate's follows a block; all tills with one floor share one list.

A list's version is a digest of its entries: two gateway processes make the same version of the
same list without agreeing on a counter, and a list that did not change keeps its version
whatever else changed in the catalog. A reader reports the version it holds in its Birth; the
gateway answers with a delta from that version if it still knows the list it names (the last
few it made), else with a snapshot. When the catalog or the day changes, every reader with an
open session gets a delta; the store's compare-and-set on the version it holds makes one
gateway process send it (store.claim_list).

Entries go out sorted, in chunks of at most LIST_CHUNK_MAX bands: a delta's entries first (adds
and replacements), then its removals, each sorted across the chunks, so a reader merges them
into its file in one pass.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from bandlink.protocol import lists as wire_list
from bandlink.protocol.messages import LIST_CHUNK_MAX

from .entry import Band, Reader, Ticket
from .payments.records import Privilege


class Catalog(Protocol):
    applied: int

    def bands(self) -> list[Band]: ...
    def tickets(self, guest_id: str) -> list[Ticket]: ...
    def privilege(self, guest_id: str) -> Privilege | None: ...


KEEP = 4  # lists remembered per process, to answer a reader's old version with a delta


@dataclass(frozen=True, slots=True)
class BandList:
    version: int
    entries: dict[bytes, bytes]  # by key (protocol.lists.key), in key order


@dataclass(frozen=True, slots=True)
class Chunk:
    """One LIST_SNAPSHOT or LIST_DELTA command's list fields."""

    chunk: int
    chunks: int
    entries: bytes
    remove: list[bytes]


def gate_list(
    bands: Iterable[Band], tickets_of: Callable[[str], list[Ticket]], *, site: str, day: date
) -> BandList:
    """The list of a gate at ``site`` on ``day``. ``tickets_of(guest_id)`` gives a guest's
    tickets (the catalog view's)."""
    entries: dict[bytes, bytes] = {}
    for band in bands:
        if band.guest_id is None or band.blocked:
            continue
        if any(t.valid_at(site=site, today=day) for t in tickets_of(band.guest_id)):
            entries[wire_list.key(band.uid)] = wire_list.entry(band.uid, wire_list.ENTRY)
    ordered = dict(sorted(entries.items()))
    return BandList(version_of(ordered.values()), ordered)


def till_list(
    bands: Iterable[Band],
    privilege_of: Callable[[str], Privilege | None],
    *,
    offline_floor: int,
) -> BandList:
    """The list of a till whose largest offline sale is ``offline_floor``. ``privilege_of``
    gives a guest's privilege (None: the defaults, charging on and no PIN asked)."""
    entries: dict[bytes, bytes] = {}
    for band in bands:
        if band.guest_id is None or band.blocked:
            continue
        made = till_entry(band.uid, privilege_of(band.guest_id), offline_floor)
        if made is not None:
            entries[wire_list.key(band.uid)] = made
    ordered = dict(sorted(entries.items()))
    return BandList(version_of(ordered.values()), ordered)


def till_entry(uid: bytes, privilege: Privilege | None, offline_floor: int) -> bytes | None:
    """A band's entry on a till's list, or None when the till must not sell to it offline."""
    if privilege is None:
        return wire_list.entry(uid, wire_list.PAY)
    if privilege.locked or not privilege.enabled:
        return None
    threshold = privilege.pin_threshold
    if threshold is None or threshold >= offline_floor:
        return wire_list.entry(uid, wire_list.PAY)  # no offline sale passes the threshold
    if privilege.pin_check is None or privilege.pin_salt is None:
        return None  # a sale could need a PIN the till cannot check
    flags = wire_list.PAY | wire_list.PIN
    return wire_list.entry(uid, flags, privilege.pin_check, privilege.pin_salt)


def version_of(entries: Iterable[bytes]) -> int:
    """A list's version: the first 4 bytes of a digest of its entries (never 0, "no list")."""
    digest = hashlib.sha256()
    for entry in entries:
        digest.update(entry)
    return int.from_bytes(digest.digest()[:4], "big") or 1


def snapshot(current: BandList) -> list[Chunk]:
    entries = list(current.entries.values())
    groups = [entries[i : i + LIST_CHUNK_MAX] for i in range(0, len(entries), LIST_CHUNK_MAX)]
    groups = groups or [[]]  # an empty list is one chunk with no entries
    return [Chunk(n, len(groups), b"".join(group), []) for n, group in enumerate(groups)]


def delta(old: BandList, new: BandList) -> list[Chunk]:
    """The chunks that take a reader from ``old`` to ``new``."""
    changed = [e for k, e in new.entries.items() if old.entries.get(k) != e]
    gone = [wire_list.entry_uid(e) for k, e in old.entries.items() if k not in new.entries]
    bands: list[tuple[bytes | None, bytes | None]] = [(e, None) for e in changed]
    bands += [(None, uid) for uid in gone]
    groups = [bands[i : i + LIST_CHUNK_MAX] for i in range(0, len(bands), LIST_CHUNK_MAX)]
    groups = groups or [[]]
    return [
        Chunk(
            n,
            len(groups),
            b"".join(e for e, _ in group if e is not None),
            [uid for _, uid in group if uid is not None],
        )
        for n, group in enumerate(groups)
    ]


def takes_a_list(reader: Reader) -> bool:
    """Whether ``reader`` decides from a band list offline: a gate, and a till that may take
    offline sales (a photo point needs none)."""
    if reader.role == "pos":
        return reader.offline_floor is not None and reader.offline_cap is not None
    return reader.role == "gate"


class ListKeeper:
    """The lists this process made lately, by version, and the current one per (site, day) for
    gates and per floor for tills, made again only when the catalog changed."""

    def __init__(self, keep: int = KEEP) -> None:
        self._keep = keep
        self._made: OrderedDict[int, BandList] = OrderedDict()
        self._current: dict[tuple[str, object], tuple[int, BandList]] = {}

    def current(self, reader: Reader, day: date, view: Catalog) -> BandList:
        """The list ``reader`` (one that ``takes_a_list``) should hold on ``day``, made again
        only when the catalog moved on (its position, ``view.applied``) or the day changed."""
        floor = reader.offline_floor
        key: tuple[str, object] = (
            ("pos", floor) if reader.role == "pos" else (reader.site or "", day)
        )
        cached = self._current.get(key)
        if cached is not None and cached[0] == view.applied:
            return cached[1]
        if reader.role == "pos" and floor is not None:
            made = till_list(view.bands(), view.privilege, offline_floor=floor)
        else:
            made = gate_list(view.bands(), view.tickets, site=reader.site or "", day=day)
        self._current[key] = (view.applied, made)
        self._remember(made)
        return made

    def known(self, version: int | None) -> BandList | None:
        return None if version is None else self._made.get(version)

    def chunks(self, held: int | None, current: BandList) -> tuple[int | None, list[Chunk]]:
        """What takes a reader holding ``held`` to ``current``: (base version or None for a
        snapshot, chunks); no chunks when it holds it already."""
        if held == current.version:
            return None, []
        old = self.known(held)
        if old is None:
            return None, snapshot(current)
        return held, delta(old, current)

    def _remember(self, made: BandList) -> None:
        self._made[made.version] = made
        self._made.move_to_end(made.version)
        while len(self._made) > self._keep:
            self._made.popitem(last=False)
