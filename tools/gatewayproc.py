"""The gateway as a separate process, as it runs in the field: for the demo, the benchmarks and
the end-to-end tests, which must be able to stop it (or kill it) mid-traffic.

Several may run side by side on one broker and one database, each with its own ``gateway_id``
(its liveness topic) and its own log file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from .processes import read_log, stop_process

READY_LINE = "gateway ready"


class GatewayProcess:
    def __init__(
        self,
        broker_url: str,
        db_url: str,
        workdir: Path,
        *,
        venue: str | None = "demo",
        gateway_id: str = "gw-1",
        log_level: str = "info",
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.gateway_id = gateway_id
        self._env = {**os.environ, **env} if env else None  # BANDLINK_* settings, for tests
        self.command = [sys.executable, "-m", "bandlink.tools.cli", "gateway"]
        self.command += ["--broker", broker_url, "--db", db_url, "--gateway-id", gateway_id]
        self.command += ["--log-level", log_level, *extra_args]
        if venue:
            self.command += ["--venue", venue]
        self.log_path = workdir / f"{gateway_id}.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout: float = 20) -> GatewayProcess:
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
        while READY_LINE not in self.log()[self._log_start :]:
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"gateway {self.gateway_id} did not start:\n{self.log()}")
            time.sleep(0.02)

    def send_signal(self, sig: int) -> None:
        if self._process is not None:
            self._process.send_signal(sig)

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process, grace=3)
            self._process = None

    def kill(self) -> None:
        """SIGKILL, as a power cut or the OOM killer would: no goodbye, no clean disconnect."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def log(self) -> str:
        return read_log(self.log_path)

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class GatewayGroup:
    """N identical gateway processes (``gw-1`` .. ``gw-N``) on one broker and one database,
    sharing the readers' traffic as in the field. The first loads the venue; all start at once.
    """

    def __init__(
        self,
        broker_url: str,
        db_url: str,
        workdir: Path,
        *,
        count: int = 2,
        venue: str | None = "demo",
        log_level: str = "info",
    ) -> None:
        self.members = [
            GatewayProcess(
                broker_url,
                db_url,
                workdir,
                venue=venue if n == 1 else None,
                gateway_id=f"gw-{n}",
                log_level=log_level,
            )
            for n in range(1, count + 1)
        ]

    @property
    def pids(self) -> list[int]:
        return [m.pid for m in self.members if m.pid is not None]

    def start(self, timeout: float = 30) -> GatewayGroup:
        # The first migrates and loads the venue; the others start as it finishes (their
        # memory views follow the catalog as it fills). Migrating together is safe, but slower.
        first, *others = self.members
        first.start(timeout)
        for member in others:
            member.launch()
        for member in others:
            member.wait_ready(timeout)
        return self

    def stop(self) -> None:
        for member in self.members:
            member.stop()

    def send_signal(self, sig: int) -> None:
        for member in self.members:
            member.send_signal(sig)

    def log(self) -> str:
        return "".join(member.log() for member in self.members)

    def __enter__(self) -> GatewayGroup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
