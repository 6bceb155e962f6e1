"""Errors as RFC 9457 problem details (``application/problem+json``), each with a stable
``type`` a till can branch on: ``urn:bandlink:problem:<kind>``."""

from __future__ import annotations

import json
import logging
from typing import Any, Final

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ..core.payments.operations import PaymentError

log = logging.getLogger("bandlink.http")

MEDIA_TYPE: Final = "application/problem+json"
TYPE_PREFIX: Final = "urn:bandlink:problem:"

# Every kind of problem the API answers with, its status and title: the OpenAPI page lists them.
KINDS: Final[dict[str, tuple[int, str]]] = {
    "unauthenticated": (401, "A valid bearer token or session is required"),
    "forbidden": (403, "This caller may not do that"),
    "unknown-guest": (404, "No such guest"),
    "unknown-reader": (404, "No such reader"),
    "unknown-charge": (404, "No such charge"),
    "unknown-band": (404, "No such band"),
    "band-issued": (409, "The band is issued already"),
    "band-replaced": (409, "The band was replaced already"),
    "login-locked": (429, "Too many wrong passwords: wait, then try again"),
    "link-used": (403, "This band link was used already: tap the band again"),
    "band-not-accepted": (403, "The band's link does not verify"),
    "band-blocked": (403, "The band is blocked: see the desk"),
    "not-found": (404, "Not found"),
    "reader-busy": (409, "The reader is showing another sale"),
    "charge-completed": (409, "The charge is no longer pending"),
    "charge-not-paid": (409, "The charge was not paid"),
    "refund-exceeds-charge": (409, "More than is left of the charge"),
    "nothing-to-cash-out": (409, "Nothing left to pay out"),
    "not-a-wallet": (409, "The guest pays by folio"),
    "idempotency-key-reused": (422, "The Idempotency-Key was used for another request"),
    "idempotency-key-required": (400, "Requests that move money need an Idempotency-Key"),
    "invalid-request": (422, "The request is malformed"),
    "invalid-amount": (422, "The amount is not one anybody can pay"),
    "unknown-currency": (422, "Not an ISO 4217 currency"),
    "wrong-currency": (422, "The venue takes another currency"),
    "not-a-pos-reader": (422, "The reader does not take payments"),
    "internal-error": (500, "The gateway failed; nothing was done, try again"),
}


class Problem(Exception):
    def __init__(self, kind: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.extra = extra

    @property
    def status(self) -> int:
        return KINDS[self.kind][0]

    def body(self) -> dict[str, Any]:
        return {
            "type": TYPE_PREFIX + self.kind,
            "title": KINDS[self.kind][1],
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }


def from_payment(error: PaymentError) -> Problem:
    return Problem(error.kind, error.detail)


def response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        problem.body(), status_code=problem.status, media_type=MEDIA_TYPE, headers=headers
    )


def stored_response(status: int, body: str) -> JSONResponse:
    """An answer stored under an Idempotency-Key, sent again as it was."""
    media = MEDIA_TYPE if status >= 400 else "application/json"
    return JSONResponse(json.loads(body), status_code=status, media_type=media)


async def on_problem(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    headers = {"WWW-Authenticate": "Bearer"} if exc.kind == "unauthenticated" else None
    return response(exc, headers)


async def on_payment_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PaymentError)
    return response(from_payment(exc))


async def on_crash(_request: Request, exc: Exception) -> JSONResponse:
    """A bug: its transaction was rolled back (and no Idempotency-Key answer stored), so the
    same request may be sent again."""
    log.exception("HTTP request failed", exc_info=exc)
    return response(Problem("internal-error", "an unexpected error; nothing was changed"))


async def on_invalid(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"where": ".".join(str(part) for part in error["loc"]), "problem": error["msg"]}
        for error in exc.errors()
    ]
    return response(
        Problem("invalid-request", "the request does not match its schema", errors=errors)
    )


def documented(*kinds: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: the problems it may answer with, for the OpenAPI page."""
    by_status: dict[int, list[str]] = {}
    for kind in (*kinds, "unauthenticated", "invalid-request"):
        by_status.setdefault(KINDS[kind][0], []).append(TYPE_PREFIX + kind)
    return {
        status: {
            "description": "; ".join(types),
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}},
        }
        for status, types in sorted(by_status.items())
    }
