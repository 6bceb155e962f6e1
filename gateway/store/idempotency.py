"""Idempotency keys: the answer a request got, kept in the transaction that did its work.

A request with a key first claims it (INSERT .. ON CONFLICT DO NOTHING): the one that inserts
does the work and stores its answer before committing; any other holding the same key waits
for that commit (PostgreSQL's unique index; SQLite's one write lock) and then reads the answer.
So N copies racing in threads or processes post once and all get the same status and body.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select, update

from .engine import insert
from .schema import idempotency_keys

_CLAIMED = -1  # the status of a claim whose answer is not written yet (never committed so)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: str


@dataclass(frozen=True, slots=True)
class Stored:
    fingerprint: str
    answer: Answer


def claim(
    conn: Connection, principal: str, key: str, fingerprint: str, now_ms: int
) -> Stored | None:
    """Take the key for this request (None), or the request and answer that took it first."""
    stmt = (
        insert(conn.dialect.name, idempotency_keys)
        .on_conflict_do_nothing(index_elements=["principal", "key"])
        .returning(idempotency_keys.c.key)
    )
    row = {
        "principal": principal,
        "key": key,
        "fingerprint": fingerprint,
        "status": _CLAIMED,
        "body": "",
        "created_ms": now_ms,
    }
    if conn.execute(stmt, row).first() is not None:
        return None
    query = select(idempotency_keys).where(
        idempotency_keys.c.principal == principal, idempotency_keys.c.key == key
    )
    found = conn.execute(query).one()
    return Stored(found.fingerprint, Answer(found.status, found.body))


def answer(conn: Connection, principal: str, key: str, answered: Answer) -> None:
    stmt = (
        update(idempotency_keys)
        .where(idempotency_keys.c.principal == principal, idempotency_keys.c.key == key)
        .values(status=answered.status, body=answered.body)
    )
    conn.execute(stmt)
