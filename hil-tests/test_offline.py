"""The gate never stops: real-firmware gates keep deciding from their band lists while no
gateway is up, and when one is back every tap a guest saw is recorded exactly once, with the
offline exceptions on the reconciliation report. A till sells alone too, within its offline
floor. A real Mosquitto, real gateway processes (killed with SIGKILL), the real firmware on the
MicroPython unix port; SQLite and PostgreSQL (the till: SQLite)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bandlink.gateway.core.payments.pin import offline_pin_key, reader_pin_key
from bandlink.gateway.store import Store
from bandlink.gateway.venue import DEMO_BANDS
from bandlink.protocol import POS, Command, Config, encode, lists, messages, topics
from bandlink.tools.api import ApiClient, create_token
from bandlink.tools.broker import MosquittoBroker
from bandlink.tools.gatewayproc import GatewayGroup
from bandlink.tools.simreader import SimReader
from bandlink.tools.waiting import wait_for
from bandlink.tools.wire import connect

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


SECRET = "hil-tests-secret-key-" + "x" * 24
TILL = "pos-3"  # the demo venue's shop till
TS = 1_795_000_000_000


def push_to_till(broker: MosquittoBroker, *messages_: Config | Command) -> None:
    """Publish as the gateway would what it does not yet send a till: a Config with an offline
    floor and cap (retained, a version above any the gateway has published), a band list."""
    harness = connect(broker, broker.harness_login("bltest-till"), client_id="bltest-till")
    try:
        for message in messages_:
            kind, retain = (
                (topics.CFG, True) if isinstance(message, Config) else (topics.CMD, False)
            )
            topic = topics.reader_topic(TILL, kind)
            harness.client.publish(topic, encode(message), qos=1, retain=retain).wait_for_publish(5)
    finally:
        harness.close()


def test_a_till_sells_alone_and_the_sale_is_recorded_once_when_a_gateway_is_back(
    broker: MosquittoBroker, db_url: str, tmp_path: Path
) -> None:
    env = {"BANDLINK_SECRET_KEY": SECRET}
    till = SimReader(
        TILL,
        broker.url,
        tmp_path,
        role="pos",
        pin_key=reader_pin_key(SECRET.encode(), TILL),
        offline_pin_key=offline_pin_key(SECRET.encode()),
        login=broker.reader_login(TILL),
    )
    with GatewayGroup(broker, db_url, tmp_path, count=1, env=env, http=True) as gateways, till:
        till.wait_online()
        config = Config(
            reader=TILL,
            ts=TS,
            version=1_000_000,
            role=POS,
            deadline_ms=800,
            hold_ms=300,
            offline_floor=2000,
            offline_cap=5000,
        )
        snapshot = Command(
            reader=TILL,
            ts=TS,
            mid=os.urandom(16),
            op=messages.LIST_SNAPSHOT,
            list_version=9,
            chunk=0,
            chunks=1,
            entries=lists.entry(BO, lists.PAY),
        )
        push_to_till(broker, config, snapshot)
        wait_for(till.band_list, lambda held: held == (9, 1))
        wait_for(till.log, lambda log: "config applied, version 1000000" in log)
        shop = ApiClient(gateways.http_urls[0], create_token(db_url, "till", "shop")[1])
        body = {"amount": 450, "currency": "EUR", "description": "Cap"}
        reply = shop.move("POST", f"/v1/readers/{TILL}/charges", body)
        assert reply.status == 201, reply
        till.wait_show("idle", reply.body["label"])
        gateways.send_signal(signal.SIGKILL)  # its will says offline
        time.sleep(1)  # the broker hands the till the will (a tap before would wait, RETRY)
        seen = till.tap(BO)
        assert (seen.pattern, seen.text) == ("green-offline", "Paid")
        (kept,) = till.pending_operations()  # on flash
    with GatewayGroup(broker, db_url, tmp_path, count=1, env=env, venue=None), till:
        till.wait_online()
        wait_for(till.pending_operations, lambda ops: not ops, timeout=20)
        assert till.pending_operations() == [], "uploaded and acknowledged"
        store = Store(db_url)
        try:
            (sale,) = store.offline_taps(reader=TILL)
            assert (sale.uid, sale.role, sale.granted, sale.reason) == (
                BO,
                "pos",
                True,
                "offline_list",
            )
            assert sale.mid in kept
        finally:
            store.close()
