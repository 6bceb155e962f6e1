"""Who may use a broker, and for what: the password file and the ACL of a broker directory.

Both files live in the broker's own directory (``tools/broker.py`` points Mosquitto at them):

- ``passwords``: one ``user:hash`` line per identity, hashed by ``mosquitto_passwd`` (PBKDF2,
  salted), so no password is ever kept in the clear beside the broker. ``mosquitto_passwd -U``
  hashes every line of the file it is given, hashed or not, so new lines are hashed in a file of
  their own and then merged in.
- ``acl``: derived from the user names alone, so it is rewritten whole whenever one is added.
  Every identity gets the reader patterns (``%u`` = its user name): a reader (user name =
  reader id) publishes only its own ``evt``, ``birth`` and ``death`` and reads only its own
  ``res``, ``cfg``, ``cmd`` and the gateways' states. A gateway (user name
  ``<gateway id>@gateway``, which no reader id can be, so its patterns name no reader's topic)
  also reads every reader's ``evt``, ``birth`` and ``death`` (so only gateways can join the
  shared subscription), and publishes results, configurations, commands and its own state.

A running Mosquitto takes changed files on SIGHUP, without dropping anyone.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bandlink.gateway.settings import GATEWAY_ID_PATTERN as ID_PATTERN
from bandlink.protocol import topics

GATEWAY_USER_SUFFIX = "@gateway"
PASSWORD_FILE = "passwords"
ACL_FILE = "acl"
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
    """The gateway id of a gateway's user name; None for a reader's."""
    return user.removesuffix(GATEWAY_USER_SUFFIX) if user.endswith(GATEWAY_USER_SUFFIX) else None


def reader_acl() -> str:
    """ACL patterns every identity gets, written for readers (``%u``: the user name)."""
    own = topics.reader_topic("%u", "")
    lines = [f"pattern write {own}{kind}" for kind in (topics.EVT, topics.BIRTH, topics.DEATH)]
    lines += [f"pattern read {own}{kind}" for kind in (topics.RES, topics.CFG, topics.CMD)]
    lines.append(f"pattern read {topics.GATEWAY_STATES}")
    return "\n".join(lines) + "\n"


def gateway_acl(gateway_id: str) -> str:
    """The ACL of one gateway identity."""
    every = topics.reader_topic("+", "")
    lines = [f"user {gateway_user(gateway_id)}"]
    lines += [f"topic read {every}{kind}" for kind in (topics.EVT, topics.BIRTH, topics.DEATH)]
    lines += [f"topic write {every}{kind}" for kind in (topics.RES, topics.CFG, topics.CMD)]
    lines.append(f"topic readwrite {topics.gateway_state_topic(gateway_id)}")
    return "\n".join(lines) + "\n"


def find_mosquitto_passwd() -> str:
    found = shutil.which("mosquitto_passwd") or shutil.which("mosquitto_passwd", path="/usr/bin")
    if found is None:
        raise AccessError("mosquitto_passwd not found: `apt-get install -y mosquitto`")
    return found


class BrokerAccess:
    """The password file and ACL in ``directory``: ``add()`` identities, read ``users()``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.password_path = self.directory / PASSWORD_FILE
        self.acl_path = self.directory / ACL_FILE

    def users(self) -> list[str]:
        """User names in the password file, in its order."""
        return [user for user, _ in self._entries()]

    def ensure(self) -> None:
        """Both files exist (an empty password file lets nobody in) and the ACL is current."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.password_path.exists():
            self._write_private(self.password_path, "")
        self._write_acl()

    def add_reader(self, reader_id: str) -> Login:
        return self.add([reader_user(reader_id)])[0]

    def add_gateway(self, gateway_id: str) -> Login:
        return self.add([gateway_user(gateway_id)])[0]

    def add(self, users: Sequence[str]) -> list[Login]:
        """A fresh random password for each of ``users`` (replacing any it had), hashed into the
        password file; the ACL rewritten. The passwords are returned, and kept nowhere else."""
        for user in users:
            gateway = gateway_id_of(user)
            checked_id("reader id", user) if gateway is None else checked_id("gateway id", gateway)
        logins = [Login(user, secrets.token_urlsafe(_PASSWORD_BYTES)) for user in users]
        self.directory.mkdir(parents=True, exist_ok=True)
        hashed = self._hash(logins)
        kept = [(u, h) for u, h in self._entries() if u not in hashed]
        lines = "".join(f"{u}:{h}\n" for u, h in [*kept, *hashed.items()])
        self._write_private(self.password_path, lines)
        self._write_acl()
        return logins

    def _hash(self, logins: Sequence[Login]) -> dict[str, str]:
        """user -> mosquitto_passwd's hash of its password, for ``logins``."""
        staged = self.directory / (PASSWORD_FILE + ".new")
        self._write_private(staged, "".join(f"{x.user}:{x.password}\n" for x in logins))
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

    def _write_acl(self) -> None:
        gateways = [g for g in map(gateway_id_of, self.users()) if g is not None]
        self.acl_path.write_text(reader_acl() + "".join("\n" + gateway_acl(g) for g in gateways))

    @staticmethod
    def _write_private(path: Path, text: str) -> None:
        """Write ``text`` to ``path`` readable by its owner only, replacing it atomically."""
        staged = path.with_name(path.name + ".tmp")
        staged.unlink(missing_ok=True)
        staged.touch(mode=0o600)
        staged.write_text(text)
        staged.replace(path)


def _parse(text: str) -> list[tuple[str, str]]:
    entries = []
    for line in text.splitlines():
        user, sep, secret = line.partition(":")
        if sep and user:
            entries.append((user, secret))
    return entries
