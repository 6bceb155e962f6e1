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


def caller(
    deps: Annotated[Api, Depends(api)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Token:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Problem("unauthenticated", "send Authorization: Bearer <token>")
    token = deps.store.token(auth.digest(credentials.credentials))
    if token is None:
        raise Problem("unauthenticated", "the token is unknown or revoked")
    return token


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
