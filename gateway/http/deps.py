"""What every route depends on, in one place: the gateway's parts (``Api``), who is calling
(``caller``, from the bearer token), what they may do (``allow``), and the Idempotency-Key
that makes a money-moving request safe to repeat (``run_once``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from ..core.handler import Core, Outgoing
from ..core.payments.operations import PaymentError
from ..store import Answer, Books, KeyReused, Store
from ..store.tokens import Token
from . import auth
from .problems import Problem, from_payment, stored_response

KEY_MAX = 255
# Refusals that depend on the moment, not the request: not kept under the key.
TRANSIENT = frozenset({"reader-busy"})


@dataclass
class Api:
    """The gateway's parts the HTTP side uses; ``publish`` sends to readers (the MQTT adapter)."""

    store: Store
    core: Core
    publish: Callable[[Sequence[Outgoing]], None]
    clock: Callable[[], int]
    currency: str
    charge_timeout_ms: int


def api(request: Request) -> Api:
    found: Api = request.app.state.api
    return found


_bearer = HTTPBearer(auto_error=False, description="a token from `bandlink token create`")


_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def caller(
    request: Request,
    deps: Annotated[Api, Depends(api)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Token:
    """Who is calling: a bearer token's holder, or a staff member by their session cookie.
    Kept on the request for the audit log."""
    if credentials is not None and credentials.scheme.lower() == "bearer":
        token = deps.store.token(auth.digest(credentials.credentials))
        if token is None:
            raise Problem("unauthenticated", "the token is unknown or revoked")
    else:
        token = _staff_by_cookie(request, deps)
    request.state.principal = token
    return token


def _staff_by_cookie(request: Request, deps: Api) -> Token:
    cookie = request.cookies.get(auth.STAFF_COOKIE)
    if not cookie:
        raise Problem("unauthenticated", "send Authorization: Bearer <token>, or log in")
    session = deps.store.web_session(auth.digest(cookie), deps.clock())
    member = deps.store.staff_member(session.subject) if session else None
    if session is None or session.kind != "staff" or member is None or member.disabled_ms:
        raise Problem("unauthenticated", "the session has ended: log in again")
    if request.method in _UNSAFE and not same_origin(request):
        # A page elsewhere posting with this browser's cookie (the cookie is SameSite=Strict
        # too; this holds for browsers that ignore that).
        raise Problem("forbidden", "a cross-site request with a session cookie")
    return auth.staff_principal(member, session.created_ms)


def same_origin(request: Request) -> bool:
    """Whether the browser says the request comes from a page of this gateway (no Origin: not
    a browser's cross-site request)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin == f"{request.url.scheme}://{request.url.netloc}"


def principal_of(request: Request) -> Token | None:
    found: Token | None = getattr(request.state, "principal", None)
    return found


def allow(*roles: str) -> Callable[[Token], Token]:
    """A dependency admitting only tokens of these roles (admin is always admitted)."""

    def check(token: Annotated[Token, Depends(caller)]) -> Token:
        if token.role != "admin" and token.role not in roles:
            raise Problem("forbidden", f"a {token.role} token may not do this")
        return token

    return check


def idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="any unique string per operation (a UUID); a repeat gets the first answer",
        ),
    ] = None,
) -> str:
    if not key or len(key) > KEY_MAX:
        raise Problem("idempotency-key-required", f"send an Idempotency-Key of 1..{KEY_MAX} chars")
    return key


def run_once(
    deps: Api,
    token: Token,
    key: str,
    *,
    request: Request,
    body: BaseModel | None,
    work: Callable[[Books], tuple[int, dict[str, Any]]],
) -> JSONResponse:
    """Do ``work`` once for (token, key), in one transaction with the stored answer; a repeat
    gets that answer. A refusal (PaymentError) is an answer too, stored and repeated like a
    success, and what it began is undone by its savepoint; except a refusal that says "not
    now" (TRANSIENT): nothing is stored, and the same request may succeed later."""
    asked = [request.method, request.url.path, body.model_dump() if body else None]
    fingerprint = hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()

    def attempt(books: Books) -> Answer:
        try:
            with books.savepoint():
                status, answer = work(books)
        except PaymentError as err:
            if err.kind in TRANSIENT:
                raise  # rolls back the key's claim with the rest
            problem = from_payment(err)
            status, answer = problem.status, problem.body()
        return Answer(status, json.dumps(answer))

    try:
        answered = deps.store.once(token.id, key, fingerprint, deps.clock(), attempt)
    except KeyReused:
        raise Problem(
            "idempotency-key-reused", "this Idempotency-Key came with another request"
        ) from None
    return stored_response(answered.status, answered.body)
