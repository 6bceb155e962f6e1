"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bandlink.tools.broker import MosquittoBroker


@pytest.fixture
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """A private Mosquitto on a free loopback port, stopped (no process, no port) afterwards."""
    with MosquittoBroker(tmp_path_factory.mktemp("mosquitto")) as running:
        yield running
