"""The private PostgreSQL the gateway's tests and tools run on, against the real server: it
starts, serves fresh databases over SQLAlchemy + psycopg with durability on, and leaves no
process, no port and no socket behind."""

from __future__ import annotations

import os
import pwd
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from bandlink.tools import postgres as pg
from bandlink.tools.postgres import PostgresCluster, PostgresError, scratch_directory


@pytest.fixture
def directory() -> Iterator[Path]:
    with scratch_directory() as path:
        yield path


def engine(url: str) -> sa.Engine:
    # No pool: every test's connections are closed when it is done with them.
    return sa.create_engine(url, poolclass=NullPool)


def scalar(url: str, query: str) -> object:
    with engine(url).connect() as connection:
        return connection.execute(sa.text(query)).scalar_one()


def processes_in(folder: Path) -> set[int]:
    """PIDs of live processes whose working directory is ``folder``: the postmaster and every
    backend and helper it forks chdir into the data directory."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cwd").resolve(strict=True) == folder.resolve():
                found.add(int(entry.name))
        except OSError:  # gone meanwhile, or a zombie (no cwd any more)
            continue
    return found


def test_stop_leaves_no_process_no_port_and_no_socket(directory: Path) -> None:
    cluster = PostgresCluster(directory).start()
    pid, port = cluster.pid, cluster.port
    assert pid is not None and pid in processes_in(cluster.data_dir)
    socket_file = cluster.socket_dir / f".s.PGSQL.{port}"
    assert socket_file.is_socket()
    if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to Debian's postgres user
        assert cluster.data_dir.stat().st_uid == pwd.getpwnam("postgres").pw_uid
    assert scalar(cluster.url, "SELECT current_user") == "postgres"
    cluster.stop()
    cluster.stop()  # a second stop is a no-op
    assert cluster.pid is None
    with pytest.raises(OSError):
        socket.create_connection((cluster.host, port), timeout=1)
    with pytest.raises(ProcessLookupError):  # reaped, not a zombie: it was our own child
        os.kill(pid, 0)
    assert processes_in(cluster.data_dir) == set()
    assert not socket_file.exists()


def test_restart_keeps_port_and_committed_rows(directory: Path) -> None:
    with PostgresCluster(directory) as cluster:
        url = cluster.create_database("kept")
        with engine(url).begin() as connection:
            connection.execute(sa.text("CREATE TABLE taps (band text)"))
            connection.execute(sa.text("INSERT INTO taps VALUES ('04a1b2c3d4e5f6')"))
        port, pid = cluster.port, cluster.pid
        cluster.restart()
        assert cluster.port == port and cluster.pid != pid
        assert scalar(url, "SELECT band FROM taps") == "04a1b2c3d4e5f6"


def test_stop_falls_back_to_killing_the_postmaster(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = PostgresCluster(directory).start()
    url = cluster.create_database("crashed")
    with engine(url).begin() as connection:
        connection.execute(sa.text("CREATE TABLE taps AS SELECT 1 AS n"))
    monkeypatch.setattr(cluster, "_pg_ctl_stop", lambda: False)  # as if pg_ctl hung or failed
    cluster.stop()
    assert processes_in(cluster.data_dir) == set()
    assert "received immediate shutdown request" in cluster.log()  # SIGQUIT did it
    monkeypatch.undo()
    with cluster:  # an immediate shutdown is a crash to PostgreSQL: WAL recovery brings it back
        assert scalar(url, "SELECT n FROM taps") == 1
    assert "automatic recovery in progress" in cluster.log()


def test_a_start_that_fails_reports_the_server_log(directory: Path) -> None:
    cluster = PostgresCluster(directory)
    with socket.socket() as squatter:  # someone took the port between free_port() and start()
        squatter.bind((cluster.host, cluster.port))
        squatter.listen()
        with pytest.raises(PostgresError, match=r"postgres exited with 1 on port \d+; log:"):
            cluster.start()
    assert "could not bind IPv4 address" in cluster.log()
    assert cluster.pid is None


def test_a_fresh_database_runs_queries_with_durability_on(pg_url: str) -> None:
    assert pg_url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    assert scalar(pg_url, "SELECT 1 + 1") == 2
    # The gateway's durability tests mean something only with these on.
    assert scalar(pg_url, "SHOW fsync") == "on"
    assert scalar(pg_url, "SHOW synchronous_commit") == "on"
    assert scalar(pg_url, "SHOW listen_addresses") == "127.0.0.1"
    assert str(scalar(pg_url, "SELECT version()")).startswith("PostgreSQL 15")


def test_two_databases_are_independent(postgres: PostgresCluster) -> None:
    first, second = postgres.create_database("first_db"), postgres.create_database("second_db")
    try:
        with engine(first).begin() as connection:
            connection.execute(sa.text("CREATE TABLE guests (name text)"))
            connection.execute(sa.text("INSERT INTO guests VALUES ('Ada')"))
        assert scalar(first, "SELECT count(*) FROM guests") == 1
        assert scalar(second, "SELECT to_regclass('guests') IS NULL") is True
    finally:
        postgres.drop_database("first_db")
        postgres.drop_database("second_db")
    assert scalar(postgres.url, "SELECT count(*) FROM pg_database WHERE datname LIKE '%_db'") == 0


def test_drop_ends_sessions_left_open(postgres: PostgresCluster) -> None:
    url = postgres.create_database("left_open")
    leftover = engine(url).connect()
    leftover.execute(sa.text("SELECT 1"))
    postgres.drop_database("left_open")
    with pytest.raises(sa.exc.OperationalError):
        leftover.execute(sa.text("SELECT 1"))
    leftover.close()


def test_database_names_must_be_plain_identifiers(postgres: PostgresCluster) -> None:
    for name in ("Upper", "has space", 'quote"', "x" * 64, ""):
        with pytest.raises(ValueError, match="database name"):
            postgres.create_database(name)


def test_binaries_off_path_come_from_debian_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    bindir = pg.find_bindir()
    assert bindir.match("/usr/lib/postgresql/*/bin")
    monkeypatch.setattr(pg, "_DEBIAN_BINDIRS", "/nonexistent/*/bin")
    with pytest.raises(PostgresError, match=r"make venv.*apt-get install -y postgresql"):
        pg.find_bindir()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the cluster to user postgres")
def test_a_folder_user_postgres_cannot_reach_is_named(tmp_path: Path) -> None:
    # pytest's own tmp dirs sit under /tmp/pytest-of-root, mode 0700.
    with pytest.raises(PostgresError, match=r"cannot reach .* is mode 700.*scratch_directory"):
        PostgresCluster(tmp_path / "pg").start()
