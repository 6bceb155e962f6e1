"""Bands at the desk: what a band is and where it was last seen, blocking a lost one
everywhere, and replacing it with everything carried over."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from ...store.bands import BandInfo, BandIssued, BandReplaced
from ...store.tokens import Token
from ..audit import note
from ..deps import Api, allow, api
from ..problems import Problem, documented
from ..schemas import BlockIn, ReplaceIn, UidHex

router = APIRouter(tags=["bands"])

Desk = Annotated[Token, Depends(allow("desk"))]
Deps = Annotated[Api, Depends(api)]
Uid = Annotated[UidHex, Path(description="the band's UID in hex")]
RECENT_TAPS = 20


def band_out(band: BandInfo) -> dict[str, Any]:
    return {
        "uid": band.uid.hex(),
        "guest": band.guest_id,
        "security": "sun" if band.sun else "plain-uid",
        "blocked": band.blocked,
        "blocked_reason": band.blocked_reason,
        "blocked_ms": band.blocked_ms,
        "replaced_by": band.replaced_by.hex() if band.replaced_by else None,
        "last_counter": band.last_counter,
    }


@router.get(
    "/v1/bands/{uid}",
    summary="A band: its guest, whether it is blocked, and where it was last seen",
    responses=documented("forbidden", "unknown-band"),
)
def get_band(uid: Uid, token: Desk, deps: Deps) -> dict[str, Any]:
    del token
    band = deps.store.band_info(bytes.fromhex(uid))
    if band is None:
        raise Problem("unknown-band", f"no band {uid}")
    taps = deps.store.band_taps(band.uid, RECENT_TAPS)
    seen = [
        {
            "reader": tap.reader_id,
            "at_ms": tap.received_ms,
            "granted": tap.granted,
            "reason": tap.reason,
            # Refused after the band was blocked: whoever holds it is not its guest.
            "after_block": band.blocked_ms is not None and tap.received_ms >= band.blocked_ms,
        }
        for tap in taps
    ]
    return band_out(band) | {"taps": seen}


@router.post(
    "/v1/bands/{uid}/block",
    summary="Block a band everywhere (lost, stolen, damaged): its next tap is refused",
    responses=documented("forbidden", "unknown-band"),
)
def block_band(
    uid: Uid, body: BlockIn, request: Request, token: Desk, deps: Deps
) -> dict[str, Any]:
    del token
    note(request, reason=body.reason)
    try:
        band = deps.store.block_band(bytes.fromhex(uid), reason=body.reason, now_ms=deps.clock())
    except LookupError as err:
        raise Problem("unknown-band", str(err)) from None
    return band_out(band)


@router.post(
    "/v1/bands/{uid}/replace",
    status_code=201,
    summary="Issue a new band to this band's guest, with everything, and block this one",
    responses=documented("forbidden", "unknown-band", "band-issued", "band-replaced"),
)
def replace_band(
    uid: Uid, body: ReplaceIn, request: Request, token: Desk, deps: Deps
) -> dict[str, Any]:
    del token
    note(request, new_uid=body.new_uid.lower(), reason=body.reason, security=body.security)
    old, new = bytes.fromhex(uid), bytes.fromhex(body.new_uid)
    sun = body.security == "sun"
    try:
        guest = deps.store.replace_band(old, new, reason=body.reason, now_ms=deps.clock(), sun=sun)
    except LookupError as err:
        raise Problem("unknown-band", str(err)) from None
    except BandReplaced as err:
        raise Problem("band-replaced", str(err)) from None
    except BandIssued as err:
        raise Problem("band-issued", str(err)) from None
    replaced = deps.store.band_info(old)
    issued = deps.store.band_info(new)
    assert replaced is not None and issued is not None
    return {"guest": guest, "old": band_out(replaced), "new": band_out(issued)}
