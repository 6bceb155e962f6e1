"""What moves money, as keyword-only functions on one open transaction (``Books``): the HTTP
routes, the pos tap's decision and the CLI all call these, never SQL of their own.

Each function checks its request, then asks the books to apply it; a limit (a wallet's floor,
a refund's bound, a daily limit, a charge paid once) is the database statement's answer, not a
read here. A request that cannot be done raises ``PaymentError`` before or instead of writing
(the caller rolls the transaction back), with a stable ``kind`` the HTTP side turns into a
problem type.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import date
from typing import Protocol

from bandlink.protocol import reasons

from ..entry import Band, Reader
from ..records import Raced
from . import ledger
from .ledger import Transfer
from .money import check_minor, exponent, format_amount
from .records import (
    APPROVED,
    CANCELLED,
    DECLINED,
    EXPIRED,
    PENDING,
    Account,
    Charge,
    LedgerTotals,
    Posted,
    Privilege,
)

LABEL_MAX = 32  # a Command's label (SPEC)
REFERENCE_MAX = 64
LINES_MAX = 50


class PaymentError(Exception):
    """A request refused; ``kind`` is stable (the problem type), ``detail`` says why."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class Books(Protocol):
    def open_account(
        self, account_id: str, kind: str, currency: str, floor: int | None
    ) -> None: ...
    def account(self, account_id: str, *, lock: bool = False) -> Account | None: ...
    def post(self, transfer: Transfer, *, overdraft: bool = False) -> tuple[int, int] | None: ...
    def statement(self, account_id: str, limit: int = 100) -> list[Posted]: ...
    def charge_transfers(self, charge_id: bytes) -> list[Transfer]: ...
    def totals(self) -> LedgerTotals: ...
    def party_account(self, guest_id: str) -> str | None: ...
    def party_of(self, guest_id: str) -> str | None: ...
    def guest_exists(self, guest_id: str) -> bool: ...
    def add_party(self, party_id: str, name: str, account_id: str) -> None: ...
    def join_party(self, guest_id: str, party_id: str) -> None: ...
    def add_charge(self, charge: Charge) -> bool: ...
    def charge(self, charge_id: bytes) -> Charge | None: ...
    def pending_charge_at(self, reader_id: str) -> Charge | None: ...
    def complete_charge(self, charge: Charge, *, payable: tuple[str, ...] = (PENDING,)) -> bool: ...
    def expire_charges(self, now_ms: int, *, reader_id: str | None = None) -> list[Charge]: ...
    def count_refund(self, charge_id: bytes, amount: int) -> bool: ...
    def privilege(self, guest_id: str) -> Privilege: ...
    def set_limits(
        self, guest_id: str, *, enabled: bool, daily_limit: int | None, pin_threshold: int | None
    ) -> None: ...
    def set_pin_hash(
        self, guest_id: str, pin_hash: str, *, check: bytes | None = None, salt: bytes | None = None
    ) -> None: ...
    def unlock(self, guest_id: str) -> None: ...
    def wrong_pin(self, guest_id: str, attempts: int) -> Privilege: ...
    def right_pin(self, guest_id: str) -> None: ...
    def spend(self, guest_id: str, day: date, amount: int, limit: int | None) -> bool: ...
    def spent(self, guest_id: str, day: date) -> int: ...
    def savepoint(self) -> AbstractContextManager[object]: ...


class ChargeRaced(Raced):
    """A pending charge changed under this transaction (another process completed it): the
    caller runs the transaction again, and then sees the outcome."""


def new_transfer_id() -> str:
    return "tr_" + os.urandom(10).hex()


# -- the venue's accounts -------------------------------------------------------------------


def _outlet_accounts(books: Books, outlet: str, currency: str) -> None:
    books.open_account(ledger.revenue(outlet), "revenue", currency, None)
    books.open_account(ledger.refunds(outlet), "refunds", currency, None)


def _cash_account(books: Books, currency: str) -> str:
    books.open_account(ledger.CASH_DESK, "cash", currency, None)
    return ledger.CASH_DESK


def _wallet_of(books: Books, guest_id: str, currency: str) -> str:
    """The account the guest's party pays from; a guest in no party gets a wallet of their own."""
    account = books.party_account(guest_id)
    if account is not None:
        return account
    account = ledger.wallet(guest_id)
    books.open_account(account, "wallet", currency, 0)
    books.add_party(guest_id, guest_id, account)
    books.join_party(guest_id, guest_id)
    return account


def _check_guest(books: Books, guest_id: str) -> None:
    if not books.guest_exists(guest_id):
        raise PaymentError("unknown-guest", f"no guest {guest_id!r}")


def _check_currency(currency: str, venue_currency: str) -> None:
    try:
        exponent(currency)  # an ISO 4217 code at all
    except ValueError as err:
        raise PaymentError("unknown-currency", str(err)) from None
    if currency != venue_currency:
        raise PaymentError("wrong-currency", f"this venue takes {venue_currency}, not {currency}")


def _amount(amount: object) -> int:
    try:
        return check_minor(amount)
    except ValueError as err:
        raise PaymentError("invalid-amount", str(err)) from None


# -- cash desk ------------------------------------------------------------------------------


def top_up(
    books: Books,
    *,
    guest_id: str,
    amount: object,
    currency: str,
    venue_currency: str,
    actor: str,
    now_ms: int,
    reference: str | None = None,
) -> tuple[Transfer, int]:
    """Cash in at a desk onto the guest's party wallet: the transfer, and the wallet after."""
    minor = _amount(amount)
    _check_currency(currency, venue_currency)
    _check_guest(books, guest_id)
    wallet = _wallet_of(books, guest_id, currency)
    account = books.account(wallet)
    if account is None or account.kind != "wallet":
        raise PaymentError("not-a-wallet", f"guest {guest_id!r} pays by folio: nothing to top up")
    transfer = Transfer(
        id=new_transfer_id(),
        kind=ledger.TOPUP,
        amount=minor,
        currency=currency,
        source=_cash_account(books, currency),
        target=wallet,
        created_ms=now_ms,
        guest_id=guest_id,
        reference=reference,
        actor=actor,
    )
    posted = books.post(transfer)
    assert posted is not None  # the cash account has no floor
    return transfer, posted[1]  # the wallet as it is now, whatever committed meanwhile


def cash_out(
    books: Books, *, guest_id: str, actor: str, now_ms: int, venue_currency: str
) -> Transfer:
    """End of stay: the whole remainder of the guest's party's wallet paid out in cash (a party
    shares one wallet: whichever member the desk hands the cash to takes the party's)."""
    _check_guest(books, guest_id)
    wallet = books.party_account(guest_id)
    # Locked: a top-up or charge committing between the read and the posting would otherwise
    # leave money behind, or fail this one.
    account = books.account(wallet, lock=True) if wallet else None
    if account is None or account.kind != "wallet" or account.balance <= 0:
        raise PaymentError(
            "nothing-to-cash-out", f"guest {guest_id!r} has no money left to pay out"
        )
    transfer = Transfer(
        id=new_transfer_id(),
        kind=ledger.CASHOUT,
        amount=account.balance,
        currency=account.currency,
        source=account.id,
        target=_cash_account(books, account.currency),
        created_ms=now_ms,
        guest_id=guest_id,
        actor=actor,
    )
    if books.post(transfer) is None:  # the floor still stands behind the lock
        raise ChargeRaced(f"the wallet of {guest_id!r} changed while paying it out")
    return transfer


# -- charges from a till ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    reader_id: str
    amount: object
    currency: str
    reference: str | None = None
    description: str | None = None
    lines: tuple[tuple[str, int], ...] = ()


def create_charge(
    books: Books,
    *,
    request: ChargeRequest,
    reader: Reader | None,
    charge_id: bytes,
    venue_currency: str,
    actor: str,
    till_outlet: str | None,
    now_ms: int,
    timeout_ms: int,
) -> Charge:
    """A pending charge at a pos reader (the caller then arms the reader with it)."""
    minor = _amount(request.amount)
    _check_currency(request.currency, venue_currency)
    if reader is None or (till_outlet is not None and reader.outlet != till_outlet):
        # A reader of another outlet is as good as none to this till: it learns nothing of it.
        raise PaymentError("unknown-reader", f"no reader {request.reader_id!r} at this outlet")
    if reader.role != "pos" or not reader.outlet:
        raise PaymentError("not-a-pos-reader", f"reader {reader.id!r} does not take payments")
    lines = _lines(request, minor)
    # A timed-out sale the sweep has not reached must not keep the reader busy; its reader
    # needs no CANCEL, the new sale's CHARGE replaces it.
    books.expire_charges(now_ms, reader_id=reader.id)
    _outlet_accounts(books, reader.outlet, request.currency)
    what = request.description or request.reference or "Sale"
    charge = Charge(
        id=charge_id,
        reader_id=reader.id,
        outlet=reader.outlet,
        amount=minor,
        currency=request.currency,
        label=f"{format_amount(minor, request.currency)} {what}"[:LABEL_MAX],
        state=PENDING,
        created_ms=now_ms,
        expires_ms=now_ms + timeout_ms,
        actor=actor,
        reference=request.reference,
        lines=lines,
    )
    if not books.add_charge(charge):
        raise PaymentError("reader-busy", f"reader {reader.id!r} is showing another sale")
    return charge


def _lines(request: ChargeRequest, minor: int) -> tuple[tuple[str, int], ...]:
    if request.reference is not None and len(request.reference) > REFERENCE_MAX:
        raise PaymentError("invalid-request", f"a reference is at most {REFERENCE_MAX} characters")
    if not request.lines:
        return ((request.description or request.reference or "Sale", minor),)
    if len(request.lines) > LINES_MAX:
        raise PaymentError("invalid-request", f"a receipt has at most {LINES_MAX} lines")
    if sum(_amount(amount) for _text, amount in request.lines) != minor:
        raise PaymentError("invalid-amount", "the lines must add up to the amount")
    return request.lines


def find_charge(books: Books, *, charge_id: bytes, till_outlet: str | None) -> Charge:
    charge = books.charge(charge_id)
    if charge is None or (till_outlet is not None and charge.outlet != till_outlet):
        # Another outlet's charge is as good as none to this till: it learns nothing of it.
        raise PaymentError("unknown-charge", "no such charge")
    return charge


def cancel_charge(
    books: Books, *, charge_id: bytes, till_outlet: str | None, now_ms: int
) -> Charge:
    """Void a pending charge (nothing was posted); the caller then releases its reader."""
    charge = find_charge(books, charge_id=charge_id, till_outlet=till_outlet)
    if charge.state != PENDING:
        raise PaymentError(
            "charge-completed", f"the charge is {charge.state}: refund it instead of cancelling"
        )
    cancelled = replace(charge, state=CANCELLED, reason="cancelled", completed_ms=now_ms)
    if not books.complete_charge(cancelled):
        raise ChargeRaced("the charge completed while cancelling it")
    return cancelled


def refund(
    books: Books,
    *,
    charge_id: bytes,
    amount: object | None,
    till_outlet: str | None,
    actor: str,
    now_ms: int,
    reference: str | None = None,
) -> tuple[Transfer, Charge]:
    """Give back all (amount None) or part of an approved charge, to the account it was paid
    from; never more in total than was charged."""
    charge = find_charge(books, charge_id=charge_id, till_outlet=till_outlet)
    if charge.state != APPROVED:
        raise PaymentError("charge-not-paid", f"the charge is {charge.state}: nothing to refund")
    minor = charge.amount - charge.refunded if amount is None else _amount(amount)
    if minor <= 0 or not books.count_refund(charge.id, minor):
        left = charge.amount - charge.refunded
        raise PaymentError(
            "refund-exceeds-charge",
            f"at most {format_amount(left, charge.currency)} of this charge is left to refund",
        )
    paid = next(t for t in books.charge_transfers(charge.id) if t.kind == ledger.CHARGE)
    transfer = Transfer(
        id=new_transfer_id(),
        kind=ledger.REFUND,
        amount=minor,
        currency=charge.currency,
        source=ledger.refunds(charge.outlet),
        target=paid.source,
        created_ms=now_ms,
        guest_id=charge.guest_id,
        charge_id=charge.id,
        reference=reference,
        actor=actor,
    )
    books.post(transfer)
    return transfer, replace(charge, refunded=charge.refunded + minor)


# -- a guest's privileges ---------------------------------------------------------------------


def set_charging(
    books: Books,
    *,
    guest_id: str,
    enabled: bool,
    daily_limit: int | None,
    pin_threshold: int | None,
) -> Privilege:
    _check_guest(books, guest_id)
    for name, value in (("daily_limit", daily_limit), ("pin_threshold", pin_threshold)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise PaymentError("invalid-amount", f"{name} is a whole number of minor units >= 0")
    books.set_limits(
        guest_id, enabled=enabled, daily_limit=daily_limit, pin_threshold=pin_threshold
    )
    return books.privilege(guest_id)


def set_pin(
    books: Books,
    *,
    guest_id: str,
    pin_hash: str,
    offline_check: tuple[bytes, bytes] | None = None,
) -> Privilege:
    """A new PIN (already hashed), with its offline (check, salt) for the tills' band lists:
    it also clears the wrong tries and the lock."""
    _check_guest(books, guest_id)
    check, salt = offline_check or (None, None)
    books.set_pin_hash(guest_id, pin_hash, check=check, salt=salt)
    return books.privilege(guest_id)


def unlock_pin(books: Books, *, guest_id: str) -> Privilege:
    _check_guest(books, guest_id)
    books.unlock(guest_id)
    return books.privilege(guest_id)


@dataclass(frozen=True, slots=True)
class Wallet:
    guest_id: str
    party_id: str | None
    account: Account | None
    privilege: Privilege
    spent_today: int
    statement: list[Posted]


def wallet(books: Books, *, guest_id: str, today: date) -> Wallet:
    _check_guest(books, guest_id)
    account_id = books.party_account(guest_id)
    account = books.account(account_id) if account_id else None
    return Wallet(
        guest_id=guest_id,
        party_id=books.party_of(guest_id),
        account=account,
        privilege=books.privilege(guest_id),
        spent_today=books.spent(guest_id, today),
        statement=books.statement(account.id) if account else [],
    )


# -- a tap at a pos reader ---------------------------------------------------------------------

PIN_ATTEMPTS = 3  # wrong PINs in a row that lock a guest's charging

NO_PIN = ""  # the tap carried no PIN block
BAD_BLOCK = None  # it carried one that does not decode for this charge
READER_CHECKED = "checked offline"  # no PIN travels in a journal: the till checked it
OK = reasons.name(reasons.OK)
CHARGE_UNKNOWN = reasons.name(reasons.CHARGE_UNKNOWN)
# The states an offline sale pays a charge from: still open; timed out, or declined by a live
# tap whose answer was lost, while the reader was offline (the guest has the goods all the
# same). Not approved (a second payment) nor cancelled (staff settle it with the guest).
PAYABLE_OFFLINE = (PENDING, EXPIRED, DECLINED)
_NOT_PAYABLE = {APPROVED: "charge_paid", CANCELLED: "charge_cancelled"}


@dataclass(frozen=True, slots=True)
class TapPayment:
    """What a pos tap did: the reader's answer, and the charge as it stands after it."""

    granted: bool
    reason: str
    text: str
    balance: int | None = None
    charge: Charge | None = None
    overdraft: int = 0  # an offline sale's: how far it took the account below its floor


def pay_by_tap(
    books: Books,
    *,
    charge_id: bytes,
    reader: Reader,
    band: Band | None,
    pin: str | None,
    check_pin: Callable[[str, str, str], bool],
    day: date,
    tap_mid: bytes,
    now_ms: int,
    unproven: str | None = None,
    pin_attempts: int = PIN_ATTEMPTS,
) -> TapPayment:
    """Decide and apply one tap answering a charge: approve and post it, or decline.

    ``pin`` is the PIN the tap's block opened to, NO_PIN when it carried none, BAD_BLOCK when
    its block does not decode for this charge and reader; ``check_pin(hash, guest_id, pin)``
    verifies one against the guest's stored hash; ``unproven`` is why the band did not prove
    the tap (bad_mac, replayed), if it did not. A missing or wrong PIN leaves the charge
    pending (the guest tries again, until the lock); every other refusal declines it."""
    charge = books.charge(charge_id)
    if charge is None or charge.reader_id != reader.id or charge.state != PENDING:
        return TapPayment(False, reasons.name(reasons.CHARGE_UNKNOWN), "No sale open")
    if charge.expires_ms <= now_ms:
        # This one only: the reader asking learns it from the answer; the worker's sweep
        # expires the others and tells their readers.
        expired = replace(charge, state=EXPIRED, reason="charge_expired", completed_ms=now_ms)
        if not books.complete_charge(expired):
            raise ChargeRaced("the charge completed while expiring it")
        return TapPayment(False, reasons.name(reasons.CHARGE_EXPIRED), "Sale timed out")
    guest = band.guest_id if band is not None else None
    try:
        if pin is BAD_BLOCK:
            # Not a PIN guess (it counts for no lock): a reader's bug, or someone replaying a
            # block sealed for another charge. The sale ends; the till starts another.
            raise _Stop(reasons.BAD_REQUEST, "Reader error - see staff")
        guest = _check_band(band, unproven)
        privilege = books.privilege(guest)
        _check_privilege(
            books,
            privilege,
            charge.amount,
            pin=pin,
            check_pin=check_pin,
            pin_attempts=pin_attempts,
        )
        with books.savepoint():  # the day's spending is counted only if the money moves
            if not books.spend(guest, day, charge.amount, privilege.daily_limit):
                raise _Stop(reasons.LIMIT_EXCEEDED, "Daily limit reached")
            return _approve(books, charge, guest, tap_mid, now_ms)
    except _Stop as stop:
        if not stop.declines:
            return TapPayment(False, reasons.name(stop.code), stop.text, charge=charge)
        declined = replace(
            charge,
            state=DECLINED,
            reason=reasons.name(stop.code),
            guest_id=guest,
            tap_mid=tap_mid,
            completed_ms=now_ms,
        )
        if not books.complete_charge(declined):
            raise ChargeRaced("the charge completed while declining it") from None
        return TapPayment(False, reasons.name(stop.code), stop.text, charge=declined)


def _check_privilege(
    books: Books,
    privilege: Privilege,
    amount: int,
    *,
    pin: str | None,
    check_pin: Callable[[str, str, str], bool],
    pin_attempts: int,
) -> None:
    """May this guest pay ``amount`` with this PIN? Raises _Stop if not."""
    if privilege.locked:
        raise _Stop(reasons.NOT_PERMITTED, "PIN locked - see desk")
    if not privilege.enabled:
        raise _Stop(reasons.NOT_PERMITTED, "Charging is off")
    if privilege.pin_threshold is None or amount <= privilege.pin_threshold:
        return
    if privilege.pin_hash is None:
        raise _Stop(reasons.NOT_PERMITTED, "Set a PIN at the desk")
    if pin == READER_CHECKED:
        return  # an offline till compared it with its band list's check
    if not pin:
        raise _Stop(reasons.PIN_REQUIRED, "Enter PIN", declines=False)
    if check_pin(privilege.pin_hash, privilege.guest_id, pin):
        books.right_pin(privilege.guest_id)
        return
    if books.wrong_pin(privilege.guest_id, pin_attempts).locked:
        # not_permitted, not wrong_pin: the reader ends the sale on it (it keeps a sale open
        # for another try after wrong_pin).
        raise _Stop(reasons.NOT_PERMITTED, "PIN locked - see desk")
    raise _Stop(reasons.WRONG_PIN, "Wrong PIN", declines=False)


class _Stop(Exception):
    """A tap that does not pay: declining the charge, or (a PIN to enter again) leaving it
    pending. Raised inside the savepoint, it undoes what was written there (the day's spending,
    the charge's approval); a wrong PIN's count is written before it and stays."""

    def __init__(self, code: int, text: str, *, declines: bool = True) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.declines = declines


def _check_band(band: Band | None, unproven: str | None) -> str:
    """The guest a band pays for, if it may pay at all; raises _Stop if not (SPEC, "Deciding a
    pos tap", steps 10 and 11)."""
    if unproven is not None:
        raise _Stop(reasons.code(unproven), "Band not accepted - see staff")
    if band is None or band.guest_id is None:
        raise _Stop(reasons.UNKNOWN_BAND, "Band not recognised")
    if band.blocked:
        raise _Stop(reasons.BAND_BLOCKED, "Band blocked - see staff")
    return band.guest_id


def _approve(
    books: Books, charge: Charge, guest: str, tap_mid: bytes, now_ms: int, *, offline: bool = False
) -> TapPayment:
    """Pay ``charge`` from the guest's party's account. ``offline``: a sale the guest already
    has the goods of, so paid whatever its account holds (an overdraft), from a state the
    charge reached meanwhile too (PAYABLE_OFFLINE)."""
    if offline:  # there must be an account to post it against: a wallet of their own
        source: str | None = _wallet_of(books, guest, charge.currency)
    else:
        source = books.party_account(guest)
    if source is None:  # never topped up, in no party: there is no money to take
        raise _Stop(reasons.INSUFFICIENT_FUNDS, "No credit - see desk")
    transfer = Transfer(
        id=new_transfer_id(),
        kind=ledger.CHARGE,
        amount=charge.amount,
        currency=charge.currency,
        source=source,
        target=ledger.revenue(charge.outlet),
        created_ms=now_ms,
        guest_id=guest,
        charge_id=charge.id,
        reference=charge.reference,
        actor=f"reader:{charge.reader_id}",
    )
    approved = replace(
        charge,
        state=APPROVED,
        reason=reasons.name(reasons.OK),
        guest_id=guest,
        tap_mid=tap_mid,
        transfer_id=transfer.id,
        completed_ms=now_ms,
    )
    # The state first: a second process paying the same charge waits here for the first one's
    # commit and then finds it no longer pending (and runs again), before it posts anything.
    payable = PAYABLE_OFFLINE if offline else (PENDING,)
    if not books.complete_charge(approved, payable=payable):
        raise ChargeRaced("the charge completed while paying it")
    posted = books.post(transfer)
    overdraft = 0
    if posted is None and offline:
        posted = books.post(transfer, overdraft=True)
        account = books.account(source)
        overdraft = min(charge.amount, account.overdraft) if account is not None else 0
    if posted is None:
        raise _Stop(reasons.INSUFFICIENT_FUNDS, "Not enough credit")
    text = f"Paid {format_amount(charge.amount, charge.currency)}"
    return TapPayment(True, OK, text, balance=posted[0], charge=approved, overdraft=overdraft)


# -- a till's sale decided offline, reconciled -----------------------------------------------


@dataclass(frozen=True, slots=True)
class OfflineSale:
    """What reconciling a till's offline sale did: posted or not, what the gateway would have
    answered live (``gateway_reason``), and the exception the report shows, if any."""

    posted: bool
    gateway_reason: str
    exception: str | None
    charge: Charge | None = None
    guest_id: str | None = None
    balance: int | None = None
    overdraft: int = 0


def reconcile_sale(
    books: Books,
    *,
    charge_id: bytes,
    reader: Reader,
    band: Band | None,
    unproven: str | None,
    day: date,
    tap_mid: bytes,
    at_ms: int,
) -> OfflineSale:
    """A sale a till granted alone (SPEC, "Reconciling a sale"), at its own time ``at_ms``:
    posted once against its charge, past the account's floor if need be, by the live rules
    minus the PIN (the till checked it). ``band`` is the band as issued, whether or not the
    tap proved it (``unproven``: why not): the sale is its guest's either way."""
    charge = books.charge(charge_id)
    if charge is None or charge.reader_id != reader.id:
        return OfflineSale(False, CHARGE_UNKNOWN, CHARGE_UNKNOWN)
    if charge.state in _NOT_PAYABLE:
        return OfflineSale(False, CHARGE_UNKNOWN, _NOT_PAYABLE[charge.state], charge)
    guest = band.guest_id if band is not None else None
    if guest is None:  # no guest, no account: nothing to post it against
        unknown = reasons.name(reasons.UNKNOWN_BAND)
        return OfflineSale(False, unknown, unknown, charge)
    privilege = books.privilege(guest)
    exception = _offline_refusal(books, band, unproven, privilege, charge.amount)
    if not books.spend(guest, day, charge.amount, privilege.daily_limit):
        exception = exception or reasons.name(reasons.LIMIT_EXCEEDED)
        books.spend(guest, day, charge.amount, None)  # spent all the same
    paid = _approve(books, charge, guest, tap_mid, at_ms, offline=True)
    if paid.overdraft:
        exception = exception or reasons.name(reasons.INSUFFICIENT_FUNDS)
    return OfflineSale(
        True,
        exception or OK,
        exception,
        paid.charge,
        guest,
        balance=paid.balance,
        overdraft=paid.overdraft,
    )


def _offline_refusal(
    books: Books, band: Band | None, unproven: str | None, privilege: Privilege, amount: int
) -> str | None:
    """Why the gateway would have refused the band live (steps 10 to 12), if it would."""
    try:
        _check_band(band, unproven)
        _check_privilege(
            books,
            privilege,
            amount,
            pin=READER_CHECKED,
            check_pin=_no_pin_check,
            pin_attempts=PIN_ATTEMPTS,
        )
    except _Stop as stop:
        return reasons.name(stop.code)
    return None


def _no_pin_check(_stored: str, _guest_id: str, _pin: str) -> bool:
    raise AssertionError("an offline sale carries no PIN to check")
