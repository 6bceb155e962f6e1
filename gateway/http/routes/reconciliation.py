"""The reconciliation report: what readers decided alone while they could not reach a gateway,
and the exceptions among it (a band let in that the gateway would have refused; a till's sale
posted although the gateway would have refused it, an overdraft among them, or not posted at
all), for the operator who must look at each. A sale's row names its charge, amount and guest.
As JSON, and as CSV for a spreadsheet."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from ...core.payments.records import Charge
from ...core.records import TapRecord
from ...store.tokens import Token
from ..deps import Api, allow, api
from ..problems import documented

router = APIRouter(tags=["reconciliation"])

Operator = Annotated[Token, Depends(allow("operator"))]
Deps = Annotated[Api, Depends(api)]
Since = Annotated[int, Query(ge=0, description="from this time, ms since 1970 (the reader's)")]
Until = Annotated[int, Query(gt=0, lt=1 << 63, description="before this time, ms since 1970")]
Reader = Annotated[str | None, Query(max_length=32, description="one reader's taps only")]


@dataclass(frozen=True, slots=True)
class TimeRange:
    since_ms: int
    until_ms: int
    reader: str | None


def time_range(
    since_ms: Since = 0, until_ms: Until = (1 << 63) - 1, reader: Reader = None
) -> TimeRange:
    """The report's query: taps that happened in [since, until), of one reader if named."""
    return TimeRange(since_ms, until_ms, reader)


Window = Annotated[TimeRange, Depends(time_range)]
COLUMNS = (
    "at_ms",
    "reader",
    "uid",
    "guest",
    "direction",
    "shown",
    "reason",
    "gateway_reason",
    "exception",
    "charge",
    "amount",
    "currency",
    "overdraft",
    "mid",
    "uploaded_ms",
)


def _rows(deps: Api, taps: list[TapRecord]) -> list[dict[str, Any]]:
    """The report's rows, each sale's with its charge's amount (one read for all)."""
    ids = {tap.charge_id for tap in taps if tap.charge_id is not None}
    charges = deps.store.read(lambda books: books.charges(ids)) if ids else {}
    return [_row(tap, charges.get(tap.charge_id) if tap.charge_id else None) for tap in taps]


def _row(tap: TapRecord, charge: Charge | None) -> dict[str, Any]:
    return {
        "at_ms": tap.reader_ts_ms,
        "reader": tap.reader_id,
        "uid": tap.uid.hex(),
        "guest": tap.guest_id,
        "direction": tap.direction,
        "shown": "green" if tap.granted else "red",
        "reason": tap.reason,
        "gateway_reason": tap.gateway_reason,
        "exception": tap.exception,
        "charge": tap.charge_id.hex() if tap.charge_id else None,
        "amount": charge.amount if charge else None,
        "currency": charge.currency if charge else None,
        "overdraft": tap.overdraft,
        "mid": tap.mid.hex(),
        "uploaded_ms": tap.received_ms,
    }


@router.get(
    "/v1/reconciliation",
    summary="Offline decisions in a time range: counts, and every exception",
    responses=documented("forbidden"),
)
def report(token: Operator, deps: Deps, window: Window) -> dict[str, Any]:
    del token
    taps = deps.store.offline_taps(**asdict(window))
    exceptions = _rows(deps, [tap for tap in taps if tap.exception is not None])
    by_kind: dict[str, int] = {}
    for row in exceptions:
        by_kind[row["exception"]] = by_kind.get(row["exception"], 0) + 1
    return {
        "since_ms": window.since_ms,
        "until_ms": window.until_ms,
        "offline_taps": len(taps),
        "granted": sum(1 for tap in taps if tap.granted),
        "exceptions_by_kind": by_kind,
        "overdrafts": sum(row["overdraft"] or 0 for row in exceptions),
        "exceptions": exceptions,
    }


@router.get(
    "/v1/reconciliation.csv",
    summary="The exceptions of a time range as CSV, oldest first",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}, **documented("forbidden")},
)
def report_csv(token: Operator, deps: Deps, window: Window) -> Response:
    del token
    taps = deps.store.offline_taps(**asdict(window), exceptions_only=True)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in _rows(deps, taps):
        writer.writerow(row)
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8")
