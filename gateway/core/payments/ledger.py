"""The accounts money moves between, and the shape of every movement.

Every transfer moves one positive amount from one account to another: two postings, minus on
the account it leaves and plus on the one it reaches, so each transfer sums to zero and so does
the whole ledger. A balance is the sum of an account's postings:

    account           kind      floor              balance means
    wallet:<party>    wallet    0                  stored value the venue holds for a party
    folio:<party>     folio     -credit limit      what a party has charged to its room
    revenue:<outlet>  revenue   none               the sales of an outlet
    refunds:<outlet>  refunds   none               minus what an outlet gave back
    cash:<desk>       cash      none               cash the desks took in, minus cash paid out

    kind      from              to
    topup     cash:<desk>       wallet:<party>
    charge    wallet / folio    revenue:<outlet>
    refund    refunds:<outlet>  the wallet or folio the charge was paid from
    cashout   wallet:<party>    cash:<desk>

A wallet or folio never goes below its floor: the statement that takes money out refuses to
(store/ledger.py), and a CHECK constraint stands behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

TOPUP: Final = "topup"
CHARGE: Final = "charge"
REFUND: Final = "refund"
CASHOUT: Final = "cashout"

CASH_DESK: Final = "cash:desk"

AccountKind = Literal["wallet", "folio", "revenue", "refunds", "cash"]


def wallet(party: str) -> str:
    return f"wallet:{party}"


def folio(party: str) -> str:
    return f"folio:{party}"


def revenue(outlet: str) -> str:
    return f"revenue:{outlet}"


def refunds(outlet: str) -> str:
    return f"refunds:{outlet}"


@dataclass(frozen=True, slots=True)
class Transfer:
    """One movement of money, as posted."""

    id: str
    kind: str
    amount: int
    currency: str
    source: str  # the account it leaves
    target: str  # the account it reaches
    created_ms: int
    guest_id: str | None = None
    charge_id: bytes | None = None
    reference: str | None = None
    actor: str = "-"

    def postings(self) -> tuple[tuple[str, int], tuple[str, int]]:
        return (self.source, -self.amount), (self.target, self.amount)
