"""A private Mosquitto for tests and simulations: a plain child process on a free loopback port.

Each broker gets its own config in its own directory, so parallel test runs never share state.
The config follows FIELD-NOTES: no persistence, log to stdout (captured in ``mosquitto.log``),
and ``set_tcp_nodelay true`` so request/response latency is not held up by Nagle's algorithm.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from .processes import read_log, stop_process

HOST = "127.0.0.1"
_START_TIMEOUT_S = 5


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
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def log(self) -> str:
        return read_log(self.log_path)

    def _write_config(self) -> None:
        # Started as root, Mosquitto drops to user `mosquitto` unless told to stay who we are
        # (for any other user the option is ignored). The log goes to our own open file.
        user = pwd.getpwuid(os.geteuid()).pw_name
        self.config_path.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
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
