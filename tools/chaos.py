"""`bandlink chaos`: break an installation on loopback and count what the guests saw against
what the gateway recorded. What an operator runs to trust readers, broker and gateways together.

A private Mosquitto, two gateway processes on one store (serving the HTTP API too), gate
readers running the real firmware on the MicroPython unix port (entries and exits in turn),
each tapped continuously by guest after guest (no band twice at one reader in a run, so every
light is its own operation), and a till: a cashier rings up one sale after another over HTTP
and a guest pays each (a quarter of them with an empty wallet). Partway through, as the till
shows a sale, one fault:

- ``broker-restart``: Mosquitto stopped, and started again after the outage;
- ``gateway-kill``: one gateway process SIGKILLed with the other up, then both, then restarted;
- ``reader-kill``: the first reader SIGKILLed now and then while it taps (its journal may be
  mid-write), and booted again;
- ``partition``: the first gate and the till cut off from the broker (a black hole: nothing
  comes back) for the outage, while they keep deciding.

Then the load stops, every part is up, and the readers' journals drain. The report:

- ``seen``: lights guests saw (green, red, retry, online or decided alone);
- ``recorded``: taps of these readers in the gateway's store;
- ``duplicates_dropped``: answers the gateway gave from its store (a redelivery, a resend, an
  upload sent again after its acknowledgement was lost);
- ``lost``: lights with no record (must be 0); ``doubled``: records with no light, beyond the
  taps a reader kill cut short (must be 0); ``cut``: taps in flight when a reader was killed
  (the guest saw nothing; the journal may or may not have had them); ``answers_lost``: "try
  again" shown for a tap the gateway had decided (its answer lost with the broker): recorded
  once, as decided, and the same band tapping again would get that answer (SPEC, Resending);
- ``offline``: taps decided alone; ``exceptions``: those on the reconciliation report, which
  must be exactly the offline taps let in that the gateway would have refused;
- the till's money: ``sales`` tapped, ``paid`` (charges with their payment), ``paid_twice``
  (must be 0), ``unpaid_greens`` (a green light for a sale neither paid nor on the report:
  must be 0), ``ledger_total`` (must be 0), ``overdrawn`` wallets (each one an overdraft on
  the report: ``overdrafts_reported``).
"""

from __future__ import annotations

import json
import math
import random
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bandlink.gateway.core.payments import ledger
from bandlink.gateway.core.payments.operations import Books
from bandlink.gateway.core.payments.pin import offline_pin_key, reader_pin_key
from bandlink.gateway.core.records import TapRecord
from bandlink.gateway.store import Store

from .api import ApiClient, Reply, create_token
from .broker import MosquittoBroker
from .gatewayproc import GatewayGroup
from .loadgen import band_uid
from .proxy import Partition
from .simreader import ReaderError, SimReader

FAULTS = ("broker-restart", "gateway-kill", "reader-kill", "partition")
TILL = "chaos-till"
SECRET = "chaos-secret-key-" + "x" * 24  # the gateways' (PIN keys derive from it)
OFFLINE_FLOOR, OFFLINE_CAP = 2_000, 5_000  # the till's, in cents
TOP_UP = 2_500  # each till guest's wallet, but every fourth guest's: empty
_AMOUNTS = range(200, 1_600, 50)
PACE_S = 0.1  # between one guest's light and the next guest's tap, at each reader
_TILL_HOLD_MS = 300  # how long the till shows its light
_FINDING_BAND_S = (0.2, 1.0)  # from the till showing a sale to the guest's tap
# The shortest sale: the guest finds their band, the till holds its light, the next guest.
_SALE_MIN_S = _FINDING_BAND_S[0] + _TILL_HOLD_MS / 1000 + PACE_S
DRAIN_S = 60.0  # an unanswered tap waits out its 30 s resend window before it is uploaded
# test_chaos starts four rigs at once on two cores, and a minute's partition needs a venue of
# 2,000 guests: a gateway's first start (import, migrate, load) has taken over 30 s there.
_GATEWAY_START_S = 120.0
_GRANTED = ("green", "green-offline")
_ROWS = (
    "seen",
    "recorded",
    "duplicates_dropped",
    "lost",
    "doubled",
    "cut",
    "answers_lost",
    "reboots",
    "offline",
    "sales",
    "paid",
    "paid_twice",
    "unpaid_greens",
    "ledger_total",
    "overdrawn",
    "overdrafts_reported",
)
_BAND_KIND = 0x5C


@dataclass
class ChaosReport:
    fault: str
    readers: int
    seconds: float
    outage_s: float
    seen: int = 0
    recorded: int = 0
    duplicates_dropped: int = 0
    lost: int = 0
    doubled: int = 0
    cut: int = 0
    answers_lost: int = 0
    reboots: int = 0
    offline: int = 0
    exceptions: int = 0
    exceptions_expected: int = 0
    # The till: sales rung up and tapped, their charges paid, paid more than once (must be 0),
    # green lights with no payment and no exception (must be 0), the ledger's sum (must be 0),
    # wallets below zero (each must be a reported overdraft), overdrafts reported.
    sales: int = 0
    paid: int = 0
    paid_twice: int = 0
    unpaid_greens: int = 0
    ledger_total: int = 0
    overdrawn: int = 0
    overdrafts_reported: int = 0
    shown: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (
            not self.lost
            and not self.doubled
            and self.exceptions == self.exceptions_expected
            and not (self.paid_twice or self.unpaid_greens or self.ledger_total)
            and self.overdrawn <= self.overdrafts_reported
        )


def reader_ids(count: int) -> list[str]:
    return [f"chaos-{n}" for n in range(1, count + 1)]


def make_venue(readers: int, bands_each: int, till_guests: int) -> dict[str, object]:
    """Guests with a ticket for today, ``bands_each`` bands for each gate and ``till_guests``
    for the till (the last); entries and exits in turn, and the till."""
    guests = [
        {
            "id": guest_id(n),
            "name": f"Guest {n}",
            "bands": [band_uid(n, _BAND_KIND).hex()],
            "tickets": [{"id": f"t-c-{n:05d}", "valid_from": "today", "valid_until": "today"}],
        }
        for n in range(readers * bands_each + till_guests)
    ]
    ids = reader_ids(readers)
    gates: list[dict[str, object]] = [
        {"id": r, "role": "gate", "gate": "chaos", "direction": "in" if i % 2 == 0 else "out"}
        for i, r in enumerate(ids)
    ]
    till = {
        "id": TILL,
        "role": "pos",
        "outlet": "chaos-bar",
        "offline_floor": OFFLINE_FLOOR,
        "offline_cap": OFFLINE_CAP,
    }
    return {
        "site": "chaos",
        "sites": [{"id": "chaos"}],
        "guests": guests,
        "readers": [*gates, till],
    }


def guest_id(n: int) -> str:
    return f"c-{n:05d}"


class _Guests(threading.Thread):
    """One reader's queue of guests: a fresh band per tap, the light each saw."""

    def __init__(self, rig: _Rig, index: int, bands: list[bytes]) -> None:
        super().__init__(daemon=True, name=f"guests-{index}")
        self.rig, self.index, self.bands = rig, index, bands
        self.seen: list[tuple[bytes, str]] = []
        self.cut: list[bytes] = []

    def run(self) -> None:
        rig = self.rig
        for band in self.bands:
            if rig.stopping.is_set():
                return
            reader = rig.readers[self.index]
            if self.index == 0:
                rig.tapping.set()  # a reader kill aims at a tap in progress
            try:
                self.seen.append((band, reader.tap(band).pattern))
            except (ReaderError, OSError):
                self.cut.append(band)  # killed mid-tap: no light; maybe in the journal
                rig.rebooted[self.index].wait(30)
            time.sleep(PACE_S)


@dataclass(frozen=True)
class _Sale:
    band: bytes
    charge_id: bytes
    amount: int
    pattern: str  # the light the guest saw


class _Cashier(threading.Thread):
    """The till: a sale per guest, rung up over HTTP at whichever gateway answers, the band
    tapped once the till shows it (a moment later: the guest finds their band). A sale that
    did not end green is cancelled, where a gateway can be reached; one the till never showed
    is cancelled and rung up again for the next guest."""

    def __init__(self, rig: _Rig, bands: list[bytes]) -> None:
        super().__init__(daemon=True, name="cashier")
        self.rig, self.bands = rig, bands
        self.sales: list[_Sale] = []

    def run(self) -> None:
        rig = self.rig
        for band in self.bands:
            while not rig.stopping.is_set():
                sale = self._ring_up(random.choice(_AMOUNTS))
                if sale is not None:
                    break
                time.sleep(0.5)  # no gateway to take it: the cashier tries again
            else:
                return
            charge_id, amount = sale
            rig.armed.set()  # a fault may start now: the guest taps into it
            time.sleep(random.uniform(*_FINDING_BAND_S))
            try:
                pattern = rig.till.tap(band).pattern
            except ReaderError:
                pattern = "none"
            self.sales.append(_Sale(band, charge_id, amount, pattern))
            if pattern not in _GRANTED:
                self._call("POST", f"/v1/charges/{charge_id.hex()}/cancel")
            time.sleep(PACE_S)

    def _ring_up(self, amount: int) -> tuple[bytes, int] | None:
        body = {"amount": amount, "currency": "EUR", "description": "Drink"}
        reply = self._call("POST", f"/v1/readers/{TILL}/charges", body)
        if reply is None or reply.status != 201:
            return None
        charge_id = bytes.fromhex(reply.body["id"])
        try:
            self.rig.till.wait_show("idle", reply.body["label"], timeout=3)
        except ReaderError:
            self._call("POST", f"/v1/charges/{charge_id.hex()}/cancel")
            return None
        return charge_id, amount

    def _call(self, method: str, path: str, body: object = None) -> Reply | None:
        """At the first gateway process that answers; None when none does."""
        for client in self.rig.tills:
            try:
                return client.move(method, path, body)
            except OSError:
                continue
        return None


class _Rig:
    def __init__(self, workdir: Path, db_url: str, readers: int, guests: tuple[int, int]) -> None:
        self.workdir, self.db_url = workdir, db_url
        self.bands_each, till_guests = guests
        self.stopping = threading.Event()
        self.broker = MosquittoBroker(workdir / "broker")
        self.venue = workdir / "venue.json"
        self.venue.write_text(json.dumps(make_venue(readers, *guests)))
        self.till_guests = range(readers * self.bands_each, readers * self.bands_each + till_guests)
        self.gateways: GatewayGroup | None = None
        self.readers: list[SimReader] = []
        self.partition: Partition | None = None
        self.rebooted = [threading.Event() for _ in range(readers)]
        self.tapping = threading.Event()
        self.armed = threading.Event()  # the till shows a sale
        self.count = readers
        self.reboots = 0
        self.till: SimReader
        self.tills: list[ApiClient] = []  # the till's client, one per gateway process

    @contextmanager
    def running(self) -> Iterator[_Rig]:
        with ExitStack() as stack:
            self.broker.start()
            stack.callback(self.broker.stop)
            env = {"BANDLINK_SECRET_KEY": SECRET, "BANDLINK_READER_RATE": "0"}
            self.gateways = GatewayGroup(
                self.broker,
                self.db_url,
                self.workdir,
                count=2,
                venue=str(self.venue),
                env=env,
                http=True,
            )
            stack.callback(self.gateways.stop)
            self.gateways.start(timeout=_GATEWAY_START_S)
            self.partition = Partition(self.broker.host, self.broker.port)
            stack.callback(self.partition.close)
            # The first gate and the till reach the broker through the partition's forwarder.
            behind = f"mqtt://{self.broker.host}:{self.partition.port}"
            for i, reader_id in enumerate(reader_ids(self.count)):
                reader = SimReader(
                    reader_id,
                    behind if i == 0 else self.broker.url,
                    self.workdir,
                    direction="in" if i % 2 == 0 else "out",
                    gate="chaos",
                    login=self.broker.reader_login(reader_id),
                )
                stack.callback(reader.stop)
                self.readers.append(reader.start())
            self.till = SimReader(
                TILL,
                behind,
                self.workdir,
                role="pos",
                pin_key=reader_pin_key(SECRET.encode(), TILL),
                offline_pin_key=offline_pin_key(SECRET.encode()),
                login=self.broker.reader_login(TILL),
                hold_ms=_TILL_HOLD_MS,
            )
            stack.callback(self.till.stop)
            self.till.start()
            for reader in [*self.readers, self.till]:
                reader.wait_online(20)
            self._open_till()
            yield self

    def _open_till(self) -> None:
        """The till's clients, and a wallet for each of its guests (every fourth one empty)."""
        assert self.gateways is not None
        till_token = create_token(self.db_url, "till", "chaos-bar")[1]
        self.tills = [ApiClient(url, till_token, timeout=10) for url in self.gateways.http_urls]
        desk = ApiClient(self.gateways.http_urls[0], create_token(self.db_url, "desk", None)[1])
        for n in self.till_guests:
            if n % 4:
                body = {"amount": TOP_UP, "currency": "EUR"}
                reply = desk.move("POST", f"/v1/guests/{guest_id(n)}/topups", body)
                assert reply.status == 201, reply

    def fault(self, kind: str, outage_s: float) -> None:
        assert self.gateways is not None and self.partition is not None
        if kind == "broker-restart":
            self.broker.stop()
            time.sleep(outage_s)
            self.broker.start()
        elif kind == "gateway-kill":
            first, second = self.gateways.members
            first.kill()  # the other one serves
            time.sleep(outage_s / 3)
            first.start()
            time.sleep(outage_s / 3)
            self.armed.clear()
            self.armed.wait(outage_s / 3)
            for member in self.gateways.members:
                member.kill()  # none
            time.sleep(outage_s / 3)
            for member in (first, second):
                member.start()
        elif kind == "reader-kill":
            # Within a few ms of a band being placed: while the reader reads it, decides, or
            # writes its journal. One kill per second of the outage.
            reader = self.readers[0]
            for _ in range(max(1, int(outage_s))):
                self.tapping.clear()
                self.tapping.wait(5)
                time.sleep(random.uniform(0, 0.008))
                self.rebooted[0].clear()
                reader.kill()
                reader.start()
                self.reboots += 1
                self.rebooted[0].set()
        elif kind == "partition":
            self.partition.cut()
            time.sleep(outage_s)
            self.partition.heal()
        else:
            raise ValueError(f"unknown fault {kind!r}: one of {', '.join(FAULTS)}")


def run_chaos(
    fault: str,
    *,
    readers: int = 3,
    seconds: float = 20.0,
    outage_s: float | None = None,
    db_url: str | None = None,
    workdir: Path | None = None,
) -> ChaosReport:
    """Guests tap for ``seconds`` (a quarter before the fault, a quarter after), the fault
    lasting ``outage_s`` between (by default the other half)."""
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}: one of {', '.join(FAULTS)}")
    outage_s = seconds / 2 if outage_s is None else outage_s
    with ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bl-chaos-")))
        db_url = db_url or f"sqlite:///{workdir / 'chaos.db'}"
        # Enough guests that no queue runs dry: a gate takes one at most every PACE_S, the
        # till one every _SALE_MIN_S.
        tapping_s = seconds / 2 + outage_s
        bands_each = math.ceil(tapping_s / PACE_S) + 20
        rig = _Rig(workdir, db_url, readers, (bands_each, math.ceil(tapping_s / _SALE_MIN_S) + 20))
        with rig.running():
            guests = [
                _Guests(
                    rig, i, [band_uid(i * bands_each + n, _BAND_KIND) for n in range(bands_each)]
                )
                for i in range(readers)
            ]
            cashier = _Cashier(rig, [band_uid(n, _BAND_KIND) for n in rig.till_guests])
            for queue in guests:
                queue.start()
            cashier.start()
            time.sleep(seconds / 4)
            rig.armed.clear()
            rig.armed.wait(5)  # into a sale the till shows: it may have to finish it alone
            rig.fault(fault, outage_s=outage_s)
            time.sleep(seconds / 4)
            rig.stopping.set()
            for thread in [*guests, cashier]:
                thread.join(30)
            return _count(rig, guests, cashier, ChaosReport(fault, readers, seconds, outage_s))
    raise AssertionError("unreachable")


def _count(rig: _Rig, guests: list[_Guests], cashier: _Cashier, report: ChaosReport) -> ChaosReport:
    seen: Counter[tuple[str, bytes]] = Counter()
    retried: set[tuple[str, bytes]] = set()
    cut: set[tuple[str, bytes]] = set()
    shown: Counter[str] = Counter()
    lights = [
        *(
            (rig.readers[q.index].reader_id, band, pattern)
            for q in guests
            for band, pattern in q.seen
        ),
        *((TILL, sale.band, sale.pattern) for sale in cashier.sales if sale.pattern != "none"),
    ]
    for reader_id, band, pattern in lights:
        seen[(reader_id, band)] += 1
        shown[pattern] += 1
        if pattern == "retry":
            retried.add((reader_id, band))
    for queue in guests:
        cut |= {(rig.readers[queue.index].reader_id, band) for band in queue.cut}
    ids = {*reader_ids(rig.count), TILL}
    store = Store(rig.db_url)
    try:
        deadline = time.monotonic() + DRAIN_S
        while True:
            taps = [t for t in store.recent_taps(1_000_000) if t.reader_id in ids]
            recorded = Counter((t.reader_id, t.uid) for t in taps)
            if not (seen - recorded) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        time.sleep(2)  # anything still coming in would be a double
        taps = [t for t in store.recent_taps(1_000_000) if t.reader_id in ids]
        recorded = Counter((t.reader_id, t.uid) for t in taps)
        offline = [t for t in taps if t.offline]
        # "Try again" shown, and yet decided: the gateway's answer was lost (a broker gone
        # mid-reply); the decision stands, and the same band tapping again gets it.
        report.answers_lost = sum(
            1 for t in taps if (t.reader_id, t.uid) in retried and t.reason != "no_reply"
        )
        report.exceptions = len(
            [t for t in store.offline_taps(exceptions_only=True) if t.reader_id in ids]
        )
        _count_money(report, store, cashier.sales, {t.uid: t for t in taps if t.role == "pos"})
    finally:
        store.close()
    extra = recorded - seen
    report.seen = sum(seen.values())
    report.recorded = len(taps)
    report.lost = sum((seen - recorded).values())
    report.doubled = sum(n for key, n in extra.items() if key not in cut)
    report.cut = len(cut)
    report.offline = len(offline)
    refusals = {"ok", "not_inside"}
    report.exceptions_expected = sum(
        1 for t in offline if t.granted and t.gateway_reason not in refusals
    )
    report.duplicates_dropped = rig.gateways.log().count("(duplicate)") if rig.gateways else 0
    report.shown = dict(shown)
    report.reboots = rig.reboots
    return report


def _count_money(
    report: ChaosReport, store: Store, sales: list[_Sale], till_taps: dict[bytes, TapRecord]
) -> None:
    """The till's side: each sale paid at most once, each green one paid (or on the report),
    the ledger summing to zero, and no wallet below zero but the overdrafts reported."""

    def read(books: Books) -> None:
        for sale in sales:
            paid = [t for t in books.charge_transfers(sale.charge_id) if t.kind == ledger.CHARGE]
            report.paid += bool(paid)
            report.paid_twice += len(paid) > 1
            tap = till_taps.get(sale.band)
            if sale.pattern in _GRANTED and not paid and (tap is None or tap.exception is None):
                report.unpaid_greens += 1
            if tap is not None and tap.exception == "insufficient_funds":
                report.overdrafts_reported += 1
            account_id = books.party_account(tap.guest_id) if tap and tap.guest_id else None
            account = books.account(account_id) if account_id else None
            report.overdrawn += account is not None and account.balance < 0
        report.ledger_total = books.totals().total

    report.sales = len(sales)
    store.read(read)


def print_report(report: ChaosReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
        return
    rows = [(name.replace("_", " "), getattr(report, name)) for name in _ROWS]
    rows.append(
        ("exceptions reported", f"{report.exceptions} (expected {report.exceptions_expected})")
    )
    rows.append(("lights shown", ", ".join(f"{k} {v}" for k, v in sorted(report.shown.items()))))
    quarter = report.seconds / 4
    print(
        f"bandlink chaos --fault {report.fault}: {report.readers} readers, tapping {quarter:g} s "
        f"before the fault, {report.outage_s:g} s through it, {quarter:g} s after"
    )
    for name, value in rows:
        print(f"  {name:<22} {value}")
    print(
        "ok"
        if report.ok
        else "FAILED: a light without its record, a record twice, or money the ledger lost"
    )
