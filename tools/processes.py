"""Child processes the tools start (broker, gateway, simulated readers), stopped the same way."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self


def read_log(path: Path) -> str:
    """A child's log so far ("" before it wrote one): for error messages and tests."""
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def stop_process(process: subprocess.Popen[bytes], grace: float = 1.0) -> None:
    """SIGTERM, wait, SIGTERM again (one was once lost right after a cold start), then SIGKILL.
    Returns once the process is reaped, so it holds no port afterwards."""
    for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    process.wait()


class ReadyProcess:
    """A child that says it is up by printing ``ready_line`` to its log (the gateway, the
    echo): ``with`` it, or ``launch()`` several and ``wait_ready()`` each, then ``stop()``."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log_path: Path,
        ready_line: str,
        *,
        env: Mapping[str, str] | None = None,
        grace: float = 3,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.log_path = log_path
        self._ready_line = ready_line
        self._env = {**os.environ, **env} if env else None
        self._grace = grace
        self._process: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout: float = 20) -> Self:
        self.launch()
        self.wait_ready(timeout)
        return self

    def launch(self) -> None:
        """Start the process without waiting for it (a group starts its members together)."""
        # The log is appended to across restarts: only what this run writes counts as ready.
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env,
            )

    def wait_ready(self, timeout: float = 20) -> None:
        assert self._process is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while self._ready_line not in self.log()[self._log_start :]:
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not start:\n{self.log()}")
            time.sleep(0.02)

    def send_signal(self, sig: int) -> None:
        if self._process is not None:
            self._process.send_signal(sig)

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process, grace=self._grace)
            self._process = None

    def kill(self) -> None:
        """SIGKILL, as a power cut or the OOM killer would: no goodbye, no clean disconnect."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def log(self) -> str:
        return read_log(self.log_path)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
