"""The ledger on both back ends: every posting balanced, the sum over all accounts zero, no
wallet below zero, refunds within their charge, a charge paid once, daily limits and PINs
held by the database's statements. A Hypothesis state machine drives random sequences of
top-ups, charges, refunds, voids, cash-outs and repeats against a model; races run real
threads against the real database."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import date
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

from bandlink.gateway.core.entry import Band
from bandlink.gateway.core.payments import ledger
from bandlink.gateway.core.payments.operations import (
    NO_PIN,
    ChargeRequest,
    PaymentError,
    TapPayment,
    cancel_charge,
    cash_out,
    create_charge,
    pay_by_tap,
    refund,
    set_charging,
    top_up,
)
from bandlink.gateway.core.payments.records import Charge
from bandlink.gateway.store import Answer, Books, KeyReused, Store

from .pair import NOON_MS, TODAY

T = TypeVar("T")
EUR = "EUR"
MINUTE_MS = 60_000


def run(store: Store, work: Callable[[Books], T]) -> T:
    return store.run(work)


def topup(store: Store, guest: str, amount: object, **kw: object) -> int:
    def work(books: Books) -> int:
        _transfer, balance = top_up(
            books,
            guest_id=guest,
            amount=amount,
            currency=str(kw.get("currency", EUR)),
            venue_currency=EUR,
            actor="tok-desk",
            now_ms=NOON_MS,
        )
        return balance

    return run(store, work)


def charge_at(
    store: Store,
    reader: str,
    amount: object,
    now_ms: int = NOON_MS,
    *,
    currency: str = EUR,
    description: str | None = None,
) -> Charge:
    """A till's charge at ``reader``, as the API makes it."""

    def work(books: Books) -> Charge:
        return create_charge(
            books,
            request=ChargeRequest(
                reader, amount, currency, reference="order-1", description=description
            ),
            reader=store.reader(reader),
            charge_id=os.urandom(16),
            venue_currency=EUR,
            actor="tok-till",
            till_outlet=None,
            now_ms=now_ms,
            timeout_ms=2 * MINUTE_MS,
        )

    return run(store, work)


def tap_pay(
    store: Store,
    charge: Charge,
    guest: str,
    *,
    pin: str | None = NO_PIN,
    now_ms: int = NOON_MS,
    day: date = TODAY,
) -> TapPayment:
    reader = store.reader(charge.reader_id)
    assert reader is not None

    def work(books: Books) -> TapPayment:
        return pay_by_tap(
            books,
            charge_id=charge.id,
            reader=reader,
            band=Band(b"\x04" + guest.encode()[:6], guest, False),
            pin=pin,
            check_pin=lambda stored, _guest, typed: stored == f"hash:{typed}",
            day=day,
            tap_mid=os.urandom(16),
            now_ms=now_ms,
        )

    return run(store, work)


def balance(store: Store, guest: str) -> int:
    """What the guest's party account holds (a folio: minus what was charged to it)."""

    def read(books: Books) -> int:
        account_id = books.party_account(guest)
        account = books.account(account_id) if account_id else None
        return account.balance if account else 0

    return run(store, read)


def check_books(store: Store) -> None:
    totals = run(store, lambda books: books.totals())
    assert totals.total == 0
    assert totals.unbalanced == 0
    assert totals.drifted == 0
    assert totals.below_floor == 0


# -- plain cases ------------------------------------------------------------------------------


def test_a_top_up_and_a_charge_move_money_and_balance(store: Store) -> None:
    assert topup(store, "g-ada", 2000) == 2000
    charge = charge_at(store, "pos-1", 450)
    paid = tap_pay(store, charge, "g-ada")
    assert paid.granted and paid.balance == 1550 and paid.text == "Paid EUR 4.50"
    assert balance(store, "g-ada") == 1550
    revenue = run(store, lambda books: books.account(ledger.revenue("cafe")))
    assert revenue is not None and revenue.balance == 450
    check_books(store)


@pytest.mark.parametrize(
    ("amount", "currency", "kind"),
    [
        (-5, EUR, "invalid-amount"),
        (0, EUR, "invalid-amount"),
        (4.5, EUR, "invalid-amount"),
        (True, EUR, "invalid-amount"),
        (10**12, EUR, "invalid-amount"),
        ("450", EUR, "invalid-amount"),
        (450, "XYZ", "unknown-currency"),
        (450, "USD", "wrong-currency"),
    ],
)
def test_bad_amounts_are_refused_and_post_nothing(
    store: Store, amount: object, currency: str, kind: str
) -> None:
    with pytest.raises(PaymentError) as raised:
        topup(store, "g-ada", amount, currency=currency)
    assert raised.value.kind == kind
    with pytest.raises(PaymentError) as raised:
        charge_at(store, "pos-1", amount, currency=currency)
    assert raised.value.kind == kind
    totals = run(store, lambda books: books.totals())
    assert totals.transfers == 0


def test_unknown_guest_reader_and_a_gate_reader_are_refused(store: Store) -> None:
    with pytest.raises(PaymentError, match="no guest") as raised:
        topup(store, "g-nobody", 100)
    assert raised.value.kind == "unknown-guest"
    with pytest.raises(PaymentError) as raised:
        charge_at(store, "pos-404", 100)
    assert raised.value.kind == "unknown-reader"
    with pytest.raises(PaymentError) as raised:
        charge_at(store, "gate-1", 100)
    assert raised.value.kind == "not-a-pos-reader"


def test_a_reader_shows_one_sale_at_a_time_until_it_times_out(store: Store) -> None:
    charge_at(store, "pos-1", 100)
    with pytest.raises(PaymentError) as raised:
        charge_at(store, "pos-1", 200)
    assert raised.value.kind == "reader-busy"
    later = charge_at(store, "pos-1", 300, now_ms=NOON_MS + 3 * MINUTE_MS)
    assert later.amount == 300


def test_insufficient_funds_declines_and_posts_nothing(store: Store) -> None:
    topup(store, "g-ada", 300)
    paid = tap_pay(store, charge_at(store, "pos-1", 450), "g-ada")
    assert not paid.granted and paid.reason == "insufficient_funds"
    assert paid.charge is not None and paid.charge.state == "declined"
    assert balance(store, "g-ada") == 300
    # Declined money is not counted against the daily limit either.
    assert run(store, lambda books: books.spent("g-ada", TODAY)) == 0
    check_books(store)


def test_two_tills_racing_for_one_reader_get_one_sale_and_a_clear_busy(store: Store) -> None:
    """Both see the reader free; the partial unique index lets one in and the other is told
    reader-busy (on PostgreSQL too, where a plain INSERT would fail with a unique violation)."""
    results = _race(2, lambda _i: charge_at(store, "pos-1", 100))
    made = [r for r in results if isinstance(r, Charge)]
    refused = [r for r in results if isinstance(r, PaymentError)]
    assert len(made) == 1 and [e.kind for e in refused] == ["reader-busy"], results


def test_a_charge_is_paid_once_whatever_taps_it(store: Store) -> None:
    topup(store, "g-ada", 2000)
    charge = charge_at(store, "pos-1", 450)
    assert tap_pay(store, charge, "g-ada").granted
    again = tap_pay(store, charge, "g-ada")
    assert not again.granted and again.reason == "charge_unknown"
    assert balance(store, "g-ada") == 1550


def test_refunds_never_exceed_the_charge(store: Store) -> None:
    topup(store, "g-ada", 2000)
    charge = charge_at(store, "pos-1", 450)
    tap_pay(store, charge, "g-ada")

    def give_back(amount: int | None) -> Callable[[Books], object]:
        return lambda books: refund(
            books,
            charge_id=charge.id,
            amount=amount,
            till_outlet="cafe",
            actor="tok-till",
            now_ms=NOON_MS,
        )

    run(store, give_back(200))
    with pytest.raises(PaymentError) as raised:
        run(store, give_back(300))
    assert raised.value.kind == "refund-exceeds-charge"
    run(store, give_back(None))  # the rest: 250
    assert balance(store, "g-ada") == 2000
    with pytest.raises(PaymentError):
        run(store, give_back(None))
    check_books(store)


def test_money_once_posted_cannot_be_changed_or_removed(store: Store) -> None:
    """Corrections are new transfers: the database itself refuses UPDATE and DELETE."""
    from sqlalchemy import text

    topup(store, "g-ada", 500)
    for sql in ("UPDATE postings SET amount = 1", "DELETE FROM transfers"):

        def tamper(books: Books, sql: str = sql) -> None:
            books.conn.execute(text(sql))

        with pytest.raises(Exception, match="append-only"):
            run(store, tamper)
    check_books(store)


def test_charging_off_daily_limit_and_pin(store: Store) -> None:
    topup(store, "g-ada", 10_000)

    def privilege(**kw: object) -> Callable[[Books], object]:
        values: dict[str, object] = {"enabled": True, "daily_limit": None, "pin_threshold": None}
        values.update(kw)
        return lambda books: set_charging(books, guest_id="g-ada", **values)  # type: ignore[arg-type]

    run(store, privilege(enabled=False))
    off = tap_pay(store, charge_at(store, "pos-1", 100), "g-ada")
    assert (off.granted, off.reason, off.text) == (False, "not_permitted", "Charging is off")

    run(store, privilege(daily_limit=500))
    assert tap_pay(store, charge_at(store, "pos-1", 400), "g-ada").granted
    over = tap_pay(store, charge_at(store, "pos-1", 200), "g-ada")
    assert over.reason == "limit_exceeded"
    tomorrow = date.fromordinal(TODAY.toordinal() + 1)
    assert tap_pay(store, charge_at(store, "pos-1", 200), "g-ada", day=tomorrow).granted

    run(store, privilege(pin_threshold=1000))
    no_pin_set = tap_pay(store, charge_at(store, "pos-1", 1500), "g-ada")
    assert no_pin_set.reason == "not_permitted"


def test_wrong_pins_lock_and_a_right_one_pays(store: Store) -> None:
    topup(store, "g-ada", 10_000)

    def with_pin(books: Books) -> None:
        set_charging(books, guest_id="g-ada", enabled=True, daily_limit=None, pin_threshold=0)
        books.set_pin_hash("g-ada", "hash:1234")

    run(store, with_pin)
    charge = charge_at(store, "pos-1", 100)
    asked = tap_pay(store, charge, "g-ada")
    assert (asked.reason, asked.charge and asked.charge.state) == ("pin_required", "pending")
    first = tap_pay(store, charge, "g-ada", pin="9999")
    assert (first.reason, first.text) == ("wrong_pin", "Wrong PIN")
    assert tap_pay(store, charge, "g-ada", pin="1234").granted  # a right PIN resets the count
    charge = charge_at(store, "pos-1", 100)
    for _ in range(2):
        assert tap_pay(store, charge, "g-ada", pin="0000").reason == "wrong_pin"
    locked = tap_pay(store, charge, "g-ada", pin="0000")
    # not_permitted, so the reader ends the sale (after wrong_pin it would ask again).
    assert (locked.reason, locked.text) == ("not_permitted", "PIN locked - see desk")
    assert locked.charge is not None and locked.charge.state == "declined"
    after = tap_pay(store, charge_at(store, "pos-1", 100), "g-ada", pin="1234")
    assert (after.reason, after.text) == ("not_permitted", "PIN locked - see desk")


def test_a_party_folio_is_charged_down_to_its_credit_limit_and_no_further(store: Store) -> None:
    """Chen charges to room 12 (a folio, credit EUR 500): post-paid, it goes below zero, never
    below minus its limit; a folio takes no top-up."""
    assert tap_pay(store, charge_at(store, "pos-1", 40_000), "g-chen").granted
    over = tap_pay(store, charge_at(store, "pos-1", 20_000), "g-chen")
    assert over.reason == "insufficient_funds"
    assert balance(store, "g-chen") == -40_000
    with pytest.raises(PaymentError) as raised:
        topup(store, "g-chen", 100)
    assert raised.value.kind == "not-a-wallet"
    check_books(store)


def test_a_party_pays_for_its_members_under_each_ones_own_limit(store: Store) -> None:
    """Emil charges to the Okafors' wallet, but only EUR 15 a day of it (the venue's limit)."""
    topup(store, "g-ada", 5000)
    assert tap_pay(store, charge_at(store, "pos-1", 1000), "g-emil").granted
    assert tap_pay(store, charge_at(store, "pos-1", 1000), "g-emil").reason == "limit_exceeded"
    assert tap_pay(store, charge_at(store, "pos-1", 1000), "g-ada").granted  # her own: none
    assert balance(store, "g-ada") == balance(store, "g-emil") == 3000


def test_cash_out_pays_the_remainder_and_leaves_zero(store: Store) -> None:
    topup(store, "g-ada", 1234)
    transfer = run(
        store,
        lambda books: cash_out(
            books, guest_id="g-ada", actor="tok-desk", now_ms=NOON_MS, venue_currency=EUR
        ),
    )
    assert transfer.amount == 1234 and balance(store, "g-ada") == 0
    with pytest.raises(PaymentError):
        run(
            store,
            lambda books: cash_out(
                books, guest_id="g-ada", actor="tok-desk", now_ms=NOON_MS, venue_currency=EUR
            ),
        )
    check_books(store)


# -- races ----------------------------------------------------------------------------------


def _race(count: int, work: Callable[[int], T]) -> list[T | BaseException]:
    barrier = threading.Barrier(count)
    results: list[T | BaseException] = [RuntimeError("not run")] * count

    def one(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as err:  # noqa: BLE001 - the test looks at each
            results[i] = err

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_two_tills_racing_on_one_wallet_never_overdraw_it(store: Store) -> None:
    """pos-1 and pos-2 each charge EUR 6 to a wallet of EUR 10, both tapped at once: one
    pays, the other is declined, the wallet never goes below zero."""
    topup(store, "g-ada", 1000)
    charges = [charge_at(store, "pos-1", 600), charge_at(store, "pos-2", 600)]
    results = _race(2, lambda i: tap_pay(store, charges[i], "g-ada"))
    outcomes = sorted(r.reason for r in results if isinstance(r, TapPayment))
    assert outcomes == ["insufficient_funds", "ok"], results
    assert balance(store, "g-ada") == 400
    check_books(store)


def test_one_charge_tapped_by_many_threads_is_paid_once(store: Store) -> None:
    topup(store, "g-ada", 5000)
    charge = charge_at(store, "pos-1", 450)
    results = _race(8, lambda _i: tap_pay(store, charge, "g-ada"))
    granted = [r for r in results if isinstance(r, TapPayment) and r.granted]
    assert len(granted) == 1, results
    assert balance(store, "g-ada") == 5000 - 450


def test_fifty_copies_of_one_key_post_once_and_answer_alike(store: Store) -> None:
    def request(_i: int) -> Answer:
        def work(books: Books) -> Answer:
            _t, after = top_up(
                books,
                guest_id="g-ada",
                amount=700,
                currency=EUR,
                venue_currency=EUR,
                actor="tok-desk",
                now_ms=NOON_MS,
            )
            return Answer(201, f'{{"balance": {after}}}')

        return store.once("tok-desk", "key-1", "fp-1", NOON_MS, work)

    results = _race(50, request)
    assert all(isinstance(r, Answer) for r in results), results
    assert {(r.status, r.body) for r in results if isinstance(r, Answer)} == {
        (201, '{"balance": 700}')
    }
    assert balance(store, "g-ada") == 700
    with pytest.raises(KeyReused):
        store.once("tok-desk", "key-1", "fp-other", NOON_MS, lambda books: Answer(200, ""))


# -- the state machine ------------------------------------------------------------------------

GUESTS = ("g-bo", "g-dara")  # wallets of their own, nothing set for them in the venue
READERS = ("pos-1", "pos-2", "pos-3")


@pytest.mark.parametrize("any_db_url", ["sqlite"], indirect=True)
def test_the_ledger_holds_its_invariants_whatever_happens(store: Store) -> None:
    machine = ledger_machine(store)
    machine.TestCase.settings = settings(
        max_examples=15,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    machine.TestCase().runTest()


def test_the_ledger_state_machine_on_postgresql(pg_url: str) -> None:
    store = Store(pg_url)
    store.migrate()
    from bandlink.gateway.venue import DEMO_VENUE

    store.load_venue(DEMO_VENUE, today=TODAY)
    machine = ledger_machine(store)
    machine.TestCase.settings = settings(
        max_examples=5,
        stateful_step_count=20,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    try:
        machine.TestCase().runTest()
    finally:
        store.close()


def ledger_machine(store: Store) -> type[RuleBasedStateMachine]:
    class Ledger(RuleBasedStateMachine):
        charges = Bundle("charges")
        paid = Bundle("paid")

        @initialize()
        def start(self) -> None:
            # One store for all examples: the model starts from whatever is there.
            self.wallet = {g: balance(store, g) for g in GUESTS}
            self.refundable: dict[bytes, int] = {}
            self.keys: dict[str, tuple[int, str]] = {}
            # Close whatever an earlier example left pending.
            run(store, lambda books: books.expire_charges(NOON_MS + 10**9))

        @rule(guest=st.sampled_from(GUESTS), amount=st.integers(-10, 5000))
        def top_up(self, guest: str, amount: int) -> None:
            try:
                topup(store, guest, amount)
            except PaymentError:
                assert amount <= 0
                return
            self.wallet[guest] += amount

        @rule(
            target=charges,
            reader=st.sampled_from(READERS),
            amount=st.integers(1, 3000),
        )
        def open_charge(self, reader: str, amount: int) -> Charge | None:
            run(store, lambda books: books.expire_charges(NOON_MS + 10**9))  # free the reader
            return charge_at(store, reader, amount)

        @rule(target=paid, charge=consumes(charges), guest=st.sampled_from(GUESTS))
        def tap(self, charge: Charge, guest: str) -> Charge | None:
            result = tap_pay(store, charge, guest)
            if result.granted:
                assert self.wallet[guest] >= charge.amount
                self.wallet[guest] -= charge.amount
                self.refundable[charge.id] = charge.amount
                assert result.balance == self.wallet[guest]
                return result.charge
            assert result.reason in ("insufficient_funds", "charge_unknown", "charge_expired")
            if result.reason == "insufficient_funds":
                assert self.wallet[guest] < charge.amount
            return None

        @rule(guest=st.sampled_from(GUESTS), amounts=st.tuples(*[st.integers(1, 3000)] * 2))
        def race(self, guest: str, amounts: tuple[int, int]) -> None:
            """Two tills' charges on one wallet, tapped at the same instant on two threads."""
            run(store, lambda books: books.expire_charges(NOON_MS + 10**9))
            opened = [
                charge_at(store, reader, n) for reader, n in zip(READERS, amounts, strict=False)
            ]
            results = _race(2, lambda i: tap_pay(store, opened[i], guest))
            outcomes = list(zip(opened, results, strict=True))
            assert all(isinstance(r, TapPayment) for r in results), results
            paid = [c for c, r in outcomes if isinstance(r, TapPayment) and r.granted]
            refused = [
                c.amount
                for c, r in outcomes
                if isinstance(r, TapPayment) and r.reason == "insufficient_funds"
            ]
            spent = sum(c.amount for c in paid)
            assert spent <= self.wallet[guest]  # never below zero, however they interleave
            self.wallet[guest] -= spent
            assert all(amount > self.wallet[guest] for amount in refused)
            self.refundable.update({c.id: c.amount for c in paid})

        @rule(charge=consumes(charges))
        def void(self, charge: Charge) -> None:
            try:
                run(
                    store,
                    lambda books: cancel_charge(
                        books, charge_id=charge.id, till_outlet=None, now_ms=NOON_MS
                    ),
                )
            except PaymentError as err:
                assert err.kind == "charge-completed"  # expired by a later open_charge

        @rule(charge=paid, amount=st.one_of(st.none(), st.integers(1, 3000)))
        def give_back(self, charge: Charge | None, amount: int | None) -> None:
            if charge is None:
                return
            left = self.refundable[charge.id]
            try:
                run(
                    store,
                    lambda books: refund(
                        books,
                        charge_id=charge.id,
                        amount=amount,
                        till_outlet=None,
                        actor="tok",
                        now_ms=NOON_MS,
                    ),
                )
            except PaymentError:
                assert left == 0 or (amount is not None and amount > left)
                return
            given = left if amount is None else amount
            assert given <= left
            self.refundable[charge.id] -= given
            assert charge.guest_id is not None
            self.wallet[charge.guest_id] += given

        @rule(guest=st.sampled_from(GUESTS))
        def cash_out(self, guest: str) -> None:
            try:
                run(
                    store,
                    lambda books: cash_out(
                        books, guest_id=guest, actor="tok", now_ms=NOON_MS, venue_currency=EUR
                    ),
                )
            except PaymentError:
                assert self.wallet[guest] == 0
                return
            self.wallet[guest] = 0

        @rule(key=st.sampled_from(("k1", "k2", "k3")), guest=st.sampled_from(GUESTS))
        def keyed_top_up(self, key: str, guest: str) -> None:
            """The same key again is inert: no posting, the first answer."""
            seen = self.keys.get(key)
            fingerprint = f"topup {guest} 100"
            scoped = f"{id(self)}:{key}"

            def work(books: Books) -> Answer:
                _t, after = top_up(
                    books,
                    guest_id=guest,
                    amount=100,
                    currency=EUR,
                    venue_currency=EUR,
                    actor="tok",
                    now_ms=NOON_MS,
                )
                return Answer(201, str(after))

            try:
                answer = store.once("tok", scoped, fingerprint, NOON_MS, work)
            except KeyReused:
                assert seen is not None and seen[1] != fingerprint
                return
            if seen is None:
                self.keys[key] = (int(answer.body), fingerprint)
                self.wallet[guest] += 100
            else:
                assert seen == (int(answer.body), fingerprint)

        @invariant()
        def books_balance(self) -> None:
            check_books(store)
            for guest in GUESTS:
                assert balance(store, guest) == self.wallet[guest]

    return Ledger


def test_a_desk_changing_limits_does_not_undo_a_lock_set_meanwhile(store: Store) -> None:
    """A third wrong PIN locks Ada while a desk sets her daily limit in another transaction:
    the desk's write touches only the limits, so the lock stands (a whole-row write based on
    what the desk read before the lock committed would have unlocked her)."""
    locking = threading.Event()
    release = threading.Event()

    def three_wrong_pins(books: Books) -> None:
        for _ in range(3):
            books.wrong_pin("g-ada", 3)
        locking.set()
        release.wait(10)  # held open while the desk's transaction starts

    def desk(books: Books) -> None:
        set_charging(books, guest_id="g-ada", enabled=True, daily_limit=700, pin_threshold=None)

    locker = threading.Thread(target=run, args=(store, three_wrong_pins))
    locker.start()
    assert locking.wait(10)
    writer = threading.Thread(target=run, args=(store, desk))
    writer.start()
    writer.join(0.3)  # it waits for the lock holder (a row lock, or SQLite's write lock)
    release.set()
    locker.join(10)
    writer.join(10)
    after = run(store, lambda books: books.privilege("g-ada"))
    assert (after.locked, after.daily_limit) == (True, 700)
