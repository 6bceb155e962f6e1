"""End-to-end rigs: a private Mosquitto, two gateway processes sharing the readers' traffic on
one database with the demo venue, and simulated gate readers running the real firmware on the
MicroPython unix port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bandlink.gateway.store import Store
from bandlink.tools.broker import MosquittoBroker
from bandlink.tools.gatewayproc import GatewayGroup
from bandlink.tools.simreader import SimReader


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'gateway.db'}"


@pytest.fixture
def gateway(broker: MosquittoBroker, db_url: str, tmp_path: Path) -> Iterator[GatewayGroup]:
    """The gateway service: two processes, as the demo runs it."""
    with GatewayGroup(broker, db_url, tmp_path, count=2) as running:
        yield running


@pytest.fixture
def store(gateway: GatewayGroup, db_url: str) -> Iterator[Store]:
    """The gateway's own store, read beside it: what it recorded is what the tests check."""
    opened = Store(db_url)
    yield opened
    opened.close()


def _reader(
    reader_id: str, direction: str, broker: MosquittoBroker, tmp_path: Path
) -> Iterator[SimReader]:
    login = broker.reader_login(reader_id)
    with SimReader(
        reader_id, broker.url, tmp_path, direction=direction, gate="north", login=login
    ) as reader:
        reader.wait_online()
        yield reader


@pytest.fixture
def entry_reader(broker: MosquittoBroker, tmp_path: Path) -> Iterator[SimReader]:
    yield from _reader("gate-1", "in", broker, tmp_path)


@pytest.fixture
def exit_reader(broker: MosquittoBroker, tmp_path: Path) -> Iterator[SimReader]:
    yield from _reader("gate-2", "out", broker, tmp_path)
