"""A reader's direction is the gateway's configuration, end to end: the real firmware (SimReader)
under two gateway processes on the demo venue, through the locked broker.

Issue 7: an entry reader claiming `out` let an unknown band through with "Goodbye", and nothing
published `cfg`. Here each reader's config.json says the opposite of the venue, and the guest
sees (and the store records) what the venue says.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bandlink.gateway.core.entry import venue_day
from bandlink.gateway.store import Store
from bandlink.gateway.venue import DEMO_BANDS, DEMO_VENUE, UNKNOWN_BAND_UID
from bandlink.gateway.worker import wall_ms
from bandlink.tools.broker import MosquittoBroker
from bandlink.tools.gatewayproc import GatewayGroup
from bandlink.tools.simreader import SimReader
from bandlink.tools.waiting import wait_for


@pytest.fixture
def misconfigured_exit(
    broker: MosquittoBroker, gateway: GatewayGroup, tmp_path: Path
) -> Iterator[SimReader]:
    """gate-2, the venue's exit gate, whose own config.json says it is an entry."""
    login = broker.reader_login("gate-2")
    with SimReader("gate-2", broker.url, tmp_path, direction="in", gate="north", login=login) as r:
        r.wait_online()
        yield r


def test_a_reader_runs_the_direction_the_venue_gives_it_not_its_own(
    misconfigured_exit: SimReader, store: Store
) -> None:
    seen = misconfigured_exit.tap(DEMO_BANDS["Ada"])
    assert (seen.pattern, seen.text) == ("green", "Goodbye Ada")
    (tap,) = store.recent_taps(1)
    assert (tap.reader_id, tap.direction, tap.reason) == ("gate-2", "out", "not_inside")


def test_an_entry_reader_never_says_goodbye_to_an_unknown_band(
    broker: MosquittoBroker, gateway: GatewayGroup, store: Store, tmp_path: Path
) -> None:
    """gate-1's config.json says `out`: the venue's Config makes it an entry gate again."""
    login = broker.reader_login("gate-1")
    with SimReader("gate-1", broker.url, tmp_path, direction="out", gate="north", login=login) as r:
        r.wait_online()
        seen = r.tap(UNKNOWN_BAND_UID)
    assert seen.pattern == "red" and "Goodbye" not in seen.text
    (tap,) = store.recent_taps(1)
    assert (tap.direction, tap.granted, tap.reason) == ("in", False, "unknown_band")


def test_an_operator_turning_a_gate_round_reaches_the_reader_while_it_runs(
    misconfigured_exit: SimReader, store: Store
) -> None:
    venue = copy.deepcopy(DEMO_VENUE)
    (gate_2,) = [r for r in venue["readers"] if r["id"] == "gate-2"]
    gate_2["direction"] = "in"
    today = venue_day(wall_ms(), ZoneInfo("UTC"))  # the demo site's zone (the default)
    store.load_venue(venue, today=today)  # as an operator would, beside the gateways
    # The gateways follow the catalog and publish the new Config; the reader applies it (and
    # says so in its log, and with a new Birth carrying the version).
    wait_for(misconfigured_exit.log, lambda log: "direction in, " in log.rsplit("config", 1)[-1])
    seen = misconfigured_exit.tap(DEMO_BANDS["Ada"])
    assert (seen.pattern, seen.text) == ("green", "Welcome Ada")
    (tap,) = store.recent_taps(1)
    assert (tap.direction, tap.reason) == ("in", "ok")
