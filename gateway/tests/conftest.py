"""Gateway test fixtures: a store on each back end, and the in-memory pair (a protocol-speaking
reader joined to the core and a real store, without a broker)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bandlink.gateway.store import Store
from bandlink.gateway.venue import DEMO_VENUE

from .pair import TODAY, Pair


@pytest.fixture
def db_url(any_db_url: str) -> str:
    """Each store test runs on SQLite and on a private PostgreSQL cluster."""
    return any_db_url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = Store(db_url)
    opened.migrate()
    opened.load_venue(DEMO_VENUE, today=TODAY)
    yield opened
    opened.close()


@pytest.fixture
def pair(store: Store) -> Pair:
    return Pair(store)
