"""Entry decisions at a gate: pure logic, no I/O, no clock, no SQL.

Theory of operation
-------------------

Each guest is, per site, in one of two states: OUTSIDE or INSIDE. A guest the store has no
presence row for is OUTSIDE. A tap at a gate reader is an input "in" or "out"; the reader's site
picks which state machine the tap drives.

Before the state machine is consulted, an *entry* must pass the admission checks, in this order
(the first failure is the answer, nothing changes):

    band unknown, or linked to no guest   -> refused  "unknown_band"
    band blocked                          -> refused  "band_blocked"
    no ticket for this site valid today   -> refused  "no_valid_ticket"

An *exit* skips them: exits are never blocked, for safety (a guest must always be able to leave,
even with a lost-and-blocked band or an expired ticket). Then:

    state     input  granted  reason            next state
    OUTSIDE   in     yes      "ok"              INSIDE  (gate, time recorded)
    INSIDE    in     no       "already_inside"  INSIDE  (anti-passback)
    INSIDE    out    yes      "ok"              OUTSIDE (gate, time recorded)
    OUTSIDE   out    yes      "not_inside"      OUTSIDE (unchanged)

Days and closing: each site has a time zone and a closing time (local; where the venue names
neither, the gateway's settings: UTC and 04:00 unless configured). *Today* is the date in the
site's zone at the instant the tap arrived (``venue_day``): tickets are valid per such day.
Presence does not outlive a closing: a presence changed before the site's latest closing
(``last_closing_ms``) counts as OUTSIDE, so a guest who left two days ago without tapping out
is let in today.

A guest whose green light was lost (the reply never reached the reader, which showed "try
again") is not this module's business: the reader resends that tap with the same ``mid`` and the
store answers it with the decision already made (firmware/gate.py). A rule here ("same gate, a
few seconds later, let them in again") would let a band passed back over the barrier in twice.

Invariants (tested with hypothesis in tests/test_entry.py):
- the state changes only on a granted "ok" tap; "not_inside" changes nothing;
- two granted entries that count ("ok") always have a granted exit between them;
- an entry with an unknown, blocked or ticketless band is never granted;
- an exit is always granted;
- a presence changed before the latest closing never refuses an entry ("already_inside").

Duplicate taps (same ``mid``) never reach this module: the store answers them with the stored
decision. Reasons are the wire registry's names (protocol/reasons.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from bandlink.protocol import reasons

# The wire registry's names (protocol/reasons.py): one vocabulary from the reader to the logs.
OK: Final = reasons.name(reasons.OK)
NOT_INSIDE: Final = reasons.name(reasons.NOT_INSIDE)
UNKNOWN_BAND: Final = reasons.name(reasons.UNKNOWN_BAND)
BAND_BLOCKED: Final = reasons.name(reasons.BAND_BLOCKED)
NO_VALID_TICKET: Final = reasons.name(reasons.NO_VALID_TICKET)
ALREADY_INSIDE: Final = reasons.name(reasons.ALREADY_INSIDE)
REASONS: Final = (OK, NOT_INSIDE, UNKNOWN_BAND, BAND_BLOCKED, NO_VALID_TICKET, ALREADY_INSIDE)

DIRECTIONS: Final = ("in", "out")
DEFAULT_CLOSING: Final = time(4, 0)
# A reader's configuration where the venue says nothing: how long a guest waits for the
# gateway's answer, and how long a light stays on (the reference reader's own defaults too).
DEFAULT_DEADLINE_MS: Final = 800
DEFAULT_HOLD_MS: Final = 1500

# (inside now, direction) -> (granted, reason, inside next): the whole state machine.
_TRANSITIONS: Final[dict[tuple[bool, str], tuple[bool, str, bool]]] = {
    (False, "in"): (True, OK, True),
    (True, "in"): (False, ALREADY_INSIDE, True),
    (True, "out"): (True, OK, False),
    (False, "out"): (True, NOT_INSIDE, False),
}


@dataclass(frozen=True, slots=True)
class Reader:
    """A reader as the catalog configures it (and its retained Config tells it)."""

    id: str
    site: str
    role: str
    gate: str
    direction: str = "in"  # a gate's: "in" or "out"
    config_version: int = 1  # bumped by every change to the configuration
    deadline_ms: int = DEFAULT_DEADLINE_MS
    hold_ms: int = DEFAULT_HOLD_MS
    outlet: str | None = None  # a pos reader's: where its sales are booked
    # A pos reader's: the largest sale it decides offline, and the most one band spends
    # offline there until its journal is acknowledged (minor units; None: no offline sales).
    offline_floor: int | None = None
    offline_cap: int | None = None


@dataclass(frozen=True, slots=True)
class Site:
    """Where a site's days begin and end: its zone and its closing time (each None: the
    gateway's default, its ``timezone`` and ``closing`` settings)."""

    id: str
    zone: ZoneInfo | None = None
    closing: time | None = None


def venue_day(instant_ms: int, zone: ZoneInfo) -> date:
    """The site's date at ``instant_ms``: what a ticket's dates are compared with."""
    return datetime.fromtimestamp(instant_ms / 1000, zone).date()


def last_closing_ms(instant_ms: int, zone: ZoneInfo, closing: time = DEFAULT_CLOSING) -> int:
    """The latest instant at or before ``instant_ms`` at which the site's clock read
    ``closing``. (A closing time a DST change skips counts an hour later that day.)"""
    local = datetime.fromtimestamp(instant_ms / 1000, zone)
    day = local.date()
    if local.replace(tzinfo=None).time() < closing:
        day -= timedelta(days=1)
    closed = datetime.combine(day, closing, tzinfo=zone)
    return min(int(closed.timestamp() * 1000), instant_ms)


@dataclass(frozen=True, slots=True)
class Band:
    uid: bytes
    guest_id: str | None
    blocked: bool
    sun: bool = True  # False: a plain-UID band (its taps prove nothing)
    blocked_reason: str | None = None  # lost, stolen, damaged, replaced


@dataclass(frozen=True, slots=True)
class Ticket:
    """A ticket for one site, valid from ``valid_from`` to ``valid_until``, both inclusive."""

    id: str
    guest_id: str
    site: str
    valid_from: date
    valid_until: date

    def valid_at(self, *, site: str, today: date) -> bool:
        return self.site == site and self.valid_from <= today <= self.valid_until


@dataclass(frozen=True, slots=True)
class Presence:
    """Whether a guest is inside a site, and the gate and time of the last change."""

    guest_id: str
    site: str
    inside: bool
    gate: str
    changed_ms: int
    # Bumped by every stored change; a write names the version it read (compare-and-set), so
    # two processes deciding on the same guest at once cannot both apply their change.
    version: int = 0


@dataclass(frozen=True, slots=True)
class EntryDecision:
    """The answer to a tap; ``presence`` is the new state to store, or None for no change."""

    granted: bool
    reason: str
    presence: Presence | None


def decide_entry(
    *,
    reader: Reader,
    band: Band | None,
    tickets: Iterable[Ticket],
    presence: Presence | None,
    direction: str,
    today: date,
    now_ms: int,
    closed_ms: int | None = None,
) -> EntryDecision:
    """Decide one gate tap. ``presence`` is the guest's presence at ``reader.site`` (or None);
    ``closed_ms`` the site's latest closing: a presence changed before it counts as outside."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'in' or 'out', not {direction!r}")
    guest_id = band.guest_id if band is not None else None
    if presence is not None and (presence.site != reader.site or presence.guest_id != guest_id):
        # A presence for another guest or site is a caller bug, not a guest's problem.
        raise ValueError("presence does not belong to this band's guest at this reader's site")
    if direction == "in":
        refusal = _admission_refusal(reader, band, tickets, today)
        if refusal is not None:
            return EntryDecision(granted=False, reason=refusal, presence=None)
    inside = presence is not None and presence.inside
    if (
        inside
        and presence is not None
        and closed_ms is not None
        and presence.changed_ms < closed_ms
    ):
        inside = False  # left before closing without tapping out: not inside any more
    granted, reason, inside_next = _TRANSITIONS[(inside, direction)]
    if guest_id is None or inside_next == inside:
        return EntryDecision(granted=granted, reason=reason, presence=None)
    version = presence.version + 1 if presence is not None else 0
    new = Presence(guest_id, reader.site, inside_next, reader.gate, now_ms, version)
    return EntryDecision(granted=granted, reason=reason, presence=new)


def passage(
    *,
    reader: Reader,
    guest_id: str,
    presence: Presence | None,
    direction: str,
    at_ms: int,
    closed_ms: int | None = None,
) -> Presence | None:
    """The presence a guest has after passing ``reader``'s gate at ``at_ms``, whatever the rules
    said (a reader deciding alone let them through); None when that changes nothing: the guest
    was on that side already, or a later passage is known (journals arrive late, and the latest
    passage is where the guest is). A presence from before ``closed_ms`` counts as outside."""
    if presence is not None and presence.changed_ms > at_ms:
        return None
    was_inside = (
        presence is not None
        and presence.inside
        and (closed_ms is None or presence.changed_ms >= closed_ms)
    )
    inside = direction == "in"
    if was_inside == inside:
        return None
    version = presence.version + 1 if presence is not None else 0
    return Presence(guest_id, reader.site, inside, reader.gate, at_ms, version)


def _admission_refusal(
    reader: Reader, band: Band | None, tickets: Iterable[Ticket], today: date
) -> str | None:
    if band is None or band.guest_id is None:
        return UNKNOWN_BAND
    if band.blocked:
        return BAND_BLOCKED
    # Tickets of another guest are ignored rather than trusted: they cannot admit this one.
    if not any(
        t.guest_id == band.guest_id and t.valid_at(site=reader.site, today=today) for t in tickets
    ):
        return NO_VALID_TICKET
    return None
