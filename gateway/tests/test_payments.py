"""Pos taps through the core and the real store, frame in, Result out (the in-memory pair):
the charge a till made is paid by the band that taps, once; the answer carries the balance and
repeats exactly for a duplicate; PINs travel sealed for one charge and one reader."""

from __future__ import annotations

import os

import pytest

from bandlink.gateway.core.handler import Core
from bandlink.gateway.core.payments.pin import reader_pin_key, seal_pin_block
from bandlink.gateway.core.payments.records import Charge
from bandlink.gateway.store import Books, Store
from bandlink.gateway.venue import DEMO_BANDS
from bandlink.protocol import POS, Command, Result, Tap, decode, messages, reasons
from bandlink.tools.sunband import development_bands

from .pair import NOON_MS, Pair, birth_frame, evt_frame
from .test_ledger import charge_at, topup

SECRET = b"s" * 32
ADA = DEMO_BANDS["Ada"]


@pytest.fixture
def till(store: Store) -> Pair:
    return Pair(store, Core(secret_key=SECRET))


def with_pin(store: Store, pin_hash: str, *, threshold: int, guest: str = "g-ada") -> None:
    """The guest types a PIN (this hash's) above ``threshold``."""

    def work(books: Books) -> None:
        books.set_limits(guest, enabled=True, daily_limit=None, pin_threshold=threshold)
        books.set_pin_hash(guest, pin_hash)

    store.run(work)


def pos_tap(
    charge: Charge, uid: bytes = ADA, *, pin: bytes | None = None, mid: bytes | None = None
) -> Tap:
    return Tap(
        reader=charge.reader_id,
        ts=NOON_MS,
        mid=mid or os.urandom(16),
        uid=uid,
        role=POS,
        charge=charge.id,
        pin=pin,
        **development_bands().read(uid),
    )


def answer(pair: Pair, tap: Tap) -> Result:
    assert tap.reader is not None
    (result,) = pair.results([evt_frame(tap, reader=tap.reader)])
    return result


def test_a_band_pays_the_open_charge_and_a_duplicate_gets_the_same_answer(
    till: Pair, store: Store
) -> None:
    topup(store, "g-ada", 2000)
    charge = charge_at(store, "pos-1", 450, description="Coffee")
    tap = pos_tap(charge)
    paid = answer(till, tap)
    assert (paid.granted, paid.reason, paid.text, paid.balance) == (True, 0, "Paid EUR 4.50", 1550)
    again = answer(till, tap)
    assert (again.granted, again.text, again.balance) == (True, "Paid EUR 4.50", 1550)
    assert store.run(lambda books: books.account("wallet:okafor")).balance == 1550  # type: ignore[union-attr]
    # Another tap (a new mid) on the paid charge pays nothing.
    late = answer(till, pos_tap(charge))
    assert (late.granted, late.reason) == (False, reasons.CHARGE_UNKNOWN)


def test_a_tap_with_no_charge_armed_or_at_another_reader_is_refused(
    till: Pair, store: Store
) -> None:
    topup(store, "g-ada", 2000)
    ghost = Charge(os.urandom(16), "pos-1", "cafe", 100, "EUR", "x", "pending", 0, 0, "tok")
    assert answer(till, pos_tap(ghost)).reason == reasons.CHARGE_UNKNOWN
    charge = charge_at(store, "pos-2", 100, description="Coffee")
    elsewhere = Tap(
        reader="pos-1",
        ts=NOON_MS,
        mid=os.urandom(16),
        uid=ADA,
        role=POS,
        charge=charge.id,
        **development_bands().read(ADA),
    )
    assert answer(till, elsewhere).reason == reasons.CHARGE_UNKNOWN
    assert store.run(lambda books: books.totals()).transfers == 1  # the top-up only


def test_a_pin_travels_sealed_for_its_charge_and_reader(till: Pair, store: Store) -> None:
    topup(store, "g-ada", 5000)
    with_pin(store, till.core.pins.hash("g-ada", "2468"), threshold=1000)
    charge = charge_at(store, "pos-1", 1500, description="Coffee")
    asked = answer(till, pos_tap(charge))
    assert (asked.granted, asked.reason, asked.text) == (False, reasons.PIN_REQUIRED, "Enter PIN")
    key = reader_pin_key(SECRET, "pos-1")
    other = charge_at(store, "pos-3", 100, description="Coffee")
    another_reader = reader_pin_key(SECRET, "pos-2")
    for sealed_for_another_charge in (True, False):
        block = (
            seal_pin_block(key, other.id, "2468", os.urandom(16))
            if sealed_for_another_charge
            else seal_pin_block(another_reader, charge.id, "2468", os.urandom(16))
        )
        refused = answer(till, pos_tap(charge, pin=block))
        assert (refused.granted, refused.reason) == (False, reasons.BAD_REQUEST)
        # The sale ends (the reader shows "Reader error"); nothing was paid.
        ended = store.read(lambda books, c=charge.id: books.charge(c))  # type: ignore[misc]
        assert ended is not None and ended.state == "declined"
        charge = charge_at(store, "pos-1", 1500, description="Coffee")
    wrong = answer(
        till, pos_tap(charge, pin=seal_pin_block(key, charge.id, "1111", os.urandom(16)))
    )
    assert (wrong.reason, wrong.text) == (reasons.WRONG_PIN, "Wrong PIN")
    right = answer(
        till, pos_tap(charge, pin=seal_pin_block(key, charge.id, "2468", os.urandom(16)))
    )
    assert (right.granted, right.balance) == (True, 3500)
    # Not a PIN guess: the blocks sealed wrong did not count towards the lock.
    assert store.run(lambda books: books.privilege("g-ada")).failures == 0
    assert store.run(lambda books: books.account("wallet:okafor")).balance == 3500  # type: ignore[union-attr]


def test_a_pos_reader_that_reconnects_shows_its_open_sale_again(till: Pair, store: Store) -> None:
    charge = charge_at(store, "pos-1", 450, description="Coffee")
    replies = till.send([birth_frame("pos-1", 1)]).replies
    commands = [decode(r.payload) for r in replies]
    charges = [c for c in commands if isinstance(c, Command) and c.op == messages.CHARGE]
    assert [(c.charge, c.amount, c.label) for c in charges] == [(charge.id, 450, "EUR 4.50 Coffee")]


def test_a_gate_tap_at_a_pos_reader_is_the_wrong_role(till: Pair, store: Store) -> None:
    from .pair import make_tap

    result = answer(till, make_tap(ADA, reader="pos-1"))
    assert (result.granted, result.reason) == (False, reasons.WRONG_ROLE)


@pytest.mark.parametrize("any_db_url", ["sqlite"], indirect=True)
def test_the_slow_pin_check_holds_no_write_lock(store: Store, db_url: str) -> None:
    """argon2 takes tens of milliseconds by design: the worker checks a batch's PINs before
    its transaction, so no gate tap (and no other gateway process) waits behind one."""
    import sqlite3

    from bandlink.gateway.metrics import Metrics
    from bandlink.gateway.worker import DecisionWorker

    core = Core(secret_key=SECRET)
    topup(store, "g-ada", 5000)
    pin_hash = core.pins.hash("g-ada", "2468")
    with_pin(store, pin_hash, threshold=0)
    charge = charge_at(store, "pos-1", 100, description="Coffee")
    lock_free: list[bool] = []
    verify = core.pins.verify

    def watched(stored: str, guest: str, pin: str) -> bool:
        probe = sqlite3.connect(db_url.removeprefix("sqlite:///"), timeout=0)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            lock_free.append(True)
        except sqlite3.OperationalError:
            lock_free.append(False)
        finally:
            probe.close()
        return verify(stored, guest, pin)

    core.pins.verify = watched  # type: ignore[method-assign,assignment]
    sent: list[object] = []
    worker = DecisionWorker(core, store, sent.extend, Metrics(), clock=lambda: NOON_MS)
    store.follow_catalog()  # as a running worker's view is (it follows when idle, each second)
    block = seal_pin_block(reader_pin_key(SECRET, "pos-1"), charge.id, "2468", os.urandom(16))
    effects = worker._commit([evt_frame(pos_tap(charge, pin=block), reader="pos-1")])
    (reply,) = effects.replies
    result = decode(reply.payload)
    assert isinstance(result, Result) and result.granted
    assert lock_free == [True]
