"""Staff who log in with a password, and the sessions behind the pages' cookies (a staff
member's, or a guest's opened by a tap of their band). Only hashes are kept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, case, delete, insert, or_, select, update

from . import engine
from .schema import login_attempts, staff, web_sessions


@dataclass(frozen=True, slots=True)
class StaffMember:
    id: str
    name: str
    role: str
    outlet: str | None
    password_hash: str
    disabled_ms: int | None = None


@dataclass(frozen=True, slots=True)
class WebSession:
    kind: str  # staff | guest
    subject: str
    created_ms: int
    expires_ms: int


def add(conn: Connection, member: StaffMember, now_ms: int) -> None:
    if conn.scalar(select(staff.c.id).where(staff.c.id == member.id)) is not None:
        raise ValueError(f"staff {member.id!r} exists already")
    row = {
        "id": member.id,
        "name": member.name,
        "role": member.role,
        "outlet": member.outlet,
        "password_hash": member.password_hash,
        "created_ms": now_ms,
    }
    conn.execute(insert(staff), row)


def member(conn: Connection, staff_id: str) -> StaffMember | None:
    row = conn.execute(select(staff).where(staff.c.id == staff_id)).first()
    if row is None:
        return None
    return StaffMember(
        row.id,
        row.name,
        row.role,
        row.outlet,
        row.password_hash,
        disabled_ms=row.disabled_ms,
    )


def claim_login(conn: Connection, login: str, now_ms: int) -> int | None:
    """Count one more attempt at ``login`` before its password is checked, in one statement
    (so parallel guesses are each counted); the count, or None while the login is locked. A
    lock that has run out starts the count again."""
    statement = _CLAIM.get(conn.dialect.name)
    if statement is None:
        ins = engine.insert(conn.dialect.name, login_attempts)
        current = login_attempts.c
        statement = _CLAIM[conn.dialect.name] = ins.on_conflict_do_update(
            index_elements=["login"],
            set_={
                "failures": case(
                    (current.locked_until_ms.is_(None), current.failures + 1), else_=1
                ),
                "locked_until_ms": None,
            },
            where=or_(
                current.locked_until_ms.is_(None), current.locked_until_ms <= bindparam("now")
            ),
        ).returning(current.failures)
    row = conn.execute(statement, {"login": login, "failures": 1, "now": now_ms}).first()
    return None if row is None else int(row.failures)


_CLAIM: dict[str, Any] = {}  # the statement, per dialect


def lock_login(conn: Connection, login: str, until_ms: int) -> None:
    query = update(login_attempts).where(login_attempts.c.login == login)
    conn.execute(query.values(locked_until_ms=until_ms))


def clear_login(conn: Connection, login: str) -> None:
    conn.execute(delete(login_attempts).where(login_attempts.c.login == login))


def login_locked_until(conn: Connection, login: str) -> int | None:
    query = select(login_attempts.c.locked_until_ms).where(login_attempts.c.login == login)
    value = conn.scalar(query)
    return None if value is None else int(value)


def open_session(
    conn: Connection,
    digest: str,
    session: WebSession,
    source: str | None,
    band: bytes | None = None,
) -> None:
    row = {
        "band": band,
        "digest": digest,
        "kind": session.kind,
        "subject": session.subject,
        "created_ms": session.created_ms,
        "expires_ms": session.expires_ms,
        "source": source,
    }
    conn.execute(insert(web_sessions), row)


def session(conn: Connection, digest: str, now_ms: int) -> WebSession | None:
    query = select(web_sessions).where(
        web_sessions.c.digest == digest, web_sessions.c.expires_ms > now_ms
    )
    row = conn.execute(query).first()
    if row is None:
        return None
    return WebSession(row.kind, row.subject, row.created_ms, row.expires_ms)


def close_session(conn: Connection, digest: str) -> None:
    conn.execute(delete(web_sessions).where(web_sessions.c.digest == digest))


def close_sessions_of_band(conn: Connection, uid: bytes) -> None:
    """A blocked band's taps opened sessions for whoever held it: they end with the block."""
    conn.execute(delete(web_sessions).where(web_sessions.c.band == uid))
