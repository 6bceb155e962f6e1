"""Staff log in with a password and get a session cookie (for the pages to come, and the API);
the audit log, for admins."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from ...core.payments.pinhash import PASSWORD_MIN, PinHasher
from ...store import WebSession
from ...store.tokens import Token
from .. import auth
from ..audit import note
from ..deps import Api, allow, api, caller
from ..problems import Problem, documented
from ..schemas import LoginIn

router = APIRouter(tags=["staff"])
Deps = Annotated[Api, Depends(api)]
# Checked when the login is unknown, so an unknown login costs what a wrong password does.
_NOBODY = "staff:-"


@router.post(
    "/v1/login",
    summary="Log in with a password: sets the session cookie",
    responses=documented("login-locked"),
)
def login(body: LoginIn, request: Request, deps: Deps) -> JSONResponse:
    note(request, login=body.login)
    now = deps.clock()
    # Counted before the slow check, whether or not anybody has this login: parallel guesses
    # each use an attempt, and a name that does not exist locks like one that does.
    attempt = deps.store.claim_login(body.login, now)
    if attempt is None or attempt > auth.LOGIN_ATTEMPTS:
        raise Problem("login-locked", "too many wrong passwords; wait a few minutes")
    member = deps.store.staff_member(body.login)
    stored = member.password_hash if member else _decoy(deps.core.pins)
    ok = deps.core.pins.verify(stored, "staff:" + body.login, body.password)
    ok = ok and member is not None and not member.disabled_ms
    lock = now + auth.LOCK_MS if not ok and attempt >= auth.LOGIN_ATTEMPTS else None
    deps.store.end_login(body.login, ok=ok, lock_until_ms=lock)
    if not ok or member is None:
        raise Problem("unauthenticated", "wrong login or password")
    secret = auth.new_session_secret()
    session = WebSession("staff", member.id, now, now + auth.STAFF_SESSION_MS)
    source = request.client.host if request.client else None
    deps.store.open_session(auth.digest(secret), session, source=source)
    request.state.principal = auth.staff_principal(member, now)
    response = JSONResponse({"login": member.id, "name": member.name, "role": member.role})
    auth.set_session_cookie(response, request, auth.STAFF_COOKIE, secret, same_site="strict")
    return response


@lru_cache(maxsize=4)
def _decoy(pins: PinHasher) -> str:
    return pins.hash_password(_NOBODY, "-" * PASSWORD_MIN)


@router.post("/v1/logout", summary="End this session")
def logout(request: Request, token: Annotated[Token, Depends(caller)], deps: Deps) -> JSONResponse:
    del token
    cookie = request.cookies.get(auth.STAFF_COOKIE)
    if cookie:
        deps.store.close_session(auth.digest(cookie))
    response = JSONResponse({"logged_out": True})
    response.delete_cookie(auth.STAFF_COOKIE)
    return response


@router.get("/v1/whoami", summary="Who this token or session is")
def whoami(token: Annotated[Token, Depends(caller)]) -> dict[str, Any]:
    return {"id": token.id, "role": token.role, "outlet": token.outlet}


@router.get(
    "/v1/audit",
    summary="The audit log, oldest first: who did what, when, from where",
    responses=documented("forbidden"),
)
def audit_log(
    token: Annotated[Token, Depends(allow("admin"))],
    deps: Deps,
    after: Annotated[int, Query(ge=0, description="entries after this seq")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    del token
    entries = deps.store.audit_since(after, limit)
    return {
        "entries": [
            {
                "seq": e.seq,
                "at_ms": e.at_ms,
                "actor": e.actor,
                "role": e.role,
                "action": e.action,
                "target": e.target,
                "status": e.status,
                "source": e.source,
                "detail": e.detail,
            }
            for e in entries
        ]
    }
