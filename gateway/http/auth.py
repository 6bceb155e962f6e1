"""Who may call: bearer tokens (made once by ``bandlink token create``, shown once, kept as a
SHA-256) for tills and scripts; staff who log in with a password and get a session cookie; and
guests, whose band's tap on a phone opens a session of their own. Roles: admin (everything),
desk (guests' money, bands), operator (rides: the photo points and gates, coming), till (its
outlet's charges)."""

from __future__ import annotations

import hashlib
import os
import secrets
from typing import Final, Literal

from fastapi import Request, Response

from ..store.staff import StaffMember
from ..store.tokens import Token

ROLES: Final = ("till", "desk", "operator", "admin")
_PREFIX: Final = "blt_"
STAFF_COOKIE: Final = "bl_staff"
GUEST_COOKIE: Final = "bl_guest"
STAFF_SESSION_MS: Final = 8 * 3600 * 1000  # a shift
GUEST_SESSION_MS: Final = 24 * 3600 * 1000  # a day at the venue
# After this many wrong passwords in a row a login is locked for LOCK_MS: a guesser gets 5
# tries per 5 minutes (about 60 an hour, against a password of 12 characters or more); an owner
# who mistyped waits a few minutes.
LOGIN_ATTEMPTS: Final = 5
LOCK_MS: Final = 5 * 60 * 1000


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def staff_principal(member: StaffMember, since_ms: int) -> Token:
    """A staff member as a caller: the same shape as a token's holder, so roles, idempotency
    keys and the audit log treat both alike."""
    return Token("staff:" + member.id, member.role, member.outlet, since_ms)


def new_session_secret() -> str:
    """A cookie's value: only its digest is stored."""
    return "bls_" + secrets.token_urlsafe(32)


_SESSION_MS = {STAFF_COOKIE: STAFF_SESSION_MS, GUEST_COOKIE: GUEST_SESSION_MS}


def set_session_cookie(
    response: Response,
    request: Request,
    name: str,
    secret: str,
    *,
    same_site: Literal["lax", "strict"],
) -> None:
    """A session's cookie: out of scripts' reach, for as long as its session lives, and sent
    only over https when the gateway is reached over https."""
    response.set_cookie(
        name,
        secret,
        max_age=_SESSION_MS[name] // 1000,
        httponly=True,
        samesite=same_site,
        secure=request.url.scheme == "https",
    )


def check_role(role: str, outlet: str | None) -> None:
    """The rules a token's or a staff member's role and outlet follow."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if role == "till" and not outlet:
        raise ValueError("a till names its outlet (--outlet NAME)")
    if role != "till" and outlet:
        raise ValueError("only a till belongs to an outlet")


def new_token(role: str, outlet: str | None, now_ms: int) -> tuple[str, Token]:
    """A fresh token: its secret (to show once) and its record (to store, with its digest)."""
    check_role(role, outlet)
    secret = _PREFIX + secrets.token_urlsafe(32)
    return secret, Token("tok_" + os.urandom(6).hex(), role, outlet, now_ms)
