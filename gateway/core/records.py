"""What the gateway keeps of a tap: as received, and the answer given. ``mid`` is the key.
And what a transaction raises when another one got there first."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TapRecord:
    mid: bytes
    reader_id: str
    uid: bytes
    direction: str  # "in", "out", or "-" for roles that have none
    reader_ts_ms: int
    received_ms: int
    granted: bool
    reason: str  # a name from the wire registry, protocol/reasons.py
    guest_id: str | None
    seq: int
    role: str = "gate"  # gate | pos | photo
    # What the reader was told beyond the reason, where the reason does not say it all (a
    # payment's "Paid EUR 4.50" and the balance after): a duplicate gets the very same answer.
    text: str | None = None
    balance: int | None = None
    # How the band proved itself: "sun" (its reading verified), "plain" (a UID alone), None
    # when the tap was refused before that; and the SUN reading's counter.
    proof: str | None = None
    sun_counter: int | None = None
    # Decided by the reader alone and uploaded later: granted and reason are then what the
    # guest saw, gateway_reason what the gateway would have answered at the tap's time, and
    # exception why the venue must look at it (the reconciliation report), if it must.
    offline: bool = False
    gateway_reason: str | None = None
    exception: str | None = None
    # A pos tap's charge; an offline sale posted past its account's floor: by how much.
    charge_id: bytes | None = None
    overdraft: int | None = None

    def same_operation(self, other: TapRecord) -> bool:
        """Whether ``other`` is this tap again (a resend, a redelivery): a mid names one
        operation of one reader, so a tap under it from another reader, band, role or
        direction is not a duplicate but a bad request."""
        return (self.reader_id, self.uid, self.role, self.direction) == (
            other.reader_id,
            other.uid,
            other.role,
            other.direction,
        )

    def __post_init__(self) -> None:
        if len(self.mid) != 16:
            raise ValueError(f"mid must be 16 bytes, not {len(self.mid)}")


class Raced(Exception):
    """Another transaction changed what this one read before it could write (a compare-and-set
    that found nothing to set): run this one again from the start, and it sees the change."""
