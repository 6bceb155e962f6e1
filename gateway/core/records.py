"""What the gateway keeps of a tap: as received, and the answer given. ``mid`` is the key."""

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
