"""A guest's login by tap: the band touches a phone, the phone opens the band's SUN URL here,
and the gateway opens that guest's session, once per reading (a copied URL was used already).
The guest portal's pages build on the session; until they come, it lands on ``/v1/me``."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse

from ...core.bands import sun
from ...store import WebSession
from .. import auth
from ..deps import Api, api
from ..problems import Problem, documented

router = APIRouter(tags=["guests"])
Deps = Annotated[Api, Depends(api)]
log = logging.getLogger("bandlink.http")
LANDING = "/v1/me"


@router.get(
    "/b",
    summary="A band's SUN link (what the band's NDEF URL opens): logs its guest in",
    status_code=303,
    responses=documented("band-not-accepted", "unknown-band", "band-blocked", "link-used"),
)
def band_link(request: Request, deps: Deps) -> RedirectResponse:
    reading = _verified(str(request.url), deps)
    band = deps.store.band_info(reading.uid)
    if band is None or band.guest_id is None:
        raise Problem("unknown-band", "this band is not issued to anybody")
    if band.blocked:
        raise Problem("band-blocked", "this band is blocked: see the desk")
    now = deps.clock()
    secret = auth.new_session_secret()
    session = WebSession("guest", band.guest_id, now, now + auth.GUEST_SESSION_MS)
    source = request.client.host if request.client else None
    digest = auth.digest(secret)
    if not deps.store.guest_login(reading.uid, reading.counter, digest, session, source=source):
        log.warning("band %s: a used link opened again, from %s", reading.uid.hex(), source)
        raise Problem("link-used", "this link was used already: tap your band on the phone again")
    response = RedirectResponse(LANDING, status_code=303)
    # Lax, not Strict: the phone arrives from the NFC tap, a top-level navigation.
    auth.set_session_cookie(response, request, auth.GUEST_COOKIE, secret, same_site="lax")
    return response


def _verified(url: str, deps: Api) -> sun.SunReading:
    keys = deps.core.band_keys
    try:
        parsed = sun.parse_url(url)
        if parsed.picc is None:
            raise ValueError("not a bandlink band's link")
        return sun.verify(
            keys.meta_read,
            keys.file_read,
            parsed.picc,
            parsed.mac,
            enc=parsed.enc,
            mac_input=parsed.mac_input,
        )
    except (ValueError, sun.SunError) as err:
        log.warning("a band link that does not verify: %s", err)
        raise Problem("band-not-accepted", "this link is not a band's") from None


@router.get("/v1/me", summary="The guest whose band opened this session")
def me(request: Request, deps: Deps) -> dict[str, Any]:
    cookie = request.cookies.get(auth.GUEST_COOKIE)
    session = deps.store.web_session(auth.digest(cookie), deps.clock()) if cookie else None
    if session is None or session.kind != "guest":
        raise Problem("unauthenticated", "tap your band on the phone to log in")
    return {"guest": session.subject, "name": deps.store.guest_name(session.subject)}
