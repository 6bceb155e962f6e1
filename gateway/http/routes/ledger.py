"""The ledger's health, for operators."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from ...store.tokens import Token
from ..deps import Api, allow, api
from ..problems import documented

router = APIRouter(tags=["ledger"])


@router.get(
    "/v1/ledger/check",
    summary="Sum over all accounts (always 0) and the counts that must be 0",
    responses=documented("forbidden"),
)
def check(
    token: Annotated[Token, Depends(allow("admin"))], deps: Annotated[Api, Depends(api)]
) -> dict[str, Any]:
    del token
    totals = deps.store.read(lambda books: books.totals())
    ok = totals.total == 0 and not (totals.unbalanced or totals.drifted or totals.below_floor)
    return {"ok": ok, **asdict(totals)}
