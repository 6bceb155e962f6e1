"""Bands you can trust, end to end: a private Mosquitto, two gateway processes on one SQLite
database with a venue master key of their own (from the settings, not the development default),
gate readers running the real firmware, on whose antennas emulated NTAG 424 DNA bands (keys
from that master key) make a real SUN reading at every tap. The desk acts over the gateways'
HTTP API; a guest's phone opens the band's URL there."""

from __future__ import annotations

import http.client
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bandlink.gateway.store import Store
from bandlink.gateway.venue import DEMO_BANDS
from bandlink.tools.api import ApiClient, create_token
from bandlink.tools.broker import MosquittoBroker
from bandlink.tools.gatewayproc import GatewayGroup
from bandlink.tools.simreader import PLAIN_BAND, TORN, SimReader
from bandlink.tools.sunband import SunBands, development_bands

ADA, EMIL = DEMO_BANDS["Ada"], DEMO_BANDS["Emil"]
REFUSED = "Band not accepted - see staff"


@dataclass
class Gate:
    entry: SimReader
    exit: SimReader
    store: Store
    desk: ApiClient
    http_url: str
    bands: SunBands


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    master = os.urandom(16)
    db_url = f"sqlite:///{tmp_path / 'gateway.db'}"
    env = {"BANDLINK_BAND_MASTER_KEY": master.hex(), "BANDLINK_READER_RATE": "0"}
    bands = SunBands(master)
    with (
        MosquittoBroker(tmp_path / "mosquitto") as broker,
        GatewayGroup(broker, db_url, tmp_path, count=2, env=env, http=True) as gateways,
    ):
        readers = [
            SimReader(
                reader_id,
                broker.url,
                tmp_path,
                direction=direction,
                gate="north",
                login=broker.reader_login(reader_id),
                bands=bands,
            )
            for reader_id, direction in (("gate-1", "in"), ("gate-2", "out"))
        ]
        store = Store(db_url)
        with readers[0] as entry, readers[1] as exit_:
            entry.wait_online()
            exit_.wait_online()
            desk = ApiClient(gateways.http_urls[0], create_token(db_url, "desk", None)[1])
            yield Gate(entry, exit_, store, desk, gateways.http_urls[1], bands)
        store.close()


def _reasons(store: Store, count: int) -> list[str]:
    return [tap.reason for tap in reversed(store.recent_taps(count))]


def test_a_band_opens_the_gate_and_a_copy_of_it_does_not(gate: Gate) -> None:
    """Issue: a UID copied by any phone opened the gate. The band's own reading is green; its
    UID on a blank tag, a band made with another venue's key, and a reading shown a second
    time are red, and the guest stays where she was."""
    seen = [
        gate.entry.tap(ADA),  # in with a genuine reading
        gate.entry.tap(ADA),  # and another: decided as her, who is inside
        gate.exit.tap(ADA),  # out with a genuine reading
        gate.entry.tap(ADA, band=PLAIN_BAND),  # her UID alone
        gate.entry.tap(ADA, ndef=development_bands().band(ADA).ndef()),  # another master key
    ]
    assert [(f.pattern, f.text) for f in seen] == [
        ("green", "Welcome Ada"),
        ("red", "Already inside"),
        ("green", "Goodbye Ada"),
        ("red", REFUSED),
        ("red", REFUSED),
    ]
    copied = gate.bands.band(EMIL).ndef()  # one reading of Emil's band, copied as it was made
    assert gate.entry.tap(EMIL, ndef=copied).pattern == "green"
    assert gate.exit.tap(EMIL).pattern == "green"
    assert (gate.entry.tap(EMIL, ndef=copied).pattern) == "red"
    assert _reasons(gate.store, 8)[-6:] == ["ok", "bad_mac", "bad_mac", "ok", "ok", "replayed"]
    presence = gate.store.presence("g-ada", "parkside")
    assert presence is not None and not presence.inside


def test_a_band_pulled_away_mid_read_asks_for_another_tap(gate: Gate) -> None:
    before = gate.store.count_taps()
    assert gate.entry.tap(ADA, band=TORN).pattern == "retry"
    assert gate.store.count_taps() == before  # nothing was sent, so nothing recorded
    assert gate.entry.tap(ADA).pattern == "green"


def test_a_lost_band_is_refused_at_the_gate_and_its_replacement_lets_the_guest_in(
    gate: Gate,
) -> None:
    new = bytes.fromhex("04a1b2c3d4e5f7")
    reply = gate.desk.call(
        "POST", f"/v1/bands/{ADA.hex()}/replace", {"new_uid": new.hex(), "reason": "lost"}
    )
    assert reply.status == 201, reply
    found = gate.entry.tap(ADA)  # whoever found it, at the next tap, on another process
    assert (found.pattern, found.text) == ("red", "Band blocked - see staff")
    welcome = gate.entry.tap(new)
    assert (welcome.pattern, welcome.text) == ("green", "Welcome Ada")
    seen = gate.desk.call("GET", f"/v1/bands/{ADA.hex()}").body["taps"]
    assert seen[0]["reader"] == "gate-1" and seen[0]["after_block"] is True


def test_a_guest_logs_in_by_tapping_the_band_on_a_phone_once_per_reading(gate: Gate) -> None:
    url = gate.bands.band(EMIL).url()
    path = url[url.index("/b?") :]
    address = urlsplit(gate.http_url)
    answers = []
    for _ in range(2):  # the phone, then someone with a copy of the URL
        connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
        connection.request("GET", path)
        response = connection.getresponse()
        answers.append((response.status, response.getheader("Location")))
        connection.close()
    assert answers == [(303, "/v1/me"), (403, None)]
