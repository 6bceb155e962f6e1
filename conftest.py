"""Fixtures shared by every test folder."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bandlink.tools.broker import MosquittoBroker
from bandlink.tools.postgres import PostgresCluster, scratch_directory


@pytest.fixture
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """A private Mosquitto on a free loopback port, locked (no anonymous client; identities from
    ``reader_login``/``gateway_login``, each confined by the ACL), stopped (no process, no port)
    afterwards."""
    with MosquittoBroker(tmp_path_factory.mktemp("mosquitto")) as running:
        yield running


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store URL on each back end in turn: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gateway.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A private PostgreSQL for the whole session: initdb costs most of a second, a fresh
    database (``pg_url``) 0.1-0.3 s. Not in pytest's tmp dirs: as root the server runs as user
    ``postgres``, which cannot enter /tmp/pytest-of-root (mode 0700)."""
    with scratch_directory() as directory, PostgresCluster(directory) as running:
        yield running


@pytest.fixture
def pg_url(postgres: PostgresCluster) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty database on ``postgres``, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    yield postgres.create_database(name)
    postgres.drop_database(name)
