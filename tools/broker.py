"""A private Mosquitto for tests and simulations: a plain child process on a free loopback port.

Each broker gets its own config in its own directory, so parallel test runs never share state.
The config follows FIELD-NOTES: no persistence, log to stdout (captured in ``mosquitto.log``),
and ``set_tcp_nodelay true`` so request/response latency is not held up by Nagle's algorithm.

Locked down like a venue's broker (docs/SECURITY.md), and there is no other kind: no anonymous
client is let in; every client logs in with its own identity, from the password file and ACL
in the broker's directory (``tools/access.py``: hashed by ``mosquitto_passwd``, each identity
confined to its own topics); the client id is the user name (``use_username_as_clientid``), so
nobody can take over a reader's session by its id; and a message larger than the protocol's
limit is dropped by the broker before any gateway spends time on it.

``reader_login`` / ``gateway_login`` make an identity on first use (the broker re-reads its
files on SIGHUP, without dropping anyone) and hand back its credentials. Identities provisioned
into the directory beforehand (``bandlink provision``) are kept as they are.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from .access import BrokerAccess, Login, gateway_user, reader_user
from .processes import read_log, stop_process

__all__ = ["HOST", "MESSAGE_SIZE_LIMIT", "BrokerError", "Login", "MosquittoBroker", "free_port"]

HOST = "127.0.0.1"
_START_TIMEOUT_S = 5
_RELOAD_TIMEOUT_S = 5
# The wire protocol's limit on a message (protocol/SPEC.md, "Sizes"): larger ones are dropped
# by the broker before any gateway spends time on them.
MESSAGE_SIZE_LIMIT = 4096


class BrokerError(RuntimeError):
    """Mosquitto could not be found, started or stopped."""


def find_mosquitto() -> str:
    """Path of the ``mosquitto`` binary: PATH first, then /usr/sbin (Debian installs it there)."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
    if found is None:
        raise BrokerError(
            "mosquitto not found in PATH or /usr/sbin: run `make venv`, "
            "or `apt-get install -y mosquitto`"
        )
    return found


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


class MosquittoBroker:
    """``with MosquittoBroker(directory) as broker: ...`` or ``start()``/``stop()``; ``restart()``
    keeps the port, so clients can reconnect to the same URL. Its config and log live in
    ``directory``, which the caller owns (a test's tmp_path, the demo's var/ folder)."""

    def __init__(self, directory: str | Path) -> None:
        self.host = HOST
        self.port = free_port()
        self.timeout = _START_TIMEOUT_S
        self.directory = Path(directory)
        self.config_path = self.directory / "mosquitto.conf"
        self.log_path = self.directory / "mosquitto.log"
        self.access = BrokerAccess(self.directory)
        self._logins: dict[str, Login] = {}  # user name -> credentials, those made here
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def log(self) -> str:
        return read_log(self.log_path)

    def reader_login(self, reader_id: str) -> Login:
        """The credentials of reader ``reader_id`` (user name = reader id), made on first use."""
        return self._make([reader_user(reader_id)])[0]

    def reader_logins(self, reader_ids: Sequence[str]) -> list[Login]:
        """``reader_login`` for many readers at once: one hashing run, one reload."""
        return self._make([reader_user(r) for r in reader_ids])

    def gateway_login(self, gateway_id: str) -> Login:
        """The credentials of gateway process ``gateway_id``, made on first use."""
        return self._make([gateway_user(gateway_id)])[0]

    def _make(self, users: Sequence[str]) -> list[Login]:
        fresh = [u for u in dict.fromkeys(users) if u not in self._logins]
        if fresh:
            made = self.access.add(fresh)
            self._logins.update((login.user, login) for login in made)
            if self._process is not None:
                self._reload(made[-1])
        return [self._logins[u] for u in users]

    def _reload(self, login: Login) -> None:
        """SIGHUP makes Mosquitto re-read both files; done once the newest login is accepted
        (the probe logs in with it: nobody else uses a login this young)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + _RELOAD_TIMEOUT_S
        while not self._accepts_login(login):
            if time.monotonic() > deadline:
                raise BrokerError(f"mosquitto did not take login {login.user!r}:\n{self.log()}")
            time.sleep(0.005)

    def _accepts_login(self, login: Login) -> bool:
        probe = mqtt.Client(CallbackAPIVersion.VERSION2)
        probe.username_pw_set(login.user, login.password)
        answers: list[bool] = []
        probe.on_connect = lambda _c, _u, _f, reason, _p: answers.append(not reason.is_failure)
        try:
            probe.connect(self.host, self.port, keepalive=5)
            deadline = time.monotonic() + 1
            while not answers and time.monotonic() < deadline:
                probe.loop(0.02)
        except OSError:
            return False
        finally:
            probe.disconnect()
        return answers == [True]

    def _write_config(self) -> None:
        # Started as root, Mosquitto drops to user `mosquitto` unless told to stay who we are
        # (for any other user the option is ignored). The log goes to our own open file.
        user = pwd.getpwuid(os.geteuid()).pw_name
        self.access.ensure()
        self.config_path.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous false\n"
            f"password_file {self.access.password_path}\n"
            f"acl_file {self.access.acl_path}\n"
            "use_username_as_clientid true\n"
            f"message_size_limit {MESSAGE_SIZE_LIMIT}\n"
            "persistence false\n"
            "log_dest stdout\n"
            "set_tcp_nodelay true\n"
            f"user {user}\n"
        )

    def start(self) -> MosquittoBroker:
        if self._process is not None:
            raise BrokerError(f"broker already running (pid {self._process.pid})")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._write_config()
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [find_mosquitto(), "-c", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.timeout
        while not _accepts(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                exited = self._process.poll()
                self.stop()
                state = f"exited with {exited}" if exited is not None else "not listening"
                raise BrokerError(
                    f"mosquitto {state} on {self.url} after {self.timeout} s; log:\n{self.log()}"
                )
            time.sleep(0.005)

    def stop(self) -> None:
        """Stop the broker; returns once the process is reaped and the port is closed."""
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)

    def restart(self) -> None:
        """Stop and start again on the same port (clients see the link drop, then come back)."""
        self.stop()
        self.start()

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
