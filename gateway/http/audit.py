"""The audit log's writer: every request that asks to change something (POST, PUT, PATCH,
DELETE), answered or refused, becomes one entry: who (the token or staff member, or
"anonymous"), what (the route and its path parameters, and what the route chose to add), when,
from where (the client's address) and the status it was answered with. Nothing in the API
changes or removes an entry; the database refuses it too."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from ..store.audit import AuditEntry
from .deps import Api, principal_of

log = logging.getLogger("bandlink.http")
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def note(request: Request, **detail: object) -> None:
    """What a route adds to its audit entry (never a secret: no PIN, password or token)."""
    request.state.audit_detail = detail


async def audit_writes(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    if request.method not in _WRITES:
        return await call_next(request)
    try:
        response = await call_next(request)
    except Exception:
        # A crash is answered 500 by the handler outside this middleware: recorded as that.
        await _record(request, 500)
        raise
    await _record(request, response.status_code)
    return response


async def _record(request: Request, status: int) -> None:
    api: Api = request.app.state.api
    entry = _entry(request, status, api.clock())
    try:
        await run_in_threadpool(api.store.audit, entry)
    except Exception:
        # The answer is given; a store that cannot take the entry is logged loudly.
        log.exception("audit entry not written: %s", entry)


def _entry(request: Request, status: int, now_ms: int) -> AuditEntry:
    principal = principal_of(request)
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    params = request.path_params
    detail = getattr(request.state, "audit_detail", None)
    return AuditEntry(
        at_ms=now_ms,
        actor=principal.id if principal else "anonymous",
        role=principal.role if principal else "-",
        action=f"{request.method} {path}",
        status=status,
        target=json.dumps(params, sort_keys=True) if params else None,
        source=request.client.host if request.client else None,
        detail=json.dumps(detail, sort_keys=True) if detail else None,
    )
