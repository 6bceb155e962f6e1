"""A small demo venue: one site, five guests, three gate readers: the north gate's entry
(gate-1) and exit (gate-2), and the south gate's entry (gate-3). Used by the demo and tests.

Shape as ``Store.load_venue`` reads it. Dates are relative ("today", "today-1", "today+N", read by
``resolve_date`` below) so the demo works on any day. Each guest exercises one path of
``entry.decide_entry``:

    Ada, Emil  valid ticket today              -> "ok"
    Bo         ticket expired yesterday        -> "no_valid_ticket"
    Chen       ticket for another site only    -> "no_valid_ticket"
    Dara       valid ticket, band blocked      -> "band_blocked"
    UNKNOWN_BAND_UID                           -> "unknown_band"

UIDs are 7-byte NXP-style (first byte 0x04, the NXP manufacturer code), written as hex.
"""

from __future__ import annotations

import re
from datetime import date, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SITE: Final = "parkside"

UNKNOWN_BAND_UID: Final = bytes.fromhex("04deadbeef0001")


def _ticket(
    ticket_id: str, *, site: str = SITE, start: str = "today", end: str = "today+2"
) -> dict[str, str]:
    return {"id": ticket_id, "site": site, "valid_from": start, "valid_until": end}


DEMO_VENUE: Final[dict[str, Any]] = {
    "site": SITE,
    # No time zone: the gateway's setting. Closing: at 04:00 every guest counts as outside.
    "sites": [{"id": SITE, "closing": "04:00"}],
    "guests": [
        {
            "id": "g-ada",
            "name": "Ada Okafor",
            "first_name": "Ada",
            "bands": ["04a1b2c3d4e5f6"],
            "tickets": [_ticket("t-ada")],
            # Above EUR 20 Ada types her PIN (set at the desk).
            "charging": {"pin_threshold": 2000},
        },
        {
            "id": "g-bo",
            "name": "Bo Lindqvist",
            "first_name": "Bo",
            "bands": ["04b0b0b0b0b001"],
            "tickets": [_ticket("t-bo", start="today-3", end="today-1")],
        },
        {
            "id": "g-chen",
            "name": "Chen Wei",
            "first_name": "Chen",
            "bands": ["04c4e4c4e4c401"],
            "tickets": [_ticket("t-chen", site="riverside")],
        },
        {
            "id": "g-dara",
            "name": "Dara Byrne",
            "first_name": "Dara",
            "bands": [{"uid": "04da4ada4ada01", "blocked": True}],
            "tickets": [_ticket("t-dara")],
        },
        {
            "id": "g-emil",
            "name": "Emil Novak",
            "first_name": "Emil",
            "bands": ["04e3114e3114e1"],
            "tickets": [_ticket("t-emil", start="today", end="today")],
            "charging": {"daily_limit": 1500},
        },
    ],
    # Who pays for whom: the Okafors (Ada, and Emil with a daily limit of his own) from a
    # wallet topped up at the desk; Chen charges to a hotel room, up to EUR 500; Bo and Dara
    # get wallets of their own at their first top-up.
    "parties": [
        {"id": "okafor", "name": "Okafor family", "members": ["g-ada", "g-emil"]},
        {
            "id": "room-12",
            "name": "Room 12",
            "members": ["g-chen"],
            "pays_by": "folio",
            "credit_limit": 50_000,
        },
    ],
    "readers": [
        # The north gate's entry and exit readers (the demo's two), and a second entry gate.
        {"id": "gate-1", "site": SITE, "role": "gate", "gate": "north", "direction": "in"},
        {"id": "gate-2", "site": SITE, "role": "gate", "gate": "north", "direction": "out"},
        {"id": "gate-3", "site": SITE, "role": "gate", "gate": "south", "direction": "in"},
        # Tills' readers: two at the cafe, one at the shop.
        {"id": "pos-1", "site": SITE, "role": "pos", "outlet": "cafe"},
        {"id": "pos-2", "site": SITE, "role": "pos", "outlet": "cafe"},
        {"id": "pos-3", "site": SITE, "role": "pos", "outlet": "shop"},
    ],
}


def parse_zone(name: str) -> ZoneInfo:
    """An IANA time zone by name; ValueError if Python does not know it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError, TypeError):
        hint = "use an IANA name such as Europe/Berlin"
        raise ValueError(f"unknown time zone {name!r}: {hint}") from None


_CLOCK_TIME = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


def parse_closing(value: str) -> time:
    """A local closing time, "HH:MM" (24-hour); ValueError otherwise."""
    match = _CLOCK_TIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"closing must be a time HH:MM such as 04:00, not {value!r}")
    return time(int(match.group(1)), int(match.group(2)))


_RELATIVE_DATE = re.compile(r"today(?:([+-])(\d+))?")


def resolve_date(value: str | date, *, today: date) -> date:
    """A date from a ``date``, an ISO string, or "today", "today+N", "today-N"."""
    if isinstance(value, date):
        return value
    match = _RELATIVE_DATE.fullmatch(value)
    if match is None:
        return date.fromisoformat(value)
    sign, days = match.groups()
    offset = int(days or 0) * (-1 if sign == "-" else 1)
    return today + timedelta(days=offset)


# The uid of each demo guest's band, by first name, for tests and the demo script.
DEMO_BANDS: Final[dict[str, bytes]] = {
    g["first_name"]: bytes.fromhex(b if isinstance(b, str) else b["uid"])
    for g in DEMO_VENUE["guests"]
    for b in g["bands"]
}
