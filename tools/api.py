"""A client of the gateway's HTTP API (standard library only), for the till command, the demo
and tests; and ``create_token``, which writes a token straight into the store."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    content_type: str


class ApiClient:
    def __init__(self, url: str, token: str | None, timeout: float = 70) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None, *, key: str | None = None) -> Reply:
        """One request; ``key`` is its Idempotency-Key (money-moving requests need one)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        if key is not None:
            request.add_header("Idempotency-Key", key)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return _reply(response.status, response.read(), response.headers)
        except urllib.error.HTTPError as err:
            return _reply(err.code, err.read(), err.headers)

    def move(self, method: str, path: str, body: Any = None) -> Reply:
        """A money-moving request under a fresh Idempotency-Key."""
        return self.call(method, path, body, key=str(uuid.uuid4()))


def _reply(status: int, raw: bytes, headers: Any) -> Reply:
    kind = headers.get("Content-Type", "") if headers else ""
    if "json" not in kind:
        return Reply(status, raw.decode(errors="replace"), kind)
    return Reply(status, json.loads(raw) if raw else None, kind)


def add_staff(
    db_url: str, *, login: str, name: str, role: str, outlet: str | None, password: str | None
) -> str | None:
    """A staff member in the store at db_url, their password hashed with the gateway's secret
    key (its settings: BANDLINK_SECRET_KEY); the password made for them, if none was given.
    The audit log says the command line added them."""
    import secrets
    import time

    from bandlink.gateway.core.payments.pinhash import PinHasher
    from bandlink.gateway.http.auth import check_role
    from bandlink.gateway.settings import load_settings
    from bandlink.gateway.store import AuditEntry, StaffMember, Store

    check_role(role, outlet)
    made = None if password is not None else secrets.token_urlsafe(12)
    chosen = password if password is not None else made
    assert chosen is not None
    settings = load_settings(broker="mqtt://unused", db=db_url)
    hashed = PinHasher(settings.secret_key.get_secret_value().encode()).hash_password(
        "staff:" + login, chosen
    )
    now = time.time_ns() // 1_000_000
    detail = json.dumps({"role": role, "name": name})
    entry = AuditEntry(now, "cli", "admin", "staff add", 0, target=login, detail=detail)
    store = Store(db_url)
    try:
        store.migrate()
        store.add_staff(StaffMember(login, name, role, outlet, hashed), now, entry)
    finally:
        store.close()
    return made


def create_token(db_url: str, role: str, outlet: str | None) -> tuple[str, str]:
    """A new API token in the store at db_url: (its id, its secret, shown once)."""
    import time

    from bandlink.gateway.http.auth import digest, new_token
    from bandlink.gateway.store import Store

    secret, token = new_token(role, outlet, time.time_ns() // 1_000_000)
    store = Store(db_url)
    try:
        store.migrate()
        store.add_token(token, digest(secret))
    finally:
        store.close()
    return token.id, secret
