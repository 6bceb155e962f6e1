"""Bearer tokens: made once by ``bandlink token create``, shown once, kept as a SHA-256."""

from __future__ import annotations

import hashlib
import os
import secrets
from typing import Final

from ..store.tokens import Token

ROLES: Final = ("till", "desk", "admin")
_PREFIX: Final = "blt_"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token(role: str, outlet: str | None, now_ms: int) -> tuple[str, Token]:
    """A fresh token: its secret (to show once) and its record (to store, with its digest)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if role == "till" and not outlet:
        raise ValueError("a till token names its outlet (--outlet NAME)")
    if role != "till" and outlet:
        raise ValueError("only a till token belongs to an outlet")
    secret = _PREFIX + secrets.token_urlsafe(32)
    return secret, Token("tok_" + os.urandom(6).hex(), role, outlet, now_ms)
