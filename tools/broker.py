"""A private Mosquitto for tests and simulations: a plain child process on a free loopback port.

Each broker gets its own config in its own directory, so parallel test runs never share state.
The config follows FIELD-NOTES: no persistence, log to stdout (captured in ``mosquitto.log``),
and ``set_tcp_nodelay true`` so request/response latency is not held up by Nagle's algorithm.

Locked down like a venue's broker (docs/SECURITY.md): every client logs in with its own
identity, from a password file made with ``mosquitto_passwd``; the client id is the user name
(``use_username_as_clientid``), so nobody can take over a reader's session by its id; and the
ACL gives each identity only its own topics:

- a reader (user name = reader id) publishes only its own ``evt``, ``birth`` and ``death`` and
  reads only its own ``res``, ``cfg``, ``cmd`` and the gateways' states;
- a gateway (user name ``<gateway id>@gateway``, which no reader id can be) reads every reader's
  ``evt``, ``birth``, ``death`` (so only gateways can join the shared subscription) and the
  gateways' states, and publishes results, configurations, commands and its own state.

``reader_login`` / ``gateway_login`` create an identity (the broker re-reads its files on
SIGHUP, without dropping anyone) and hand back its credentials.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bandlink.protocol import topics

from .processes import read_log, stop_process

HOST = "127.0.0.1"
_START_TIMEOUT_S = 5
_RELOAD_TIMEOUT_S = 5
GATEWAY_USER_SUFFIX = "@gateway"
# The wire protocol's limit on a message (protocol/SPEC.md, "Sizes"): larger ones are dropped
# by the broker before any gateway spends time on them.
MESSAGE_SIZE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Login:
    """One broker identity's credentials."""

    user: str
    password: str


def gateway_user(gateway_id: str) -> str:
    """A gateway process's broker user name: never a valid reader id, so never a reader's."""
    return gateway_id + GATEWAY_USER_SUFFIX


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
        raise BrokerError("mosquitto_passwd not found: `apt-get install -y mosquitto`")
    return found


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

    def __init__(self, directory: str | Path, *, allow_anonymous: bool = True) -> None:
        self.host = HOST
        self.port = free_port()
        self.timeout = _START_TIMEOUT_S
        self.directory = Path(directory)
        self.config_path = self.directory / "mosquitto.conf"
        self.log_path = self.directory / "mosquitto.log"
        self.password_path = self.directory / "passwords"
        self.acl_path = self.directory / "acl"
        self.allow_anonymous = allow_anonymous
        self._logins: dict[str, Login] = {}  # user name -> credentials
        self._gateways: list[str] = []  # gateway ids, in the order their logins were made
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
        topics.reader_topic(reader_id, "")  # a topic level: checked like one below
        return self._login(reader_id)

    def gateway_login(self, gateway_id: str) -> Login:
        """The credentials of gateway process ``gateway_id``, made on first use."""
        topics.gateway_state_topic(gateway_id)  # refuses an id that is not a valid topic level
        if gateway_id not in self._gateways:
            self._gateways.append(gateway_id)
        return self._login(gateway_user(gateway_id))

    def _login(self, user: str) -> Login:
        login = self._logins.get(user)
        if login is None:
            login = self._logins[user] = Login(user, secrets.token_urlsafe(18))
            if self._process is not None and not self.allow_anonymous:
                self._write_access()
                self._reload(login)
        return login

    def _write_access(self) -> None:
        """The password file (hashed by mosquitto_passwd) and the ACL, from the logins made."""
        plain = "".join(f"{login.user}:{login.password}\n" for login in self._logins.values())
        staged = self.password_path.with_suffix(".new")
        staged.write_text(plain)
        staged.chmod(0o600)
        if plain:  # mosquitto_passwd refuses an empty file
            hashed = subprocess.run(
                [find_mosquitto_passwd(), "-U", str(staged)],
                check=False,
                capture_output=True,
                text=True,
            )
            if hashed.returncode != 0:
                raise BrokerError(f"mosquitto_passwd -U failed: {hashed.stderr.strip()}")
        staged.replace(self.password_path)
        acl = reader_acl() + "".join("\n" + gateway_acl(g) for g in self._gateways)
        self.acl_path.write_text(acl)

    def _reload(self, login: Login) -> None:
        """SIGHUP makes Mosquitto re-read both files; done once the new login is accepted."""
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
        self._write_access()
        if self.allow_anonymous:  # the old open broker: anyone may do anything
            access = "allow_anonymous true\n"
        else:
            access = (
                "allow_anonymous false\n"
                f"password_file {self.password_path}\n"
                f"acl_file {self.acl_path}\n"
                "use_username_as_clientid true\n"
            )
        self.config_path.write_text(
            f"listener {self.port} {self.host}\n"
            + access
            + f"message_size_limit {MESSAGE_SIZE_LIMIT}\n"
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
