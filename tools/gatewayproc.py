"""The gateway as a separate process, as it runs in the field: for the demo, the benchmarks and
the end-to-end tests, which must be able to stop it (or kill it) mid-traffic.

Several may run side by side on one broker and one database, each with its own ``gateway_id``
(its liveness topic) and its own log file."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from .processes import ReadyProcess

READY_LINE = "gateway ready"


class GatewayProcess(ReadyProcess):
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
        command = [sys.executable, "-m", "bandlink.tools.cli", "gateway"]
        command += ["--broker", broker_url, "--db", db_url, "--gateway-id", gateway_id]
        command += ["--log-level", log_level, *extra_args]
        if venue:
            command += ["--venue", venue]
        # env: BANDLINK_* settings the flags do not cover (tests shrink the queue with it).
        log_path = workdir / f"{gateway_id}.log"
        super().__init__(f"gateway {gateway_id}", command, log_path, READY_LINE, env=env)


class GatewayGroup:
    """N identical gateway processes (``gw-1`` .. ``gw-N``) on one broker and one database,
    sharing the readers' traffic as in the field. The first migrates and loads the venue; the
    others then start together."""

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
