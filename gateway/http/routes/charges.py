"""Charges at pos readers: a till asks, the reader shows the sale, a band pays it."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ...core.payments import operations
from ...core.payments.records import PENDING, Charge
from ...store import Books
from ...store.tokens import Token
from ..deps import Api, allow, api, idempotency_key, run_once
from ..problems import Problem, documented
from ..schemas import ChargeIn, RefundIn, charge_out, transfer_out

router = APIRouter(tags=["charges"])
WAIT_MAX_S = 60
_POLL_S = 0.1

Till = Annotated[Token, Depends(allow("till"))]
Deps = Annotated[Api, Depends(api)]
Key = Annotated[str, Depends(idempotency_key)]


def _charge_id(text: str) -> bytes:
    try:
        charge_id = bytes.fromhex(text)
    except ValueError:
        charge_id = b""
    if len(charge_id) != 16:
        raise Problem("unknown-charge", "no such charge")
    return charge_id


def _id_of(response: JSONResponse) -> bytes:
    """The charge a stored 201 answer created (a repeat's is the first request's)."""
    return bytes.fromhex(json.loads(bytes(response.body))["id"])


def _publish_pending(deps: Api, charge_id: bytes, *, arm: bool) -> None:
    """After the commit: show the sale on its reader (arm), or take it off."""
    charge = deps.store.read(lambda books: books.charge(charge_id))
    if charge is None:
        return
    now = deps.clock()
    if arm and charge.state == PENDING:
        deps.publish([deps.core.charge_command(charge, now)])
    elif not arm:
        deps.publish([deps.core.cancel_command(charge, now)])


@router.post(
    "/v1/readers/{reader}/charges",
    status_code=201,
    summary="Ask for a payment at a pos reader",
    responses=documented(
        "forbidden",
        "unknown-reader",
        "reader-busy",
        "invalid-amount",
        "unknown-currency",
        "wrong-currency",
        "not-a-pos-reader",
        "idempotency-key-required",
        "idempotency-key-reused",
    ),
)
def create_charge(
    reader: str, *, body: ChargeIn, request: Request, token: Till, deps: Deps, key: Key
) -> JSONResponse:
    """A pending charge; the reader shows it at once. Poll `GET /v1/charges/{id}?wait=S`."""
    charge_id = os.urandom(16)

    def work(books: Books) -> tuple[int, dict[str, Any]]:
        charge = operations.create_charge(
            books,
            request=operations.ChargeRequest(
                reader,
                body.amount,
                body.currency,
                reference=body.reference,
                description=body.description,
                lines=tuple((line.text, line.amount) for line in body.lines),
            ),
            reader=books.reader(reader),
            charge_id=charge_id,
            venue_currency=deps.currency,
            actor=token.id,
            till_outlet=token.outlet,
            now_ms=deps.clock(),
            timeout_ms=deps.charge_timeout_ms,
        )
        return 201, charge_out(charge)

    response = run_once(deps, token, key, request=request, body=body, work=work)
    if response.status_code == 201:
        # A repeat too: if the first CHARGE was lost (a crash, the broker away), this one
        # shows the sale; the reader takes the same charge again as one.
        _publish_pending(deps, _id_of(response), arm=True)
    return response


@router.get(
    "/v1/charges/{charge}",
    summary="A charge, waiting up to ?wait=S seconds for it to complete",
    responses=documented("forbidden", "unknown-charge"),
)
async def get_charge(
    charge: str,
    token: Till,
    deps: Deps,
    wait: Annotated[float, Query(ge=0, le=WAIT_MAX_S)] = 0,
) -> dict[str, Any]:
    charge_id = _charge_id(charge)
    loop = asyncio.get_running_loop()
    until = loop.time() + wait

    def read(books: Books) -> Charge:
        return operations.find_charge(books, charge_id=charge_id, till_outlet=token.outlet)

    while True:
        found = await run_in_threadpool(deps.store.read, read)
        if found.state != PENDING or loop.time() >= until:
            return charge_out(found)
        await asyncio.sleep(_POLL_S)


@router.post(
    "/v1/charges/{charge}/cancel",
    summary="Void a pending charge; its reader stops showing it",
    responses=documented(
        "forbidden", "unknown-charge", "charge-completed", "idempotency-key-required"
    ),
)
def cancel_charge(charge: str, request: Request, token: Till, deps: Deps, key: Key) -> JSONResponse:
    charge_id = _charge_id(charge)

    def work(books: Books) -> tuple[int, dict[str, Any]]:
        cancelled = operations.cancel_charge(
            books, charge_id=charge_id, till_outlet=token.outlet, now_ms=deps.clock()
        )
        return 200, charge_out(cancelled)

    response = run_once(deps, token, key, request=request, body=None, work=work)
    if response.status_code == 200:  # a repeat too: a reader ignores CANCEL for another sale
        _publish_pending(deps, charge_id, arm=False)
    return response


@router.post(
    "/v1/charges/{charge}/refunds",
    status_code=201,
    summary="Give back all or part of an approved charge",
    responses=documented(
        "forbidden",
        "unknown-charge",
        "charge-not-paid",
        "refund-exceeds-charge",
        "invalid-amount",
        "idempotency-key-required",
        "idempotency-key-reused",
    ),
)
def refund_charge(
    charge: str, *, body: RefundIn, request: Request, token: Till, deps: Deps, key: Key
) -> JSONResponse:
    charge_id = _charge_id(charge)

    def work(books: Books) -> tuple[int, dict[str, Any]]:
        transfer, after = operations.refund(
            books,
            charge_id=charge_id,
            amount=body.amount,
            till_outlet=token.outlet,
            actor=token.id,
            now_ms=deps.clock(),
            reference=body.reference,
        )
        return 201, {"refund": transfer_out(transfer), "charge": charge_out(after)}

    return run_once(deps, token, key, request=request, body=body, work=work)
