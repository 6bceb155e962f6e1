"""The audit log: every operator action, who, what, when, from where, and how it was answered.
Rows are only ever added (the database's triggers refuse the rest). An HTTP request's entry is
written after its answer, in a transaction of its own (gateway/http/audit.py); the command
line's, in the transaction of what it did."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, insert, select

from .schema import audit_log


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at_ms: int
    actor: str  # token:<id> | staff:<login> | cli | guest:<id>
    role: str
    action: str
    status: int
    target: str | None = None
    source: str | None = None
    detail: str | None = None  # JSON, never a secret
    seq: int | None = None  # set when read back


def record(conn: Connection, entry: AuditEntry) -> None:
    row = {
        "at_ms": entry.at_ms,
        "actor": entry.actor,
        "role": entry.role,
        "action": entry.action,
        "status": entry.status,
        "target": entry.target,
        "source": entry.source,
        "detail": entry.detail,
    }
    conn.execute(insert(audit_log), row)


def since(conn: Connection, seq: int, limit: int) -> list[AuditEntry]:
    """Entries after ``seq``, oldest first."""
    query = select(audit_log).where(audit_log.c.seq > seq).order_by(audit_log.c.seq).limit(limit)
    return [
        AuditEntry(
            at_ms=row.at_ms,
            actor=row.actor,
            role=row.role,
            action=row.action,
            status=row.status,
            target=row.target,
            source=row.source,
            detail=row.detail,
            seq=row.seq,
        )
        for row in conn.execute(query)
    ]
