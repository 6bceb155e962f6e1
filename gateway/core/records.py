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

    def __post_init__(self) -> None:
        if len(self.mid) != 16:
            raise ValueError(f"mid must be 16 bytes, not {len(self.mid)}")
