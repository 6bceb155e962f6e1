"""Staff who log in with a password, and the sessions behind the pages' cookies (a staff
member's, or a guest's opened by a tap of their band). Only hashes are kept."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, delete, insert, select, update

from .schema import staff, web_sessions


@dataclass(frozen=True, slots=True)
class StaffMember:
    id: str
    name: str
    role: str
    outlet: str | None
    password_hash: str
    failed_logins: int = 0
    locked_until_ms: int | None = None
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
        failed_logins=row.failed_logins,
        locked_until_ms=row.locked_until_ms,
        disabled_ms=row.disabled_ms,
    )


def note_login(conn: Connection, staff_id: str, *, ok: bool, lock_until_ms: int | None) -> None:
    """A login's outcome: a success clears the count; a failure adds one, and locks the
    account until ``lock_until_ms`` when given."""
    values: dict[str, object]
    if ok:
        values = {"failed_logins": 0, "locked_until_ms": None}
    else:
        values = {"failed_logins": staff.c.failed_logins + 1}
        if lock_until_ms is not None:
            values = {"failed_logins": 0, "locked_until_ms": lock_until_ms}
    conn.execute(update(staff).where(staff.c.id == staff_id).values(values))


def open_session(conn: Connection, digest: str, session: WebSession, source: str | None) -> None:
    row = {
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
