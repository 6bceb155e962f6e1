"""The gateway as a separate process, as it runs in the field: for the demo, the benchmarks and
the end-to-end tests, which must be able to stop it (or kill it) mid-traffic.

Several may run side by side on one broker and one database, each with its own ``gateway_id``
(its liveness topic), its own broker identity and its own log file. The credentials reach the
process through its environment (``BANDLINK_BROKER_USER``, ``BANDLINK_BROKER_PASSWORD``) or a
provisioned settings file (``config_file``, as ``bandlink provision gateway`` writes it), never
its command line, which every user of the machine can read."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from .access import Login
from .broker import MosquittoBroker, free_port
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
        login: Login | None = None,
        config_file: Path | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        http: bool = False,
    ) -> None:
        self.gateway_id = gateway_id
        # http: serve the HTTP API on a free loopback port (``http_url``).
        self.http_url: str | None = None
        if http:
            address = f"127.0.0.1:{free_port()}"
            self.http_url = f"http://{address}"
            extra_args = (*extra_args, "--http", address)
        command = [sys.executable, "-m", "bandlink.tools.cli", "gateway"]
        command += ["--broker", broker_url, "--db", db_url, "--gateway-id", gateway_id]
        command += ["--log-level", log_level, *extra_args]
        if venue:
            command += ["--venue", venue]
        if config_file is not None:
            command += ["--config", str(config_file)]
        # env: BANDLINK_* settings the flags do not cover (tests shrink the queue with it).
        env = dict(env or {})
        if login is not None:
            env |= {"BANDLINK_BROKER_USER": login.user, "BANDLINK_BROKER_PASSWORD": login.password}
        log_path = workdir / f"{gateway_id}.log"
        super().__init__(f"gateway {gateway_id}", command, log_path, READY_LINE, env=env)


def gateway_ids(count: int) -> list[str]:
    return [f"gw-{n}" for n in range(1, count + 1)]


class GatewayGroup:
    """N identical gateway processes (``gw-1`` .. ``gw-N``) on one broker and one database,
    sharing the readers' traffic as in the field. The first migrates and loads the venue; the
    others then start together. Each logs in as itself: with the identity ``broker`` makes for
    it, or from its provisioned settings file (``config_files``, by gateway id)."""

    def __init__(
        self,
        broker: MosquittoBroker,
        db_url: str,
        workdir: Path,
        *,
        count: int = 2,
        venue: str | None = "demo",
        log_level: str = "info",
        config_files: Mapping[str, Path] | None = None,
        env: Mapping[str, str] | None = None,
        http: bool = False,
    ) -> None:
        self.members = [
            GatewayProcess(
                broker.url,
                db_url,
                workdir,
                venue=venue if n == 0 else None,
                gateway_id=gateway_id,
                log_level=log_level,
                login=None if config_files else broker.gateway_login(gateway_id),
                config_file=config_files[gateway_id] if config_files else None,
                env=env,
                http=http,
            )
            for n, gateway_id in enumerate(gateway_ids(count))
        ]

    @property
    def http_urls(self) -> list[str]:
        """Each member's HTTP API (started with ``http=True``)."""
        return [m.http_url for m in self.members if m.http_url]

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
