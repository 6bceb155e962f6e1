"""A private Mosquitto for tests and simulations: a plain child process on a free loopback port.

Each broker gets its own config in its own directory, so parallel test runs never share state.
The config follows FIELD-NOTES: no persistence, log to stdout (captured in ``mosquitto.log``),
and ``set_tcp_nodelay true`` so request/response latency is not held up by Nagle's algorithm.

Locked down like a venue's broker (docs/SECURITY.md), and there is no other kind: no anonymous
client is let in; every client logs in with its own identity, and may publish, subscribe to and
receive only its own topics, as the dynamic-security plugin is configured from the broker's
directory (``tools/access.py``: hashed by ``mosquitto_passwd``, a role per identity); the
client id is the user name (``use_username_as_clientid``), so nobody can take over a reader's
session by its id; and a message larger than the protocol's limit is dropped by the broker
before any gateway spends time on it.

``reader_login`` / ``gateway_login`` make an identity on first use and hand back its
credentials: written to the directory's files, and, while the broker runs, created in it
through the plugin's control topic by a client of its own (``tools@control``, a fresh password
each start), without dropping anyone. Identities provisioned into the directory beforehand
(``bandlink provision``) are kept as they are. ``harness_login`` is for test harnesses that
play the whole gateway service or drive the broker (any bandlink or test topic); nothing else
uses it.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import random
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from .access import (
    DYNSEC_TOPIC,
    BrokerAccess,
    Login,
    acls,
    control_user,
    gateway_user,
    harness_user,
    reader_user,
)
from .processes import read_log, stop_process

__all__ = ["HOST", "MESSAGE_SIZE_LIMIT", "BrokerError", "Login", "MosquittoBroker", "free_port"]

HOST = "127.0.0.1"
_START_TIMEOUT_S = 5
_CONTROL_TIMEOUT_S = 5
_CONTROL_USER = control_user("tools")
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


def find_dynsec_plugin() -> str:
    """Path of Mosquitto's dynamic-security plugin (Debian: /usr/lib/<arch>/)."""
    found = sorted(glob.glob("/usr/lib/*/mosquitto_dynamic_security.so"))
    found += sorted(glob.glob("/usr/lib/mosquitto_dynamic_security.so"))
    if not found:
        raise BrokerError("mosquitto_dynamic_security.so not found: `apt-get install mosquitto`")
    return found[0]


# Ports handed out for servers to bind later: below Linux's ephemeral range (32768-60999), so
# no outgoing connection takes one as its source port between the probe and the bind (port 0
# would do exactly that), and below the 20000 up that firmware/tests/mp_mqtt_peer.py picks from.
_SERVER_PORTS = range(10_000, 20_000)
_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on right now, and that this process has
    not handed out before (rigs started at once in threads each get their own)."""
    with _handed_out_lock:
        for _ in range(200):
            port = random.choice(_SERVER_PORTS)
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
    raise BrokerError(f"no free port in {_SERVER_PORTS.start}..{_SERVER_PORTS.stop - 1}")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
        return True


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
        self._control: _Control | None = None

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

    def harness_login(self, name: str) -> Login:
        """For a test harness only: ``<name>@harness``, allowed any bandlink or test topic."""
        return self._make([harness_user(name)])[0]

    def _make(self, users: Sequence[str]) -> list[Login]:
        fresh = [u for u in dict.fromkeys(users) if u not in self._logins]
        if fresh:
            known = set(self.access.users())
            made = self.access.add(fresh, tools=True)
            self._logins.update((login.user, login) for login in made)
            if self._control is not None:  # stopped, the files suffice: read at start
                for login in made:
                    # One identity a message: the broker's size limit holds for these too.
                    self._control.command(_commands(login, login.user in known))
        return [self._logins[u] for u in users]

    def _write_config(self) -> None:
        # Started as root, Mosquitto drops to user `mosquitto` unless told to stay who we are
        # (for any other user the option is ignored). The log goes to our own open file.
        user = pwd.getpwuid(os.geteuid()).pw_name
        self.access.ensure()
        self.config_path.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous false\n"
            f"plugin {find_dynsec_plugin()}\n"
            f"plugin_opt_config_file {self.access.dynsec_path}\n"
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
        (control,) = self.access.add([_CONTROL_USER], tools=True)  # a fresh password each start
        self._logins[control.user] = control
        self._write_config()
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [find_mosquitto(), "-c", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._wait_ready()
        self._control = _Control(self.host, self.port, control)
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
        control, self._control = self._control, None
        if control is not None:
            control.close()
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


def _commands(login: Login, known: bool) -> list[dict[str, Any]]:
    """Dynamic-security commands giving a running broker ``login`` (a new password if known)."""
    if known:
        return [
            {"command": "setClientPassword", "username": login.user, "password": login.password}
        ]
    return [
        {"command": "createRole", "rolename": login.user, "acls": acls(login.user)},
        {
            "command": "createClient",
            "username": login.user,
            "password": login.password,
            "roles": [{"rolename": login.user}],
        },
    ]


class _Control:
    """The client that manages a running broker's identities (``$CONTROL/dynamic-security``):
    each ``command`` list is sent and its answer awaited; any error raises BrokerError."""

    def __init__(self, host: str, port: int, login: Login) -> None:
        self._answers: list[Any] = []
        self._answered = threading.Condition()
        subscribed = threading.Event()
        client = self._client = mqtt.Client(CallbackAPIVersion.VERSION2)
        client.username_pw_set(login.user, login.password)
        client.on_connect = lambda c, *_: c.subscribe(DYNSEC_TOPIC + "/response", qos=1)
        client.on_subscribe = lambda *_: subscribed.set()
        client.on_message = self._on_message
        client.connect(host, port, keepalive=30)
        client.loop_start()
        if not subscribed.wait(_CONTROL_TIMEOUT_S):
            self.close()
            raise BrokerError("the broker's control client could not log in and subscribe")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._answered:
            self._answers.append(json.loads(msg.payload))
            self._answered.notify_all()

    def command(self, commands: list[dict[str, Any]]) -> None:
        with self._answered:
            seen = len(self._answers)
        self._client.publish(DYNSEC_TOPIC, json.dumps({"commands": commands}), qos=1)
        with self._answered:
            if not self._answered.wait_for(lambda: len(self._answers) > seen, _CONTROL_TIMEOUT_S):
                raise BrokerError("the broker did not answer a dynamic-security command")
            responses = self._answers[seen].get("responses", [])
        errors = [f"{r.get('command')}: {r['error']}" for r in responses if r.get("error")]
        if errors:
            raise BrokerError("dynamic-security refused: " + "; ".join(errors))

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()
