"""Who may use a broker, and for what: the identities and access rules of a broker directory.

Two files in the broker's own directory (``tools/broker.py`` points Mosquitto at the second):

- ``passwords``: one ``user:hash`` line per identity, hashed by ``mosquitto_passwd`` (PBKDF2-
  SHA512, salted), so no password is kept in the clear beside the broker. ``mosquitto_passwd
  -U`` hashes every line of the file it is given, hashed or not, so new lines are hashed in a
  file of their own and then merged in.
- ``dynamic-security.json``: the configuration of Mosquitto's dynamic-security plugin, derived
  from the password file alone (the same hashes, a role per identity), so it is rewritten whole
  whenever an identity is added. Not Mosquitto's plain ``acl_file``: that checks publishes and
  deliveries but no SUBSCRIBE, so a reader's identity could join the gateways' share group and
  have the broker hand it (and then drop, unread) one tap in N+1 (measured on 2.0.11). The
  plugin refuses such a subscription outright.

Every role denies by default. A reader (user name = reader id) publishes only its own ``evt``,
``birth`` and ``death``; subscribes to and receives only its own ``res``, ``cfg``, ``cmd`` and
the gateways' states. A gateway (user name ``<gateway id>@gateway``, which no reader id can be)
joins share groups on every reader's ``evt``, ``birth`` and ``death`` (only gateways can),
publishes results, configurations and commands to every reader, and its own state. Two kinds
exist only for the tools: ``<name>@harness``, allowed everything on bandlink's and test topics
(test harnesses that play a gateway service or drive a broker), and ``<name>@control``, which
may only manage the plugin (``$CONTROL/dynamic-security``: how ``MosquittoBroker`` adds an
identity while running). ``bandlink provision`` makes readers and gateways only.

The plugin reads its file at start only; a running broker is told of new identities through
its control topic (``MosquittoBroker`` does) or restarted.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bandlink.gateway.settings import GATEWAY_ID_PATTERN as ID_PATTERN
from bandlink.protocol import topics

GATEWAY_USER_SUFFIX = "@gateway"
HARNESS_USER_SUFFIX = "@harness"
CONTROL_USER_SUFFIX = "@control"
PASSWORD_FILE = "passwords"
DYNSEC_FILE = "dynamic-security.json"
DYNSEC_TOPIC = "$CONTROL/dynamic-security/v1"
_PASSWORD_BYTES = 18  # 24 URL-safe characters, 144 bits


class AccessError(RuntimeError):
    """An identity could not be made: a bad id, or mosquitto_passwd missing or failing."""


@dataclass(frozen=True, slots=True)
class Login:
    """One broker identity's credentials. ``repr`` leaves the password out (logs, tracebacks)."""

    user: str
    password: str

    def __repr__(self) -> str:
        return f"Login(user={self.user!r}, password=***)"


def checked_id(kind: str, value: str) -> str:
    """A reader or gateway id, as SPEC.md allows it (it becomes a topic level and a user name)."""
    if not ID_PATTERN.fullmatch(value):
        raise AccessError(f"{kind} {value!r}: 1 to 32 ASCII letters, digits, '-', '_' or '.'")
    return value


def reader_user(reader_id: str) -> str:
    """A reader's broker user name: its reader id (SPEC.md, Transport)."""
    return checked_id("reader id", reader_id)


def gateway_user(gateway_id: str) -> str:
    """A gateway process's broker user name: never a valid reader id, so never a reader's."""
    return checked_id("gateway id", gateway_id) + GATEWAY_USER_SUFFIX


def gateway_id_of(user: str) -> str | None:
    """The gateway id of a gateway's user name; None for anyone else's."""
    return user.removesuffix(GATEWAY_USER_SUFFIX) if user.endswith(GATEWAY_USER_SUFFIX) else None


def harness_user(name: str) -> str:
    """A test harness's user name (tools only: never provisioned)."""
    return checked_id("harness name", name) + HARNESS_USER_SUFFIX


def control_user(name: str) -> str:
    """The user name of a client that manages the broker's identities (tools only)."""
    return checked_id("control name", name) + CONTROL_USER_SUFFIX


def check_user(user: str, *, tools: bool = False) -> str:
    """``user`` if it names a reader or gateway identity, or with ``tools`` also a harness or
    control one (which may do anything: the test and demo tools' own, never a venue's); else
    AccessError."""
    kinds = [(GATEWAY_USER_SUFFIX, "gateway id")]
    if tools:
        kinds += [(HARNESS_USER_SUFFIX, "harness name"), (CONTROL_USER_SUFFIX, "control name")]
    for suffix, kind in kinds:
        if user.endswith(suffix):
            checked_id(kind, user.removesuffix(suffix))
            return user
    return checked_id("reader id", user)


def _acl(kind: str, topic: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "priority": 0, "allow": True}


def _reads(*filters: str) -> list[dict[str, Any]]:
    """Subscribe to ``filters`` (as written, or narrower) and receive what they match."""
    return [_acl(k, f) for f in filters for k in ("subscribePattern", "publishClientReceive")]


def _sends(*patterns: str) -> list[dict[str, Any]]:
    return [_acl("publishClientSend", p) for p in patterns]


def acls(user: str) -> list[dict[str, Any]]:
    """The access rules of identity ``user``, as dynamic-security ACL entries."""
    gateway = gateway_id_of(user)
    if gateway is not None:
        every = [
            topics.reader_topic("+", kind) for kind in (topics.EVT, topics.BIRTH, topics.DEATH)
        ]
        shared = ["$share/+/" + topic for topic in every]
        answers = [topics.reader_topic("+", kind) for kind in (topics.RES, topics.CFG, topics.CMD)]
        return [
            *(_acl("subscribePattern", f) for f in (*shared, *every)),
            *(_acl("publishClientReceive", t) for t in every),
            *_sends(*answers, topics.gateway_state_topic(gateway)),
            *_reads(topics.GATEWAY_STATES),
        ]
    if user.endswith(HARNESS_USER_SUFFIX):
        return [*_reads("#"), *_sends("#")]
    if user.endswith(CONTROL_USER_SUFFIX):
        return [*_reads(DYNSEC_TOPIC + "/#"), *_sends(DYNSEC_TOPIC)]
    own = [topics.reader_topic(user, kind) for kind in (topics.EVT, topics.BIRTH, topics.DEATH)]
    mine = [topics.reader_topic(user, kind) for kind in (topics.RES, topics.CFG, topics.CMD)]
    return [*_sends(*own), *_reads(*mine, topics.GATEWAY_STATES)]


def dynsec_client(user: str, hashed: str) -> dict[str, Any]:
    """The plugin's record of a client, from mosquitto_passwd's ``$7$<iterations>$<salt>$<hash>``
    (PBKDF2-SHA512: the plugin's own scheme, so the hash carries over as it is)."""
    parts = hashed.split("$")  # "", "7", iterations, salt, hash
    if len(parts) != 5 or parts[:2] != ["", "7"] or not parts[2].isdigit():
        raise AccessError(f"{user}: not a mosquitto_passwd PBKDF2-SHA512 hash")
    iterations, salt, digest = parts[2:]
    return {
        "username": user,
        "password": digest,
        "salt": salt,
        "iterations": int(iterations),
        "roles": [{"rolename": user}],
    }


def dynsec_config(entries: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The dynamic-security plugin's configuration for (user, hash) ``entries``."""
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": [dynsec_client(user, hashed) for user, hashed in entries],
        "groups": [],
        "roles": [{"rolename": user, "acls": acls(user)} for user, _ in entries],
    }


def write_private(path: Path, text: str) -> None:
    """``text`` into ``path``, readable by its owner only from the first byte on (a password
    file, a config with credentials), replacing any old file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(path.name + ".tmp")
    staged.unlink(missing_ok=True)
    staged.touch(mode=0o600)
    staged.write_text(text)
    staged.replace(path)


def find_mosquitto_passwd() -> str:
    found = shutil.which("mosquitto_passwd") or shutil.which("mosquitto_passwd", path="/usr/bin")
    if found is None:
        raise AccessError("mosquitto_passwd not found: `apt-get install -y mosquitto`")
    return found


class BrokerAccess:
    """The password file and access rules in ``directory``: ``add()`` identities, ``users()``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.password_path = self.directory / PASSWORD_FILE
        self.dynsec_path = self.directory / DYNSEC_FILE

    def users(self) -> list[str]:
        """User names in the password file, in its order."""
        return [user for user, _ in self._entries()]

    def ensure(self) -> None:
        """Both files exist (an empty password file lets nobody in) and agree."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.password_path.exists():
            write_private(self.password_path, "")
        self._write_dynsec()

    def add_reader(self, reader_id: str) -> Login:
        return self.add([reader_user(reader_id)])[0]

    def add_gateway(self, gateway_id: str) -> Login:
        return self.add([gateway_user(gateway_id)])[0]

    def add(self, users: Sequence[str], *, tools: bool = False) -> list[Login]:
        """A fresh random password for each of ``users`` (replacing any it had), hashed into the
        password file; the plugin's configuration rewritten. The passwords are returned, and
        kept nowhere else. Harness and control identities only with ``tools`` (check_user)."""
        for user in users:
            check_user(user, tools=tools)
        logins = [Login(user, secrets.token_urlsafe(_PASSWORD_BYTES)) for user in users]
        self.directory.mkdir(parents=True, exist_ok=True)
        hashed = self._hash(logins)
        kept = [(u, h) for u, h in self._entries() if u not in hashed]
        lines = "".join(f"{u}:{h}\n" for u, h in [*kept, *hashed.items()])
        write_private(self.password_path, lines)
        self._write_dynsec()
        return logins

    def _hash(self, logins: Sequence[Login]) -> dict[str, str]:
        """user -> mosquitto_passwd's hash of its password, for ``logins``."""
        staged = self.directory / (PASSWORD_FILE + ".new")
        write_private(staged, "".join(f"{x.user}:{x.password}\n" for x in logins))
        try:
            done = subprocess.run(
                [find_mosquitto_passwd(), "-U", str(staged)],
                check=False,
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                raise AccessError(f"mosquitto_passwd -U failed: {done.stderr.strip()}")
            return dict(_parse(staged.read_text()))
        finally:
            staged.unlink(missing_ok=True)

    def _entries(self) -> list[tuple[str, str]]:
        try:
            return _parse(self.password_path.read_text())
        except FileNotFoundError:
            return []

    def _write_dynsec(self) -> None:
        config = dynsec_config(self._entries())
        write_private(self.dynsec_path, json.dumps(config, indent=1) + "\n")


def _parse(text: str) -> list[tuple[str, str]]:
    entries = []
    for line in text.splitlines():
        user, sep, secret = line.partition(":")
        if sep and user:
            entries.append((user, secret))
    return entries
