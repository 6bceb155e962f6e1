"""Brokers for the firmware tests, besides the shared ``broker`` fixture (conftest.py at the
root): one locked like a venue's (no anonymous clients, the ACL of SPEC "Transport"), for the
tests of the reader as it runs in the field, and one open, for the MQTT client's own tests and
the scripted ones that steer the test from the reader's side on topics of their own
(``bltest/ctl/...``), which the ACL would refuse. Every client logs in on either."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bandlink.tools.broker import MosquittoBroker


@pytest.fixture
def locked_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    with MosquittoBroker(tmp_path_factory.mktemp("locked"), allow_anonymous=False) as running:
        yield running


@pytest.fixture
def open_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    with MosquittoBroker(tmp_path_factory.mktemp("open"), allow_anonymous=True) as running:
        yield running
