"""The records money is kept in, as the core sees them (the store reads and writes them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .ledger import Transfer

# A charge's states: it is made pending and moves once, to one of the others.
PENDING: Final = "pending"
APPROVED: Final = "approved"
DECLINED: Final = "declined"
CANCELLED: Final = "cancelled"
EXPIRED: Final = "expired"


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    kind: str
    currency: str
    floor: int | None
    balance: int
    overdrawn: bool = False  # an offline sale took it below its floor (it still is)

    @property
    def overdraft(self) -> int:
        """How far below its floor the account is (0 when it is not)."""
        return 0 if self.floor is None else max(0, self.floor - self.balance)


@dataclass(frozen=True, slots=True)
class Charge:
    id: bytes
    reader_id: str
    outlet: str
    amount: int
    currency: str
    label: str
    state: str
    created_ms: int
    expires_ms: int
    actor: str
    reference: str | None = None
    lines: tuple[tuple[str, int], ...] = ()
    reason: str | None = None
    guest_id: str | None = None
    tap_mid: bytes | None = None
    transfer_id: str | None = None
    refunded: int = 0
    completed_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Privilege:
    """What a guest may spend; the defaults are a guest nobody set anything for."""

    guest_id: str
    enabled: bool = True
    daily_limit: int | None = None
    pin_threshold: int | None = None
    pin_hash: str | None = None
    failures: int = 0
    locked: bool = False
    # The PIN's offline check and its salt, for a till's band list (None: set before tills
    # took offline sales, or no PIN).
    pin_check: bytes | None = None
    pin_salt: bytes | None = None


@dataclass(frozen=True, slots=True)
class Posted:
    """A transfer and one posting of it, for a statement of one account."""

    transfer: Transfer
    delta: int  # on the account the statement is of


@dataclass(frozen=True, slots=True)
class LedgerTotals:
    accounts: int
    transfers: int
    postings: int
    total: int  # sum over all balances: always 0
    unbalanced: int  # transfers whose postings do not sum to zero
    drifted: int  # accounts whose balance is not the sum of their postings
    below_floor: int  # accounts below their floor that no offline sale overdrew: always 0
    overdrawn: int = 0  # accounts an offline sale took below their floor (the report's)
