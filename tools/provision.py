"""``bandlink provision``: give a reader or a gateway process its own broker identity.

``provision_reader`` makes (or replaces) the identity in a broker directory's password file
(hashed by ``mosquitto_passwd``) and access rules (``tools/access.py``) and writes the
credentials into the reader's ``config.json`` (``broker: {host, port, user, password}``, as
the firmware reads it); a pos reader (``role="pos"``, or a config.json that says so) also gets
its PIN key (``pin_key``), derived from the gateway's secret key as the gateway derives it
(``reader_pin_key``), so the gateway opens its PIN blocks without a table of keys, and the
venue's offline PIN key (``offline_pin_key``), to check PINs against its band list offline;
``provision_gateway`` does the same for a gateway process, into its TOML settings file
(``broker_user``, ``broker_password`` and its ``gateway_id``, which its identity is bound to).
Everything else in an existing file is kept. Both files end up readable by their owner only,
and the password is written nowhere else: never printed, never on a command line.

A broker already running from that directory takes the new identity when it next starts: its
access plugin reads the directory at start only.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from bandlink.gateway.core.payments.pin import offline_pin_key, reader_pin_key
from bandlink.gateway.settings import parse_broker_url

from .access import AccessError, BrokerAccess, Login, write_private

# Where the command takes the gateway's secret key from: never a flag, so never on a command
# line or in a shell history.
SECRET_KEY_ENV = "BANDLINK_SECRET_KEY"
ROLES = ("gate", "pos")


def provision_reader(
    broker_dir: Path,
    reader_id: str,
    config_path: Path,
    *,
    broker_url: str | None = None,
    role: str | None = None,
    secret_key: str | None = None,
) -> Login:
    """A fresh identity for ``reader_id`` in ``broker_dir``, written into ``config_path`` (made
    if absent, with the reader id and, given ``broker_url``, the broker's host and port).

    ``role`` is written into the file when given; a pos reader (by ``role`` or by its file)
    also gets its ``pin_key`` and ``offline_pin_key``, which need ``secret_key``, the gateway's
    secret key (its ``secret_key`` setting): without it no pos reader is made."""
    config: dict[str, Any] = json.loads(config_path.read_text()) if config_path.exists() else {}
    if config.get("reader", reader_id) != reader_id:
        raise AccessError(f"{config_path} is the config of {config['reader']!r}, not {reader_id!r}")
    if role is not None and role not in ROLES:
        raise AccessError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    role = role or config.get("role")
    pin_keys: dict[str, str] = {}
    if role == "pos":
        if not secret_key:
            raise AccessError(
                f"a pos reader needs its PIN key: set {SECRET_KEY_ENV} to the gateway's secret key"
            )
        pin_keys["pin_key"] = reader_pin_key(secret_key.encode(), reader_id).hex()
        pin_keys["offline_pin_key"] = offline_pin_key(secret_key.encode()).hex()
    broker = dict(config.get("broker") or {})
    if broker_url is not None:
        host, port = parse_broker_url(broker_url)
        broker |= {"host": host, "port": port}
    login = BrokerAccess(broker_dir).add_reader(reader_id)
    config |= {
        "reader": reader_id,
        "broker": broker | {"user": login.user, "password": login.password},
    }
    if role is not None:
        config["role"] = role
    for name in ("pin_key", "offline_pin_key"):
        if name in pin_keys:
            config[name] = pin_keys[name]
        else:
            config.pop(name, None)  # a gate has no use for one
    write_private(config_path, json.dumps(config, indent=2) + "\n")
    return login


def provision_gateway(
    broker_dir: Path, gateway_id: str, settings_path: Path, *, broker_url: str | None = None
) -> Login:
    """A fresh identity for gateway process ``gateway_id`` in ``broker_dir``, written into the
    TOML settings file ``settings_path`` (made if absent; ``broker`` set given ``broker_url``)."""
    text = settings_path.read_text() if settings_path.exists() else ""
    current = _flat_toml(settings_path, text)
    if current.get("gateway_id", gateway_id) != gateway_id:
        raise AccessError(
            f"{settings_path} is the settings of gateway {current['gateway_id']!r}, "
            f"not {gateway_id!r}"
        )
    if broker_url is not None:
        parse_broker_url(broker_url)
    login = BrokerAccess(broker_dir).add_gateway(gateway_id)
    values = {"gateway_id": gateway_id, "broker_user": login.user}
    values["broker_password"] = login.password
    if broker_url is not None:
        values["broker"] = broker_url
    keys = "|".join(values)
    kept = [line for line in text.splitlines() if not re.match(rf"\s*({keys})\s*=", line)]
    # json.dumps of these values (ASCII, no control characters) is a valid TOML basic string.
    lines = [*kept, *(f"{key} = {json.dumps(value)}" for key, value in values.items())]
    result = "\n".join(lines) + "\n"
    if {k: _flat_toml(settings_path, result).get(k) for k in values} != values:
        raise AccessError(
            f"{settings_path}: could not set {', '.join(values)} (multi-line values?)"
        )
    write_private(settings_path, result)
    return login


def _flat_toml(path: Path, text: str) -> dict[str, Any]:
    """The top-level keys of a gateway settings file, which has no tables."""
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise AccessError(f"{path}: not TOML: {err}") from None
    tables = [key for key, value in parsed.items() if isinstance(value, dict)]
    if tables:
        raise AccessError(f"{path}: gateway settings have no tables, found {', '.join(tables)}")
    return parsed


def run_provision(
    kind: str,
    ident: str,
    broker_dir: Path,
    config: Path,
    broker: str | None,
    *,
    role: str | None = None,
) -> int:
    """The command: provision, then say what was written where (not the password, nor the PIN
    key). A reader's PIN key comes from BANDLINK_SECRET_KEY."""
    try:
        if kind == "reader":
            secret = os.environ.get(SECRET_KEY_ENV)
            login = provision_reader(
                broker_dir, ident, config, broker_url=broker, role=role, secret_key=secret
            )
        elif role is not None:
            raise AccessError("--role is for readers")
        else:
            login = provision_gateway(broker_dir, ident, config, broker_url=broker)
    except (AccessError, ValueError) as err:
        print(f"provision {kind} {ident}: {err}")
        return 2
    access = BrokerAccess(broker_dir)
    print(f"{kind} {ident}: broker user {login.user!r} in {access.password_path} (hashed)")
    print(f"  access rules {access.dynsec_path}; credentials in {config} (mode 0600)")
    print("  a broker running from that directory takes it when restarted")
    return 0
