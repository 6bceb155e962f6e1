"""Tap to pay, end to end, on each back end: a private Mosquitto, two gateway processes serving
the HTTP API on one database, and two pos readers running the real firmware (pos role, keypad
on the simulated board) on the MicroPython unix port. Tills and the cash desk are HTTP clients
with their own tokens.

One rig per back end for the whole module (starting it costs seconds); each test uses the
guests and readers it names and leaves no sale open."""

from __future__ import annotations

import signal
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bandlink.gateway.core.payments.pin import reader_pin_key
from bandlink.gateway.venue import DEMO_BANDS
from bandlink.tools.api import ApiClient, Reply, create_token
from bandlink.tools.broker import MosquittoBroker
from bandlink.tools.gatewayproc import GatewayGroup
from bandlink.tools.postgres import PostgresCluster
from bandlink.tools.simreader import Feedback, SimReader

SECRET = "hil-tests-secret-key-" + "x" * 24
TIMEOUT_S = 6  # a charge nobody pays expires after this
ADA, BO, CHEN, EMIL = (DEMO_BANDS[name] for name in ("Ada", "Bo", "Chen", "Emil"))


@dataclass
class Venue:
    gateways: GatewayGroup
    readers: dict[str, SimReader]
    tills: dict[str, ApiClient]  # "cafe" (one client per gateway process: "cafe-2")
    desk: ApiClient
    admin: ApiClient

    def charge(self, reader: str, amount: int, description: str = "Coffee") -> dict[str, Any]:
        body = {"amount": amount, "currency": "EUR", "description": description}
        reply = self.tills["cafe"].move("POST", f"/v1/readers/{reader}/charges", body)
        assert reply.status == 201, reply
        label = reply.body["label"]
        self.readers[reader].wait_show("idle", label)  # the reader shows the sale
        charge: dict[str, Any] = reply.body
        return charge

    def outcome(self, charge: dict[str, Any], wait: float = 10) -> dict[str, Any]:
        reply = self.tills["cafe"].call("GET", f"/v1/charges/{charge['id']}?wait={wait}")
        assert reply.status == 200, reply
        body: dict[str, Any] = reply.body
        return body

    def top_up(self, guest: str, amount: int) -> int:
        reply = self.desk.move(
            "POST", f"/v1/guests/{guest}/topups", {"amount": amount, "currency": "EUR"}
        )
        assert reply.status == 201, reply
        balance: int = reply.body["balance"]
        return balance

    def wallet(self, guest: str) -> dict[str, Any]:
        reply = self.desk.call("GET", f"/v1/guests/{guest}/wallet")
        assert reply.status == 200, reply
        body: dict[str, Any] = reply.body
        return body

    def books_balance(self) -> None:
        check = self.admin.call("GET", "/v1/ledger/check").body
        assert check["ok"] is True and check["total"] == 0, check


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def venue(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Venue]:
    workdir = tmp_path_factory.mktemp(f"pay-{request.param}")
    if request.param == "sqlite":
        db_url = f"sqlite:///{workdir / 'gateway.db'}"
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        db_url = cluster.create_database(f"pay_{uuid.uuid4().hex[:12]}")
    env = {
        "BANDLINK_SECRET_KEY": SECRET,
        "BANDLINK_CHARGE_TIMEOUT_S": str(TIMEOUT_S),
        "BANDLINK_READER_RATE": "0",
    }
    with (
        MosquittoBroker(workdir / "mosquitto") as broker,
        GatewayGroup(broker, db_url, workdir, count=2, env=env, http=True) as gateways,
    ):
        tokens = {
            name: create_token(db_url, role, outlet)[1]
            for name, role, outlet in (
                ("cafe", "till", "cafe"),
                ("desk", "desk", None),
                ("admin", "admin", None),
            )
        }
        first, second = gateways.http_urls
        readers = {
            reader_id: _pos_reader(reader_id, broker, workdir) for reader_id in ("pos-1", "pos-2")
        }
        try:
            for reader in readers.values():
                reader.wait_online()
            yield Venue(
                gateways,
                readers,
                {
                    "cafe": ApiClient(first, tokens["cafe"]),
                    "cafe-2": ApiClient(second, tokens["cafe"]),
                },
                ApiClient(second, tokens["desk"]),
                ApiClient(first, tokens["admin"]),
            )
        finally:
            for reader in readers.values():
                reader.stop()


def _pos_reader(reader_id: str, broker: MosquittoBroker, workdir: Path) -> SimReader:
    reader = SimReader(
        reader_id,
        broker.url,
        workdir,
        role="pos",
        pin_key=reader_pin_key(SECRET.encode(), reader_id),
        login=broker.reader_login(reader_id),
        deadline_ms=1500,
        hold_ms=300,
    )
    reader.start()
    return reader


def shown(feedback: Feedback) -> tuple[str, str]:
    return feedback.pattern, feedback.text


# -- approve, decline -------------------------------------------------------------------------


def test_a_band_pays_and_the_till_gets_the_receipt(venue: Venue) -> None:
    balance = venue.top_up("g-bo", 1000)
    charge = venue.charge("pos-1", 450)
    assert shown(venue.readers["pos-1"].tap(BO)) == ("green", "Paid EUR 4.50")
    done = venue.outcome(charge)
    assert (done["state"], done["guest"]) == ("approved", "g-bo")
    assert done["receipt"]["lines"] == [{"text": "Coffee", "amount": 450}]
    wallet = venue.wallet("g-bo")
    assert wallet["balance"] == balance - 450
    assert wallet["transactions"][0]["receipt"]["id"] == done["receipt"]["id"]
    venue.books_balance()


def test_not_enough_credit_declines_and_takes_nothing(venue: Venue) -> None:
    before = venue.wallet("g-bo")["balance"]
    charge = venue.charge("pos-1", before + 100)
    assert shown(venue.readers["pos-1"].tap(BO)) == ("red", "Not enough credit")
    assert venue.outcome(charge)["reason"] == "insufficient_funds"
    assert venue.wallet("g-bo")["balance"] == before


def test_charging_switched_off_and_a_daily_limit(venue: Venue) -> None:
    venue.top_up("g-ada", 5000)  # the Okafors' wallet, which Emil charges to as well
    off = {"enabled": False, "daily_limit": None, "pin_threshold": None}
    assert venue.desk.call("PUT", "/v1/guests/g-emil/charging", off).status == 200
    charge = venue.charge("pos-2", 300)
    assert shown(venue.readers["pos-2"].tap(EMIL)) == ("red", "Charging is off")
    assert venue.outcome(charge)["reason"] == "not_permitted"
    limited = {"enabled": True, "daily_limit": 500, "pin_threshold": None}
    assert venue.desk.call("PUT", "/v1/guests/g-emil/charging", limited).status == 200
    venue.charge("pos-2", 400)
    assert venue.readers["pos-2"].tap(EMIL).pattern == "green"
    charge = venue.charge("pos-2", 200)
    assert shown(venue.readers["pos-2"].tap(EMIL)) == ("red", "Daily limit reached")
    assert venue.outcome(charge)["reason"] == "limit_exceeded"


# -- PINs -------------------------------------------------------------------------------------


def test_above_her_threshold_ada_types_her_pin(venue: Venue) -> None:
    """Ada's venue threshold is EUR 20: the reader asks for the PIN, sends it sealed."""
    assert venue.desk.call("POST", "/v1/guests/g-ada/pin", {"pin": "2468"}).status == 200
    venue.top_up("g-ada", 5000)
    charge = venue.charge("pos-1", 2500, "Dinner")
    reader = venue.readers["pos-1"]
    assert shown(reader.tap(ADA)) == ("pin", "Enter PIN")
    assert shown(reader.press("2468#")) == ("green", "Paid EUR 25.00")
    assert venue.outcome(charge)["state"] == "approved"


def test_wrong_pins_lock_charging_until_the_desk_unlocks_it(venue: Venue) -> None:
    assert venue.desk.call("POST", "/v1/guests/g-ada/pin", {"pin": "2468"}).status == 200
    before = venue.wallet("g-ada")["balance"]
    charge = venue.charge("pos-1", 2500, "Dinner")
    reader = venue.readers["pos-1"]
    for expected in ("Wrong PIN", "Wrong PIN", "PIN locked - see desk"):
        assert reader.tap(ADA).pattern == "pin"
        assert shown(reader.press("1357#")) == ("red", expected)
    assert venue.outcome(charge)["state"] == "declined"
    assert venue.wallet("g-ada")["charging"]["locked"] is True
    venue.charge("pos-1", 2500, "Dinner")
    assert shown(reader.tap(ADA)) == ("red", "PIN locked - see desk")
    assert venue.desk.call("POST", "/v1/guests/g-ada/pin/unlock").status == 200
    charge = venue.charge("pos-1", 2500, "Dinner")
    assert reader.tap(ADA).pattern == "pin"
    assert reader.press("2468#").pattern == "green"
    assert venue.wallet("g-ada")["balance"] == before - 2500


# -- cancel, timeout, lost replies ------------------------------------------------------------


def test_the_till_cancels_and_the_reader_lets_go(venue: Venue) -> None:
    charge = venue.charge("pos-2", 700)
    reply = venue.tills["cafe-2"].move("POST", f"/v1/charges/{charge['id']}/cancel")
    assert reply.status == 200 and reply.body["state"] == "cancelled"
    reader = venue.readers["pos-2"]
    assert shown(reader.wait_show("red")) == ("red", "Cancelled")
    assert shown(reader.tap(BO)) == ("red", "No sale open")


def test_a_charge_nobody_pays_times_out_and_releases_its_reader(venue: Venue) -> None:
    charge = venue.charge("pos-2", 800)
    done = venue.outcome(charge, wait=TIMEOUT_S + 5)
    assert (done["state"], done["reason"]) == ("expired", "charge_expired")
    assert venue.readers["pos-2"].wait_show("red", timeout=5).text == "Cancelled"
    again = venue.charge("pos-2", 100)  # the reader is free again
    assert venue.tills["cafe"].move("POST", f"/v1/charges/{again['id']}/cancel").status == 200
    venue.readers["pos-2"].wait_show("red")


def test_a_reply_lost_while_the_gateways_stall_is_never_a_second_charge(venue: Venue) -> None:
    """Both gateway processes stop (SIGSTOP) while a band taps: no answer before the deadline,
    the reader shows RETRY. They resume and decide it; the guest taps again and the reader
    resends the same operation: the answer is the first decision, and the money moved once."""
    before = venue.top_up("g-bo", 600)
    charge = venue.charge("pos-1", 250)
    reader = venue.readers["pos-1"]
    venue.gateways.send_signal(signal.SIGSTOP)
    try:
        assert reader.tap(BO, timeout=5).pattern == "retry"
    finally:
        venue.gateways.send_signal(signal.SIGCONT)
    assert shown(reader.tap(BO)) == ("green", "Paid EUR 2.50")
    assert venue.outcome(charge)["state"] == "approved"
    assert venue.wallet("g-bo")["balance"] == before - 250
    venue.books_balance()


# -- races between processes --------------------------------------------------------------------


def test_two_tills_racing_on_one_wallet_never_overdraw_it(venue: Venue) -> None:
    """pos-1 and pos-2 each charge a little over half of Bo's wallet, both tapped at once (the
    taps reach either gateway process): one is paid, the other declined, never below zero."""
    left = venue.top_up("g-bo", 1000)
    amount = left // 2 + 1  # one fits, two do not
    charges = [venue.charge("pos-1", amount), venue.charge("pos-2", amount)]
    results: dict[str, Feedback] = {}
    barrier = threading.Barrier(2)

    def tap(reader_id: str) -> None:
        barrier.wait()
        results[reader_id] = venue.readers[reader_id].tap(BO)

    threads = [threading.Thread(target=tap, args=(r,)) for r in ("pos-1", "pos-2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(f.pattern for f in results.values()) == ["green", "red"], results
    states = sorted(venue.outcome(c)["state"] for c in charges)
    assert states == ["approved", "declined"]
    assert venue.wallet("g-bo")["balance"] == left - amount >= 0
    venue.books_balance()


def test_fifty_copies_of_a_top_up_across_two_processes_post_once(venue: Venue) -> None:
    before = venue.wallet("g-chen")["balance"]
    key = str(uuid.uuid4())
    body = {"amount": 1200, "currency": "EUR"}
    clients = [ApiClient(url, venue.desk.token) for url in venue.gateways.http_urls]

    def send(i: int) -> Reply:
        return clients[i % 2].call("POST", "/v1/guests/g-bo/topups", body, key=key)

    with ThreadPoolExecutor(50) as pool:
        replies = list(pool.map(send, range(50)))
    assert {(r.status, str(r.body)) for r in replies} == {(replies[0].status, str(replies[0].body))}
    assert replies[0].status == 201
    topups = [
        t for t in venue.wallet("g-bo")["transactions"] if t["id"] == replies[0].body["topup"]["id"]
    ]
    assert len(topups) == 1
    assert venue.wallet("g-chen")["balance"] == before  # nobody else's money moved
    venue.books_balance()
