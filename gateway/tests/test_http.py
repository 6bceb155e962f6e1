"""The HTTP API served by real uvicorn on a real port, over the real store (SQLite and
PostgreSQL): authentication and roles, idempotency under races, money-moving routes, problem
details for bad input, and the OpenAPI page. Commands for readers are captured where the MQTT
adapter would publish them."""

from __future__ import annotations

import csv
import io
import socket
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from bandlink.gateway.core.handler import Core, Outgoing
from bandlink.gateway.core.payments.records import Charge
from bandlink.gateway.http import auth
from bandlink.gateway.http.app import create_app
from bandlink.gateway.http.deps import Api
from bandlink.gateway.http.server import HttpServer
from bandlink.gateway.store import Store
from bandlink.gateway.venue import DEMO_BANDS
from bandlink.protocol import Command, decode, messages
from bandlink.tools.api import ApiClient, Reply

from .pair import NOON_MS, Pair
from .test_journal import upload
from .test_offline_sales import offline_sale

SECRET = b"k" * 32  # the served gateway's secret key (PIN keys and hashes follow from it)


@dataclass
class Sent:
    frames: list[Outgoing] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, frames: Sequence[Outgoing]) -> None:
        with self.lock:
            self.frames.extend(frames)

    def commands(self) -> list[Command]:
        found = [decode(frame.payload) for frame in self.frames]
        return [c for c in found if isinstance(c, Command)]


@dataclass
class Served:
    url: str
    store: Store
    sent: Sent
    tokens: dict[str, str]

    def as_(self, who: str) -> ApiClient:
        return ApiClient(self.url, self.tokens.get(who, who))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(store: Store) -> Iterator[Served]:
    sent = Sent()
    api = Api(
        store=store,
        core=Core(secret_key=SECRET),
        publish=sent,
        clock=lambda: NOON_MS,
        currency="EUR",
        charge_timeout_ms=120_000,
    )
    tokens = {}
    for name, role, outlet in (
        ("cafe", "till", "cafe"),
        ("shop", "till", "shop"),
        ("desk", "desk", None),
        ("ops", "operator", None),
        ("admin", "admin", None),
    ):
        secret, token = auth.new_token(role, outlet, NOON_MS)
        store.add_token(token, auth.digest(secret))
        tokens[name] = secret
    port = _free_port()
    server = HttpServer(create_app(api), "127.0.0.1", port)
    server.start()
    yield Served(f"http://127.0.0.1:{port}", store, sent, tokens)
    server.stop()


def problem(reply: Reply, status: int, kind: str) -> None:
    assert reply.status == status, reply
    assert reply.content_type == "application/problem+json"
    assert reply.body["type"] == f"urn:bandlink:problem:{kind}", reply.body


def ledger_check(served: Served) -> dict[str, object]:
    reply = served.as_("admin").call("GET", "/v1/ledger/check")
    assert reply.status == 200
    body: dict[str, object] = reply.body
    return body


SALE = {"amount": 450, "currency": "EUR", "description": "Coffee"}
TOPUP = {"amount": 2000, "currency": "EUR"}


# -- who may call -------------------------------------------------------------------------------


def test_no_token_a_wrong_one_or_a_wrong_role_changes_nothing(served: Served) -> None:
    for who in ("", "blt_not-a-token"):
        reply = served.as_(who).call("POST", "/v1/guests/g-ada/topups", SALE, key="k1")
        problem(reply, 401, "unauthenticated")
    problem(
        served.as_("cafe").call("POST", "/v1/guests/g-ada/topups", SALE, key="k2"), 403, "forbidden"
    )
    problem(
        served.as_("desk").call("POST", "/v1/readers/pos-1/charges", SALE, key="k3"),
        403,
        "forbidden",
    )
    problem(served.as_("cafe").call("GET", "/v1/ledger/check"), 403, "forbidden")
    assert ledger_check(served)["transfers"] == 0
    assert served.sent.frames == []


def test_a_till_charges_only_at_its_outlets_readers(served: Served) -> None:
    # Another outlet's reader is as good as none: the till learns nothing of it.
    reply = served.as_("shop").move("POST", "/v1/readers/pos-1/charges", SALE)
    problem(reply, 404, "unknown-reader")
    problem(
        served.as_("shop").move("POST", "/v1/readers/gate-1/charges", SALE), 404, "unknown-reader"
    )
    created = served.as_("cafe").move("POST", "/v1/readers/pos-1/charges", SALE)
    assert created.status == 201
    # Another outlet's charge does not exist for this till.
    problem(
        served.as_("shop").call("GET", f"/v1/charges/{created.body['id']}"), 404, "unknown-charge"
    )
    problem(
        served.as_("shop").move("POST", f"/v1/charges/{created.body['id']}/cancel"),
        404,
        "unknown-charge",
    )


# -- a charge -----------------------------------------------------------------------------------


def test_a_charge_arms_its_reader_and_cancel_releases_it(served: Served) -> None:
    till = served.as_("cafe")
    created = till.move("POST", "/v1/readers/pos-1/charges", SALE)
    assert created.status == 201 and created.body["state"] == "pending"
    (armed,) = served.sent.commands()
    assert armed.op == messages.CHARGE and armed.reader == "pos-1" and armed.charge is not None
    assert (armed.charge.hex(), armed.amount, armed.currency) == (created.body["id"], 450, "EUR")
    assert armed.label == "EUR 4.50 Coffee"
    busy = till.call("POST", "/v1/readers/pos-1/charges", SALE, key="next-sale")
    problem(busy, 409, "reader-busy")
    waited = till.call("GET", f"/v1/charges/{created.body['id']}?wait=0.3")
    assert waited.status == 200 and waited.body["state"] == "pending"
    cancelled = till.move("POST", f"/v1/charges/{created.body['id']}/cancel")
    assert cancelled.status == 200 and cancelled.body["state"] == "cancelled"
    assert served.sent.commands()[-1].op == messages.CANCEL
    again = till.move("POST", f"/v1/charges/{created.body['id']}/cancel")
    problem(again, 409, "charge-completed")
    # "Busy" is not kept under its key: the same request, once the reader is free, is made.
    assert till.call("POST", "/v1/readers/pos-1/charges", SALE, key="next-sale").status == 201


def test_a_repeated_key_gets_the_original_answer_and_another_body_is_refused(
    served: Served,
) -> None:
    till = served.as_("cafe")
    first = till.call("POST", "/v1/readers/pos-1/charges", SALE, key="order-77")
    again = till.call("POST", "/v1/readers/pos-1/charges", SALE, key="order-77")
    assert (again.status, again.body) == (first.status, first.body)
    # One sale: the repeat shows it again (in case the first CHARGE was lost), under its id.
    assert {c.charge.hex() for c in served.sent.commands() if c.charge} == {first.body["id"]}
    other = till.call("POST", "/v1/readers/pos-1/charges", {**SALE, "amount": 999}, key="order-77")
    problem(other, 422, "idempotency-key-reused")
    # A key is the caller's own: another till's same key is another request.
    assert (
        served.as_("shop").call("POST", "/v1/readers/pos-3/charges", SALE, key="order-77").status
        == 201
    )
    problem(till.call("POST", "/v1/readers/pos-2/charges", SALE), 400, "idempotency-key-required")


def test_fifty_parallel_copies_of_a_top_up_post_once(served: Served) -> None:
    desk = served.as_("desk")
    body = {"amount": 2500, "currency": "EUR"}
    with ThreadPoolExecutor(50) as pool:
        replies = list(
            pool.map(
                lambda _i: desk.call("POST", "/v1/guests/g-ada/topups", body, key="t-1"), range(50)
            )
        )
    assert {r.status for r in replies} == {201}
    assert len({str(r.body) for r in replies}) == 1
    wallet = desk.call("GET", "/v1/guests/g-ada/wallet").body
    assert wallet["balance"] == 2500 and len(wallet["transactions"]) == 1
    assert ledger_check(served)["transfers"] == 1
    # A minute later (any time later): the same answer, nothing posted.
    late = desk.call("POST", "/v1/guests/g-ada/topups", body, key="t-1")
    assert (late.status, late.body) == (replies[0].status, replies[0].body)


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"amount": -450, "currency": "EUR"}, "invalid-amount"),
        ({"amount": 0, "currency": "EUR"}, "invalid-amount"),
        ({"amount": 4.5, "currency": "EUR"}, "invalid-request"),
        ({"amount": "450", "currency": "EUR"}, "invalid-request"),
        ({"amount": 10**15, "currency": "EUR"}, "invalid-amount"),
        ({"amount": 450, "currency": "XYZ"}, "unknown-currency"),
        ({"amount": 450, "currency": "USD"}, "wrong-currency"),
        ({"amount": 450}, "invalid-request"),
        ({"amount": 450, "currency": "EUR", "tip": 1}, "invalid-request"),
    ],
)
def test_bad_input_is_a_clear_problem_and_posts_nothing(
    served: Served, body: dict[str, object], kind: str
) -> None:
    status = 422
    problem(served.as_("cafe").move("POST", "/v1/readers/pos-1/charges", body), status, kind)
    problem(served.as_("desk").move("POST", "/v1/guests/g-ada/topups", body), status, kind)
    assert served.sent.frames == []
    assert ledger_check(served)["transfers"] == 0


def test_unknown_guest_reader_and_charge_are_404(served: Served) -> None:
    problem(
        served.as_("admin").move("POST", "/v1/readers/pos-9/charges", SALE), 404, "unknown-reader"
    )
    problem(served.as_("desk").move("POST", "/v1/guests/g-x/topups", TOPUP), 404, "unknown-guest")
    problem(served.as_("desk").call("GET", "/v1/guests/g-x/wallet"), 404, "unknown-guest")
    problem(served.as_("cafe").call("GET", "/v1/charges/00"), 404, "unknown-charge")
    problem(served.as_("cafe").call("GET", "/v1/charges/" + "ab" * 16), 404, "unknown-charge")
    problem(
        served.as_("admin").move("POST", "/v1/readers/gate-1/charges", SALE),
        422,
        "not-a-pos-reader",
    )


def test_desk_sets_charging_and_pin_and_cashes_out(served: Served) -> None:
    desk = served.as_("desk")
    assert (
        desk.move("POST", "/v1/guests/g-ada/topups", {"amount": 1000, "currency": "EUR"}).status
        == 201
    )
    charging = {"enabled": True, "daily_limit": 3000, "pin_threshold": 2000}
    assert desk.call("PUT", "/v1/guests/g-ada/charging", charging).body["daily_limit"] == 3000
    problem(desk.call("POST", "/v1/guests/g-ada/pin", {"pin": "12a4"}), 422, "invalid-request")
    # A field left out must not lift a limit: all three, every time.
    partial = desk.call("PUT", "/v1/guests/g-ada/charging", {"enabled": True})
    problem(partial, 422, "invalid-request")
    assert desk.call("GET", "/v1/guests/g-ada/wallet").body["charging"]["daily_limit"] == 3000
    assert desk.call("POST", "/v1/guests/g-ada/pin", {"pin": "2468"}).body["pin_set"] is True
    wallet = desk.call("GET", "/v1/guests/g-ada/wallet").body
    assert wallet["charging"] == {**charging, "pin_set": True, "locked": False, "spent_today": 0}
    out = desk.move("POST", "/v1/guests/g-ada/cashout")
    assert out.status == 201 and out.body["cashout"]["amount"] == 1000
    problem(desk.move("POST", "/v1/guests/g-ada/cashout"), 409, "nothing-to-cash-out")
    assert ledger_check(served)["ok"] is True


def test_the_openapi_page_lists_every_endpoint_with_its_errors(served: Served) -> None:
    spec = ApiClient(served.url, None).call("GET", "/openapi.json").body
    expected = {
        ("post", "/v1/readers/{reader}/charges"),
        ("get", "/v1/charges/{charge}"),
        ("post", "/v1/charges/{charge}/cancel"),
        ("post", "/v1/charges/{charge}/refunds"),
        ("post", "/v1/guests/{guest}/topups"),
        ("post", "/v1/guests/{guest}/cashout"),
        ("get", "/v1/guests/{guest}/wallet"),
        ("put", "/v1/guests/{guest}/charging"),
        ("post", "/v1/guests/{guest}/pin"),
        ("post", "/v1/guests/{guest}/pin/unlock"),
        ("get", "/v1/ledger/check"),
    }
    listed = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert expected <= listed
    for method, path in expected:
        responses = spec["paths"][path][method]["responses"]
        assert "401" in responses and "422" in responses, (method, path)
    assert "ProblemDetails" in spec["components"]["schemas"]
    assert ApiClient(served.url, None).call("GET", "/docs").status == 200


# -- the reconciliation report ------------------------------------------------------------------


def test_the_reconciliation_report_lists_the_offline_exceptions(served: Served) -> None:
    """Readers decided alone; the operator sees how many, and each entry the gateway would have
    refused, as JSON and as CSV, in a time range. A till or the desk may not read it."""
    from .test_journal import BO, DARA, offline_tap, upload

    pair = Pair(served.store)
    ok, blocked = offline_tap(DEMO_BANDS["Ada"]), offline_tap(DARA, ts=NOON_MS - 60_000)
    expired = offline_tap(BO, reader="gate-3", ts=NOON_MS - 30_000)
    refused = offline_tap(DEMO_BANDS["Emil"], granted=False)
    upload(pair, ok, blocked, refused)
    upload(pair, expired)
    report = served.as_("ops").call("GET", "/v1/reconciliation")
    assert report.status == 200, report
    assert (report.body["offline_taps"], report.body["granted"]) == (4, 3)
    assert report.body["exceptions_by_kind"] == {"band_blocked": 1, "no_valid_ticket": 1}
    rows = report.body["exceptions"]
    assert [(r["mid"], r["exception"], r["shown"]) for r in rows] == [
        (blocked.mid.hex(), "band_blocked", "green"),
        (expired.mid.hex(), "no_valid_ticket", "green"),
    ]
    one_reader = served.as_("ops").call("GET", "/v1/reconciliation?reader=gate-3")
    assert [r["mid"] for r in one_reader.body["exceptions"]] == [expired.mid.hex()]
    since = served.as_("ops").call("GET", f"/v1/reconciliation?since_ms={NOON_MS - 45_000}")
    assert [r["mid"] for r in since.body["exceptions"]] == [expired.mid.hex()]
    sheet = served.as_("ops").call("GET", "/v1/reconciliation.csv")
    assert sheet.status == 200 and sheet.content_type.startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(sheet.body)))
    assert [(line["uid"], line["exception"]) for line in lines] == [
        (DARA.hex(), "band_blocked"),
        (BO.hex(), "no_valid_ticket"),
    ]
    for who in ("cafe", "desk", ""):
        assert served.as_(who).call("GET", "/v1/reconciliation").status in (401, 403)
        assert served.as_(who).call("GET", "/v1/reconciliation.csv").status in (401, 403)


# -- offline sales: the report and the wallet ---------------------------------------------------


def till_charge(served: Served, reader: str, amount: int) -> Charge:
    """A sale the cafe's till rings up over the API at ``reader`` (which then goes offline)."""
    created = served.as_("cafe").move(
        "POST", f"/v1/readers/{reader}/charges", {**SALE, "amount": amount}
    )
    assert created.status == 201, created
    charge = served.store.read(lambda books: books.charge(bytes.fromhex(created.body["id"])))
    assert charge is not None
    return charge


def top_up_at_the_desk(served: Served, guest: str, amount: int) -> None:
    reply = served.as_("desk").move(
        "POST", f"/v1/guests/{guest}/topups", {**TOPUP, "amount": amount}
    )
    assert reply.status == 201, reply


def test_the_report_names_each_offline_sales_charge_amount_and_overdraft(served: Served) -> None:
    """Two tills sold alone past what the wallets held (Ada's topped up too little, Bo's never):
    the operator sees each sale under the charge id the till was given, with its amount, the
    guest and how far it overdrew, and the overdrafts' total; a till or no token sees nothing."""
    topped_up = 300
    top_up_at_the_desk(served, "g-ada", topped_up)
    coffee, ice_cream = till_charge(served, "pos-1", 450), till_charge(served, "pos-2", 200)
    pair = Pair(served.store)
    upload(pair, offline_sale(coffee))
    upload(pair, offline_sale(ice_cream, DEMO_BANDS["Bo"]))
    report = served.as_("ops").call("GET", "/v1/reconciliation")
    assert report.status == 200, report
    rows = {row["charge"]: row for row in report.body["exceptions"]}
    owed = {coffee.id.hex(): coffee.amount - topped_up, ice_cream.id.hex(): ice_cream.amount}
    assert {charge: row["overdraft"] for charge, row in rows.items()} == owed
    for charge, guest in ((coffee, "g-ada"), (ice_cream, "g-bo")):
        row = rows[charge.id.hex()]
        assert (row["amount"], row["currency"], row["guest"]) == (charge.amount, "EUR", guest)
        assert (row["shown"], row["exception"]) == ("green", "insufficient_funds")
    assert report.body["overdrafts"] == sum(owed.values())
    sheet = served.as_("ops").call("GET", "/v1/reconciliation.csv")
    lines = list(csv.DictReader(io.StringIO(sheet.body)))
    assert {line["charge"]: int(line["overdraft"]) for line in lines} == owed
    problem(served.as_("").call("GET", "/v1/reconciliation"), 401, "unauthenticated")
    problem(served.as_("cafe").call("GET", "/v1/reconciliation"), 403, "forbidden")


def owed_and_balance(served: Served, guest: str) -> tuple[object, object]:
    """What the desk's wallet page says the guest's party owes, and holds."""
    reply = served.as_("desk").call("GET", f"/v1/guests/{guest}/wallet")
    assert reply.status == 200, reply
    return reply.body["overdraft"], reply.body["balance"]


def test_the_wallet_shows_what_an_offline_sale_overdrew_until_it_is_topped_up(
    served: Served,
) -> None:
    """The desk sees what the Okafors owe after a till sold alone past their wallet (on Ada's
    page and Emil's: one wallet), nothing while sales stay within it or for another guest, and
    nothing once a top-up covers it. A till may not look."""
    topped_up = 500
    top_up_at_the_desk(served, "g-ada", topped_up)
    pair = Pair(served.store)
    within = till_charge(served, "pos-1", 300)
    upload(pair, offline_sale(within))
    assert owed_and_balance(served, "g-ada") == (0, topped_up - within.amount)
    past = till_charge(served, "pos-1", 450)
    upload(pair, offline_sale(past))
    owed = within.amount + past.amount - topped_up
    assert owed_and_balance(served, "g-ada") == owed_and_balance(served, "g-emil") == (owed, -owed)
    assert owed_and_balance(served, "g-chen")[0] == 0
    check = ledger_check(served)
    assert (check["ok"], check["overdrawn"]) == (True, 1)  # owed, not a broken book
    top_up_at_the_desk(served, "g-ada", owed)
    assert owed_and_balance(served, "g-ada") == (0, 0)
    problem(served.as_("").call("GET", "/v1/guests/g-ada/wallet"), 401, "unauthenticated")
    problem(served.as_("cafe").call("GET", "/v1/guests/g-ada/wallet"), 403, "forbidden")
