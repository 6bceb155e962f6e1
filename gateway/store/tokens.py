"""API tokens: who may call the HTTP API, as what. Only a SHA-256 of each token is kept."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from .engine import insert
from .schema import api_tokens


@dataclass(frozen=True, slots=True)
class Token:
    id: str
    role: str  # till | desk | admin
    outlet: str | None
    created_ms: int
    revoked_ms: int | None = None


def add(conn: Connection, token: Token, digest: str) -> None:
    row = {
        "id": token.id,
        "hash": digest,
        "role": token.role,
        "outlet": token.outlet,
        "created_ms": token.created_ms,
    }
    conn.execute(insert(conn.dialect.name, api_tokens), row)


def by_digest(conn: Connection, digest: str) -> Token | None:
    """The live token with this hash, if any."""
    query = select(api_tokens).where(api_tokens.c.hash == digest, api_tokens.c.revoked_ms.is_(None))
    row = conn.execute(query).first()
    if row is None:
        return None
    return Token(row.id, row.role, row.outlet, row.created_ms, row.revoked_ms)
