"""A private PostgreSQL for tests and tools: its own cluster, port and socket folder.

Each cluster lives in a directory the caller owns (``data/`` from initdb, ``run/`` for the unix
socket, ``postgres.log``), so parallel runs never share state and Debian's own ``main`` cluster
is never used. It listens on 127.0.0.1 only, with trust authentication (tests only). ``fsync``
and ``synchronous_commit`` stay on: the gateway's tests check that a committed decision survives
a crash, which a cluster without them would only pretend to pass.

initdb refuses to run as root, so as root every PostgreSQL program runs as Debian's ``postgres``
user (the package creates it) and the cluster directory is handed to that user.

The postmaster is our own child rather than ``pg_ctl start``'s daemon, for two measured reasons:
on this kind of machine PID 1 reaps orphans only a second or so late, so a server pg_ctl had
started stays a zombie (still "there" to ``kill(pid, 0)``) after it stopped, whereas we reap our
child at once; and by reading ``postmaster.pid`` ourselves we see it ready in ~30 ms, where
``pg_ctl -w`` polls ten times a second (~110 ms). ``pg_ctl -m fast stop`` still stops it.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import NoReturn

import psycopg
from psycopg import sql

from .broker import HOST, free_port
from .processes import read_log

SUPERUSER = "postgres"  # initdb -U: the superuser is called this whoever ran initdb
_START_TIMEOUT_S = 30  # initdb and a cold start on a slow CI disk, with fsync on
_STOP_TIMEOUT_S = 10
_DEBIAN_BINDIRS = "/usr/lib/postgresql/*/bin"
_PROGRAMS = ("initdb", "pg_ctl", "postgres")
# Unquoted PostgreSQL identifiers, so URLs and SQL never need escaping.
_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresError(RuntimeError):
    """PostgreSQL could not be found, initialised, started or stopped."""


def find_bindir() -> Path:
    """The folder holding initdb, pg_ctl and postgres: PATH first, then Debian's
    /usr/lib/postgresql/<version>/bin (not on PATH there), highest version first."""
    found = shutil.which("initdb")
    # Resolve links (/usr/local/bin/initdb -> .../15/bin/initdb) so all three come from one version.
    candidates = [Path(found).resolve().parent] if found else []
    debian = sorted((Path(p) for p in glob.glob(_DEBIAN_BINDIRS)), key=_version, reverse=True)
    for bindir in [*candidates, *debian]:
        if all(os.access(bindir / program, os.X_OK) for program in _PROGRAMS):
            return bindir
    raise PostgresError(
        f"PostgreSQL ({', '.join(_PROGRAMS)}) not found in PATH or {_DEBIAN_BINDIRS}: "
        "run `make venv`, or `apt-get install -y postgresql`"
    )


def _version(bindir: Path) -> tuple[int, ...]:
    """(15,) for /usr/lib/postgresql/15/bin, so 15 sorts above 9.6."""
    return tuple(int(part) for part in bindir.parent.name.split(".") if part.isdigit())


@dataclass(frozen=True)
class _Account:
    """Who runs the PostgreSQL programs, and the command prefix that makes it so."""

    uid: int
    gid: int
    prefix: tuple[str, ...]


def _account() -> _Account:
    if os.geteuid() != 0:
        return _Account(os.geteuid(), os.getegid(), ())
    try:
        user = pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise PostgresError(
            f"as root, PostgreSQL must run as user `{SUPERUSER}`, which Debian's package "
            "creates: run `make venv`, or `apt-get install -y postgresql`"
        ) from None
    # setpriv rather than runuser: no PAM session, just the uid/gid switch, then exec.
    prefix = ("setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups")
    return _Account(user.pw_uid, user.pw_gid, (*prefix, "--"))


def _unreachable_parent(directory: Path, uid: int) -> Path | None:
    """The first folder above ``directory`` that user ``uid`` may not pass through, if any
    (pytest's /tmp/pytest-of-root is 0700, for one). Group bits are not considered."""
    for folder in reversed(directory.parents):
        info = folder.stat()
        if info.st_uid != uid and not info.st_mode & stat.S_IXOTH:
            return folder
    return None


@contextmanager
def scratch_directory(prefix: str = "bandlink-pg-") -> Iterator[Path]:
    """A fresh folder in the system temp dir (which user ``postgres`` can reach, unlike pytest's
    tmp dirs when running as root), removed afterwards with all the cluster wrote in it."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


class PostgresCluster:
    """``with PostgresCluster(directory) as pg: url = pg.create_database("x")`` or
    ``start()``/``stop()``; ``restart()`` keeps the port and the data. ``directory`` is the
    caller's; as root, user ``postgres`` must be able to reach it (see ``scratch_directory``)."""

    def __init__(self, directory: str | Path) -> None:
        self.host = HOST
        self.port = free_port()
        self.timeout = _START_TIMEOUT_S
        self.directory = Path(directory).absolute()
        self.data_dir = self.directory / "data"
        self.socket_dir = self.directory / "run"
        self.log_path = self.directory / "postgres.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._bindir = Path()
        self._account = _Account(os.geteuid(), os.getegid(), ())

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the default ``postgres`` database."""
        return self.url_for(SUPERUSER)

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        """The postmaster's PID while running (setpriv execs, so it is our child's PID)."""
        return self._process.pid if self._process is not None else None

    def log(self) -> str:
        return read_log(self.log_path)

    def start(self) -> PostgresCluster:
        if self._process is not None:
            raise PostgresError(f"postgres already running (pid {self._process.pid})")
        # Kept for stop(), which must work whatever PATH has become meanwhile.
        self._account, self._bindir = _account(), find_bindir()
        self._prepare()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [*self._as_owner("postgres"), "-D", str(self.data_dir), *self._settings()],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.directory,
                # Its own session, as pg_ctl would: a Ctrl-C in the terminal must not stop the
                # server before the fixture or tool that owns it does.
                start_new_session=True,
            )
        self._wait_ready()
        return self

    def _as_owner(self, program: str) -> list[str]:
        """The command line that runs one of PostgreSQL's programs as the cluster's owner."""
        return [*self._account.prefix, str(self._bindir / program)]

    def _prepare(self) -> None:
        """Make the directory and socket folder, owned by whoever runs the server."""
        for folder in (self.directory, self.socket_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.log_path.touch()
        if os.geteuid() != 0:
            return
        uid, gid = self._account.uid, self._account.gid
        blocked = _unreachable_parent(self.directory, uid)
        if blocked is not None:
            raise PostgresError(
                f"user {SUPERUSER} cannot reach {self.directory}: {blocked} is mode "
                f"{stat.S_IMODE(blocked.stat().st_mode):o}; put the cluster elsewhere "
                "(scratch_directory() makes a folder it can reach)"
            )
        for path in (self.directory, self.socket_dir, self.log_path):
            os.chown(path, uid, gid)

    def _initdb(self) -> None:
        command = [
            *self._as_owner("initdb"),
            f"--pgdata={self.data_dir}",
            f"--username={SUPERUSER}",
            # pg_hba: trust for the unix socket and loopback; the server listens on nothing else.
            "--auth-local=trust",
            "--auth-host=trust",
            # Same cluster whatever locale the caller's environment has.
            "--encoding=UTF8",
            "--no-locale",
            # Skips flushing the fresh files once (~0.1 s): only an OS crash during the run could
            # hurt this throwaway cluster. The server itself still runs with fsync on.
            "--no-sync",
            "--no-instructions",
        ]
        done = subprocess.run(
            command,
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=self.timeout,
            check=False,
        )
        if done.returncode != 0:
            raise PostgresError(
                f"initdb exited with {done.returncode} for {self.data_dir}:\n"
                f"{done.stdout}{done.stderr}"
            )

    def _settings(self) -> list[str]:
        """Server settings as ``-c`` options: the port changes per cluster object, and nothing
        has to be appended to postgresql.conf on every start."""
        settings = {
            "port": str(self.port),
            "listen_addresses": self.host,
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "on",
            "synchronous_commit": "on",
            "max_connections": "100",
        }
        return [arg for name, value in settings.items() for arg in ("-c", f"{name}={value}")]

    def _ready(self) -> bool:
        """What ``pg_ctl -w`` waits for: postmaster.pid naming our process, with status ready
        (written once it accepts connections)."""
        assert self._process is not None
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return False
        # Line 1 is the PID; line 8 the status, padded: "starting", then "ready", "stopping".
        if len(lines) < 8:
            return False
        return lines[0] == str(self._process.pid) and lines[7].strip() == "ready"

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.timeout
        while not self._ready():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self._fail_start()
            time.sleep(0.005)

    def _fail_start(self) -> NoReturn:
        assert self._process is not None
        exited = self._process.poll()
        self.stop()
        state = f"not ready after {self.timeout} s" if exited is None else f"exited with {exited}"
        raise PostgresError(f"postgres {state} on port {self.port}; log:\n{self.log()}")

    def stop(self) -> None:
        """Fast shutdown (open sessions are ended); returns once the postmaster is reaped and
        the port is closed."""
        process, self._process = self._process, None
        if process is None:
            return
        was_running = process.poll() is None
        if was_running and not self._pg_ctl_stop():
            _kill(process)
        process.wait()
        if was_running:  # one that died by itself (a failed start) may never have had the port
            self._wait_port_closed()

    def _pg_ctl_stop(self) -> bool:
        command = [
            *self._as_owner("pg_ctl"),
            f"--pgdata={self.data_dir}",
            "--mode=fast",
            "--wait",
            f"--timeout={_STOP_TIMEOUT_S}",
            "--silent",
            "stop",
        ]
        try:
            done = subprocess.run(
                command,
                cwd=self.directory,
                capture_output=True,
                timeout=_STOP_TIMEOUT_S + 5,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0

    def _wait_port_closed(self) -> None:
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        while _listening(self.port):
            if time.monotonic() > deadline:
                raise PostgresError(f"port {self.port} still accepts connections after stop")
            time.sleep(0.005)

    def restart(self) -> None:
        """Stop and start again on the same port with the same data."""
        self.stop()
        self.start()

    def create_database(self, name: str) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(_checked(name))))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop it even if a test left connections open (FORCE ends them)."""
        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        self._admin(statement.format(sql.Identifier(_checked(name))))

    def _admin(self, statement: sql.Composed) -> None:
        if self._process is None:
            raise PostgresError("postgres is not running: start() it first")
        # CREATE/DROP DATABASE refuse to run inside a transaction block.
        with psycopg.connect(
            host=str(self.socket_dir), port=self.port, user=SUPERUSER, autocommit=True
        ) as connection:
            connection.execute(statement)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _checked(name: str) -> str:
    if not _DATABASE_NAME.fullmatch(name):
        raise ValueError(f"database name {name!r}: use [a-z_][a-z0-9_]*, at most 63 characters")
    return name


def _kill(process: subprocess.Popen[bytes]) -> None:
    """pg_ctl could not stop it: immediate shutdown (SIGQUIT), then SIGKILL."""
    for sig in (signal.SIGQUIT, signal.SIGKILL):
        if process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            continue
