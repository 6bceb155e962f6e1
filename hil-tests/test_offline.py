"""The gate never stops: real-firmware gates keep deciding from their band lists while no
gateway is up, and when one is back every tap a guest saw is recorded exactly once, with the
offline exceptions on the reconciliation report. A real Mosquitto, real gateway processes
(killed with SIGKILL), the real firmware on the MicroPython unix port; SQLite and PostgreSQL."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bandlink.gateway.store import Store
from bandlink.gateway.venue import DEMO_BANDS
from bandlink.tools.broker import MosquittoBroker
from bandlink.tools.gatewayproc import GatewayGroup
from bandlink.tools.simreader import SimReader
from bandlink.tools.waiting import wait_for

ADA, BO, DARA, EMIL = (DEMO_BANDS[n] for n in ("Ada", "Bo", "Dara", "Emil"))
SITE = "parkside"


@pytest.fixture
def gates(broker: MosquittoBroker, tmp_path: Path) -> Iterator[tuple[SimReader, SimReader]]:
    """The north gate's entry and exit readers, as the demo venue sets them up."""
    readers = [
        SimReader(
            rid, broker.url, tmp_path, direction=way, gate="north", login=broker.reader_login(rid)
        )
        for rid, way in (("gate-1", "in"), ("gate-2", "out"))
    ]
    for reader in readers:
        reader.start()
    try:
        for reader in readers:
            reader.wait_online()
        yield readers[0], readers[1]
    finally:
        for reader in readers:
            reader.stop()


def test_gates_decide_alone_while_no_gateway_is_up_and_every_tap_is_recorded_once(
    broker: MosquittoBroker, any_db_url: str, tmp_path: Path, gates: tuple[SimReader, SimReader]
) -> None:
    entry, leave = gates
    shown: list[str] = []  # every light a guest saw

    def tap(reader: SimReader, band: bytes) -> str:
        shown.append(reader.tap(band).pattern)
        return shown[-1]

    with GatewayGroup(broker, any_db_url, tmp_path, count=2) as gateways:
        # Each gate is sent its list on its birth: Ada and Emil (Bo's ticket has expired, Dara's
        # band is blocked).
        for reader in gates:
            held = wait_for(reader.band_list, lambda h: h[1] == 2)
            assert held[1] == 2, (reader.reader_id, held)
        assert tap(entry, ADA) == "green"  # online: the gateway decides
        gateways.send_signal(signal.SIGKILL)  # every gateway process: their wills say offline
        # The desk blocks Emil's band meanwhile: no gateway is up to tell the gates.
        store = Store(any_db_url)
        store.block_band(EMIL, reason="stolen", now_ms=0)
        store.close()
        time.sleep(1)  # the broker hands the readers the wills (a tap before would wait, RETRY)
        assert tap(entry, BO) == "red-offline"  # not on the list: no valid ticket
        assert tap(entry, DARA) == "red-offline"  # blocked before the list was made
        assert tap(entry, EMIL) == "green-offline"  # blocked since: the list still has him
        assert tap(entry, EMIL) == "red-offline"  # let in alone already: anti-passback
        assert tap(leave, ADA) == "green-offline"  # exits are never refused
    with GatewayGroup(broker, any_db_url, tmp_path, count=1, venue=None):
        store = Store(any_db_url)
        try:
            # Uploaded and acknowledged: every light a guest saw is one record, none twice.
            wait_for(store.count_taps, lambda n: n >= len(shown), timeout=45)
            assert store.count_taps() == len(shown), shown
            offline = store.offline_taps()
            assert len(offline) == len(shown) - 1 == len({t.mid for t in offline})
            by_band = {(t.reader_id, t.uid, t.granted): t for t in offline}
            assert by_band[("gate-1", EMIL, True)].exception == "band_blocked"
            assert by_band[("gate-1", EMIL, False)].reason == "already_inside"
            assert by_band[("gate-1", BO, False)].reason == "offline_not_listed"
            assert by_band[("gate-2", ADA, True)].exception is None
            exceptions = store.offline_taps(exceptions_only=True)
            assert [t.exception for t in exceptions] == ["band_blocked"]
            ada = store.presence("g-ada", SITE)
            assert ada is not None and not ada.inside, "she left through the exit, offline"
            emil = store.presence("g-emil", SITE)
            assert emil is not None and emil.inside, "whoever held Emil's band went in"
            # Online again: the gateway decides, and Emil's band is refused.
            assert wait_for(lambda: entry.tap(EMIL).pattern, lambda p: p == "red") == "red"
        finally:
            store.close()
