"""Whether a tap's band proved itself (SPEC, "Proving a band"): its SUN reading verifies under
the band's keys, names the tap's UID, and has a counter above the last one accepted. Pure: the
caller says whether a counter is new (a gate tap's transaction accepts it there and then, a pos
tap's only reads it and accepts it once the payment is decided)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bandlink.protocol import Tap, reasons

from ..entry import Band
from . import sun
from .keys import BandKeys

SUN, PLAIN = "sun", "plain"  # what a tap record's ``proof`` says
BAD_MAC = sun.BAD_MAC
REPLAYED = reasons.name(reasons.REPLAYED)


@dataclass(frozen=True, slots=True)
class Proof:
    kind: str  # SUN: the tap carried a reading; PLAIN: a UID alone
    refusal: str | None = None  # BAD_MAC or REPLAYED; None: proven (or plain, and allowed)
    counter: int | None = None  # the reading's counter

    @property
    def proven(self) -> bool:
        return self.refusal is None


def prove(
    tap: Tap, band: Band | None, keys: BandKeys, is_new: Callable[[bytes, int], bool]
) -> Proof:
    """Whether the tap's band proved itself. ``is_new(uid, counter)``: whether the reading's
    counter is above the band's last accepted one (the caller's transaction reads it, or
    accepts it at once)."""
    if tap.picc is None or tap.cmac is None:
        # A band issued as a SUN band tapping with its UID alone: its UID copied onto another
        # tag. A plain-UID band, or one nobody issued, is judged by the rules that follow.
        return Proof(PLAIN, BAD_MAC if band is not None and band.sun else None)
    try:
        reading = sun.verify(keys.meta_read, keys.file_read, tap.picc, tap.cmac, enc=tap.file)
    except sun.SunError:
        return Proof(SUN, BAD_MAC)
    if reading.uid != tap.uid:
        # A genuine reading of another band, sent under this UID.
        return Proof(SUN, BAD_MAC)
    if not is_new(reading.uid, reading.counter):
        return Proof(SUN, REPLAYED, reading.counter)
    return Proof(SUN, None, reading.counter)
