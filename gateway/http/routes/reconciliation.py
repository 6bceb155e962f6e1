"""The reconciliation report: what readers decided alone while they could not reach a gateway,
and the exceptions among it (a band let in that the gateway would have refused), for the
operator who must look at each. As JSON, and as CSV for a spreadsheet."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

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
    "mid",
    "uploaded_ms",
)


def _row(tap: TapRecord) -> dict[str, Any]:
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
    exceptions = [_row(tap) for tap in taps if tap.exception is not None]
    by_kind: dict[str, int] = {}
    for row in exceptions:
        by_kind[row["exception"]] = by_kind.get(row["exception"], 0) + 1
    return {
        "since_ms": window.since_ms,
        "until_ms": window.until_ms,
        "offline_taps": len(taps),
        "granted": sum(1 for tap in taps if tap.granted),
        "exceptions_by_kind": by_kind,
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
    for tap in taps:
        writer.writerow(_row(tap))
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8")
