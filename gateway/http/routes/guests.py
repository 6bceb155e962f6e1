"""A guest's money at the desk: top-ups, cash-out, the wallet, charging privileges, the PIN."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ...core.entry import venue_day
from ...core.payments import operations
from ...core.payments.records import Privilege
from ...store import Books
from ...store.tokens import Token
from ..deps import Api, allow, api, idempotency_key, run_once
from ..problems import documented
from ..schemas import ChargingIn, PinIn, TopUpIn, posted_out, transfer_out

router = APIRouter(tags=["guests"])

Desk = Annotated[Token, Depends(allow("desk"))]
Deps = Annotated[Api, Depends(api)]
Key = Annotated[str, Depends(idempotency_key)]


@router.post(
    "/v1/guests/{guest}/topups",
    status_code=201,
    summary="Cash in at a desk onto the guest's (party's) wallet",
    responses=documented(
        "forbidden",
        "unknown-guest",
        "not-a-wallet",
        "invalid-amount",
        "unknown-currency",
        "wrong-currency",
        "idempotency-key-required",
        "idempotency-key-reused",
    ),
)
def top_up(
    guest: str, *, body: TopUpIn, request: Request, token: Desk, deps: Deps, key: Key
) -> JSONResponse:
    def work(books: Books) -> tuple[int, dict[str, Any]]:
        transfer, balance = operations.top_up(
            books,
            guest_id=guest,
            amount=body.amount,
            currency=body.currency,
            venue_currency=deps.currency,
            actor=token.id,
            now_ms=deps.clock(),
            reference=body.reference,
        )
        return 201, {"topup": transfer_out(transfer), "balance": balance}

    return run_once(deps, token, key, request=request, body=body, work=work)


@router.post(
    "/v1/guests/{guest}/cashout",
    status_code=201,
    summary="End of stay: pay out the whole remainder of the wallet in cash",
    responses=documented(
        "forbidden", "unknown-guest", "nothing-to-cash-out", "idempotency-key-required"
    ),
)
def cash_out(guest: str, request: Request, token: Desk, deps: Deps, key: Key) -> JSONResponse:
    def work(books: Books) -> tuple[int, dict[str, Any]]:
        transfer = operations.cash_out(
            books,
            guest_id=guest,
            actor=token.id,
            now_ms=deps.clock(),
            venue_currency=deps.currency,
        )
        return 201, {"cashout": transfer_out(transfer), "balance": 0}

    return run_once(deps, token, key, request=request, body=None, work=work)


@router.get(
    "/v1/guests/{guest}/wallet",
    summary="Balance, limits, and transactions with their receipts",
    responses=documented("forbidden", "unknown-guest"),
)
def wallet(guest: str, token: Desk, deps: Deps) -> dict[str, Any]:
    del token
    today = venue_day(deps.clock(), deps.core.zone)

    def read(books: Books) -> dict[str, Any]:
        found = operations.wallet(books, guest_id=guest, today=today)
        account = found.account
        privilege = found.privilege
        transactions = []
        sales = books.charges(p.transfer.charge_id for p in found.statement if p.transfer.charge_id)
        for posted in found.statement:
            entry = posted_out(posted)
            charge = sales.get(posted.transfer.charge_id) if posted.transfer.charge_id else None
            if charge is not None and posted.transfer.kind == "charge":
                entry["receipt"] = {
                    "id": posted.transfer.id,
                    "outlet": charge.outlet,
                    "lines": [{"text": t, "amount": a} for t, a in charge.lines],
                }
            transactions.append(entry)
        return {
            "guest": guest,
            "party": found.party_id,
            "account": account.id if account else None,
            "kind": account.kind if account else None,
            "balance": account.balance if account else 0,
            "currency": account.currency if account else deps.currency,
            "floor": account.floor if account else 0,
            # How far offline sales took the account below its floor (the guest owes it).
            "overdraft": account.overdraft if account else 0,
            "charging": _privilege_out(privilege) | {"spent_today": found.spent_today},
            "transactions": transactions,
        }

    return deps.store.read(read)


def _privilege_out(privilege: Privilege) -> dict[str, Any]:
    return {
        "enabled": privilege.enabled,
        "daily_limit": privilege.daily_limit,
        "pin_threshold": privilege.pin_threshold,
        "pin_set": privilege.pin_hash is not None,
        "locked": privilege.locked,
    }


@router.put(
    "/v1/guests/{guest}/charging",
    summary="Charging on or off, a daily limit, the amount above which a PIN is asked",
    responses=documented("forbidden", "unknown-guest"),
)
def set_charging(guest: str, body: ChargingIn, token: Desk, deps: Deps) -> dict[str, Any]:
    del token
    privilege = deps.store.run(
        lambda books: operations.set_charging(
            books,
            guest_id=guest,
            enabled=body.enabled,
            daily_limit=body.daily_limit,
            pin_threshold=body.pin_threshold,
        )
    )
    return {"guest": guest} | _privilege_out(privilege)


@router.post(
    "/v1/guests/{guest}/pin",
    summary="Set the guest's PIN (it also unlocks charging)",
    responses=documented("forbidden", "unknown-guest"),
)
def set_pin(guest: str, body: PinIn, token: Desk, deps: Deps) -> dict[str, Any]:
    del token
    hashed = deps.core.pins.hash(guest, body.pin)  # slow by design: outside the transaction
    offline = deps.core.offline_pin_check(body.pin)
    privilege = deps.store.run(
        lambda books: operations.set_pin(
            books, guest_id=guest, pin_hash=hashed, offline_check=offline
        )
    )
    return {"guest": guest} | _privilege_out(privilege)


@router.post(
    "/v1/guests/{guest}/pin/unlock",
    summary="Clear the wrong-PIN lock",
    responses=documented("forbidden", "unknown-guest"),
)
def unlock_pin(guest: str, token: Desk, deps: Deps) -> dict[str, Any]:
    del token
    privilege = deps.store.run(lambda books: operations.unlock_pin(books, guest_id=guest))
    return {"guest": guest} | _privilege_out(privilege)
