"""A till's offline sales, reconciled (SPEC, "Reconciling a sale"), and the band lists tills
decide them from (SPEC, "The band list"). Through the in-memory pair: the real core and a real
store, on SQLite and PostgreSQL.

A sale a till granted alone happened: the guest has the goods. The gateway posts it once, at
the tap's own time, against its charge, past the account's floor if it must (an overdraft, on
the report); it is not posted when there is nothing to post it against or it would be a second
payment. A sale the till refused moves nothing."""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandlink.gateway.core.handler import Core, Frame
from bandlink.gateway.core.payments import ledger
from bandlink.gateway.core.payments.operations import cancel_charge
from bandlink.gateway.core.payments.pin import offline_pin_check, offline_pin_key
from bandlink.gateway.core.payments.records import Charge
from bandlink.gateway.core.records import TapRecord
from bandlink.gateway.store import Books, Store
from bandlink.gateway.venue import DEMO_BANDS, DEMO_VENUE, SITE, UNKNOWN_BAND_UID
from bandlink.protocol import (
    POS,
    Birth,
    Command,
    Journal,
    Tap,
    decode,
    encode,
    messages,
    reasons,
    topics,
)
from bandlink.protocol import lists as wire_list
from bandlink.tools.sunband import development_bands

from .pair import NOON_MS, TODAY, Pair, evt_frame
from .test_journal import MINUTE_MS, upload
from .test_ledger import balance, charge_at, topup
from .test_lists import pushed
from .test_payments import answer, pos_tap

ADA, DARA, EMIL, CHEN = (DEMO_BANDS[name] for name in ("Ada", "Dara", "Emil", "Chen"))
SECRET = b"s" * 32


def offline_sale(
    charge: Charge,
    uid: bytes = ADA,
    *,
    granted: bool = True,
    ts: int = NOON_MS - MINUTE_MS,
    reading: dict[str, bytes] | None = None,
    mid: bytes | None = None,
) -> Tap:
    """A sale the till decided alone, as its journal carries it, with a fresh SUN reading of
    the band (or ``reading``: one shown before, or a forged one)."""
    return Tap(
        reader=charge.reader_id,
        ts=ts,
        mid=mid or os.urandom(16),
        uid=uid,
        role=POS,
        charge=charge.id,
        offline=True,
        local_granted=granted,
        local_reason=reasons.OFFLINE_LIST if granted else reasons.OFFLINE_LIMIT,
        **(reading if reading is not None else development_bands().read(uid)),
    )


def recorded(store: Store, tap: Tap) -> TapRecord:
    assert tap.mid is not None
    found = store.tap_by_mid(tap.mid)
    assert found is not None
    return found


def charge_now(store: Store, charge: Charge) -> Charge:
    found = store.read(lambda books: books.charge(charge.id))
    assert found is not None
    return found


def paid_transfers(store: Store, charge: Charge) -> list[ledger.Transfer]:
    found = store.read(lambda books: books.charge_transfers(charge.id))
    return [t for t in found if t.kind == ledger.CHARGE]


def account_of(store: Store, guest: str) -> Any:
    def read(books: Books) -> Any:
        account_id = books.party_account(guest)
        return books.account(account_id) if account_id else None

    return store.read(read)


def test_an_offline_sale_is_posted_once_at_its_own_time(pair: Pair, store: Store) -> None:
    topup(store, "g-ada", 2000)
    charge = charge_at(store, "pos-1", 450, NOON_MS - 2 * MINUTE_MS, description="Coffee")
    sale = offline_sale(charge)
    assert upload(pair, sale).granted
    assert balance(store, "g-ada") == 1550
    record = recorded(store, sale)
    assert (record.granted, record.reason, record.gateway_reason, record.exception) == (
        True,
        "offline_list",
        "ok",
        None,
    )
    assert (record.guest_id, record.charge_id, record.balance) == ("g-ada", charge.id, 1550)
    (paid,) = paid_transfers(store, charge)
    assert paid.created_ms == sale.ts and paid.source == "wallet:okafor"
    assert charge_now(store, charge).state == "approved"
    # The same journal again (its acknowledgement was lost), and in another upload with a tap
    # of its own: the sale is posted once.
    assert upload(pair, sale).granted
    assert upload(pair, sale, offline_sale(charge, granted=False)).granted
    assert balance(store, "g-ada") == 1550 and len(paid_transfers(store, charge)) == 1
    assert store.run(lambda books: books.totals()).total == 0


def test_an_offline_sale_past_the_floor_is_an_overdraft_online_charges_are_not(
    pair: Pair, store: Store
) -> None:
    topup(store, "g-ada", 300)
    charge = charge_at(store, "pos-1", 450)
    sale = offline_sale(charge)
    assert upload(pair, sale).granted
    record = recorded(store, sale)
    assert (record.exception, record.overdraft, record.balance) == ("insufficient_funds", 150, -150)
    account = account_of(store, "g-ada")
    assert (account.balance, account.overdraft, account.overdrawn) == (-150, 150, True)
    totals = store.run(lambda books: books.totals())
    assert (totals.total, totals.below_floor, totals.overdrawn) == (0, 0, 1)
    # Live, the floor holds: an overdrawn wallet pays nothing until it is topped up again.
    live = charge_at(store, "pos-2", 100)
    refused = answer(pair, pos_tap(live))
    assert (refused.granted, refused.reason) == (False, reasons.INSUFFICIENT_FUNDS)
    assert balance(store, "g-ada") == -150
    topup(store, "g-ada", 1000)
    account = account_of(store, "g-ada")
    assert (account.balance, account.overdraft, account.overdrawn) == (850, 0, False)


def test_a_guest_with_no_wallet_yet_overdraws_one_of_their_own(pair: Pair, store: Store) -> None:
    """Bo was never topped up and is in no party: the sale still happened, so he gets a wallet
    and owes it."""
    charge = charge_at(store, "pos-1", 200)
    sale = offline_sale(charge, DEMO_BANDS["Bo"])
    assert upload(pair, sale).granted
    assert recorded(store, sale).exception == "insufficient_funds"
    assert balance(store, "g-bo") == -200


def test_a_sale_the_gateway_would_have_refused_is_posted_and_an_exception(
    pair: Pair, store: Store
) -> None:
    """A blocked band still on the till's list, a reading that does not verify or was shown
    before, charging switched off, a daily limit passed: the guest has the goods, so each is
    posted, and each is on the report with the reason."""
    topup(store, "g-ada", 10_000)
    store.run(lambda b: b.set_limits("g-chen", enabled=False, daily_limit=None, pin_threshold=None))
    forged = dict(development_bands().read(ADA))
    forged["cmac"] = bytes(8)
    shown = development_bands().read(ADA)
    assert upload(pair, offline_sale(charge_at(store, "pos-1", 100), reading=shown)).granted
    cases: list[tuple[str, bytes, int, dict[str, bytes] | None]] = [
        ("band_blocked", DARA, 100, None),
        ("bad_mac", ADA, 100, forged),
        ("replayed", ADA, 100, shown),
        ("not_permitted", CHEN, 100, None),
        ("limit_exceeded", EMIL, 1600, None),
    ]
    for exception, uid, amount, reading in cases:
        charge = charge_at(store, "pos-1", amount)
        sale = offline_sale(charge, uid, reading=reading)
        assert upload(pair, sale).granted
        record = recorded(store, sale)
        assert (record.exception, record.gateway_reason) == (exception, exception)
        paid = charge_now(store, charge)
        assert paid.state == "approved" and paid.guest_id == record.guest_id is not None
    assert balance(store, "g-ada") == 10_000 - 300 - 1600  # Ada's, and Emil's from her wallet
    assert balance(store, "g-dara") == -100  # a wallet of her own, overdrawn
    assert balance(store, "g-chen") == -100  # charged to the room's folio
    assert store.run(lambda books: books.spent("g-emil", TODAY)) == 1600


def test_a_sale_with_nothing_to_post_against_or_paid_already_is_not_posted(
    pair: Pair, store: Store
) -> None:
    """Unknown band, no such charge at this reader, paid already (the same band's live tap
    whose answer was lost), cancelled by staff: an exception each, and no money moves."""
    topup(store, "g-ada", 5000)
    live = charge_at(store, "pos-1", 400)
    assert answer(pair, pos_tap(live)).granted  # its answer never reached the till
    cancelled = charge_at(store, "pos-2", 300)
    store.run(
        lambda books: cancel_charge(books, charge_id=cancelled.id, till_outlet=None, now_ms=NOON_MS)
    )
    elsewhere = charge_at(store, "pos-3", 200)
    ghost = Charge(os.urandom(16), "pos-1", "cafe", 100, "EUR", "x", "pending", 0, 0, "tok")
    cases = {
        "unknown_band": offline_sale(charge_at(store, "pos-1", 100), UNKNOWN_BAND_UID, reading={}),
        "charge_unknown": offline_sale(ghost),
        "charge_paid": offline_sale(live),
        "charge_cancelled": offline_sale(cancelled),
    }
    wrong_reader = offline_sale(replace(elsewhere, reader_id="pos-1"))  # sent by another till
    before = store.run(lambda books: books.totals()).transfers
    for exception, sale in (*cases.items(), ("charge_unknown", wrong_reader)):
        assert upload(pair, sale).granted
        assert recorded(store, sale).exception == exception
    assert store.run(lambda books: books.totals()).transfers == before
    assert balance(store, "g-ada") == 4600
    assert charge_now(store, cancelled).state == "cancelled"
    assert charge_now(store, elsewhere).state == "pending"


def test_a_charge_that_timed_out_while_the_till_was_offline_is_paid(
    pair: Pair, store: Store
) -> None:
    topup(store, "g-ada", 1000)
    charge = charge_at(store, "pos-1", 250, NOON_MS - 10 * MINUTE_MS)
    expired = store.run(lambda books: books.expire_charges(NOON_MS))
    assert [c.id for c in expired] == [charge.id]
    sale = offline_sale(charge, ts=NOON_MS - 9 * MINUTE_MS)
    assert upload(pair, sale).granted
    assert recorded(store, sale).exception is None
    assert charge_now(store, charge).state == "approved" and balance(store, "g-ada") == 750


def test_a_sale_the_till_refused_is_recorded_and_moves_nothing(pair: Pair, store: Store) -> None:
    topup(store, "g-ada", 1000)
    charge = charge_at(store, "pos-1", 250)
    refused = offline_sale(charge, granted=False)
    assert upload(pair, refused).granted
    record = recorded(store, refused)
    assert (record.granted, record.reason, record.exception) == (False, "offline_limit", None)
    assert balance(store, "g-ada") == 1000 and charge_now(store, charge).state == "pending"


def _reconcile_in_a_process(url: str, frame: Any, start: Any, out: Any) -> None:
    """A gateway process reconciling one Journal frame, released by a barrier."""
    store = Store(url)
    with store.transaction():
        pass
    start.wait()
    (reply,) = Pair(store).results([frame])
    out.put(reply.granted)
    store.close()


def test_one_journal_at_several_processes_posts_each_sale_once(store: Store, db_url: str) -> None:
    topup(store, "g-ada", 1000)
    charges = [charge_at(store, reader, 100) for reader in ("pos-1", "pos-2", "pos-3")]
    sales = [offline_sale(charge) for charge in charges]
    journal = Journal(reader="pos-1", ts=NOON_MS, mid=os.urandom(16), taps=sales[:1])
    frames = [evt_frame(encode(journal), "pos-1")]
    for sale in sales[1:]:
        assert sale.reader is not None
        one = Journal(reader=sale.reader, ts=NOON_MS, mid=os.urandom(16), taps=[sale])
        frames.append(evt_frame(encode(one), sale.reader))
    ctx = multiprocessing.get_context("fork")
    for frame in frames:  # each journal at three processes at once
        start, out = ctx.Barrier(3), ctx.Queue()
        procs = [
            ctx.Process(target=_reconcile_in_a_process, args=(db_url, frame, start, out))
            for _ in range(3)
        ]
        for p in procs:
            p.start()
        assert [out.get(timeout=60) for _ in procs] == [True] * 3
        for p in procs:
            p.join(timeout=30)
    assert balance(store, "g-ada") == 700
    assert all(len(paid_transfers(store, charge)) == 1 for charge in charges)
    assert sum(1 for t in store.recent_taps(100) if t.offline) == 3


# -- any sequence of offline sales ----------------------------------------------------------


@dataclass(frozen=True)
class Sale:
    """One sale a till decided alone, and what happened to it on its way to the ledger."""

    amount: int
    listed: bool  # False: a band no gateway knows (no guest, nothing to post it against)
    uploads: str  # "once"; "twice" (the acknowledgement was lost); "both" (at two gateways)
    paid_online: bool  # a live tap paid it first (if the wallet could), its answer lost


SALES = st.lists(
    st.builds(
        Sale,
        amount=st.integers(1, 2500),
        listed=st.sampled_from((True, True, True, False)),  # one band in four unknown
        uploads=st.sampled_from(("once", "twice", "both")),
        paid_online=st.booleans(),
    ),
    min_size=1,
    max_size=8,
)
_shoppers = itertools.count()


@pytest.fixture(scope="module")
def two_gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pair, Pair]]:
    """Two gateway processes' cores and stores on one SQLite file: each has its own view of
    the catalog and its own connection, as two processes would."""
    url = f"sqlite:///{tmp_path_factory.mktemp('sales') / 'gw.db'}"
    first = Store(url)
    first.migrate()
    first.load_venue(DEMO_VENUE, today=TODAY)
    second = Store(url)
    yield Pair(first), Pair(second)
    second.close()
    first.close()


def new_shopper(store: Store, tills: int) -> tuple[str, bytes, list[str]]:
    """A guest of their own (so their wallet starts empty) with a band, and ``tills`` fresh pos
    readers, one per sale (a reader holds one open charge at a time)."""
    n = next(_shoppers)
    guest, uid = f"g-shopper-{n}", (0x06 << 48 | n).to_bytes(7, "big")
    readers = [f"pos-s{n}-{i}" for i in range(tills)]
    venue = {
        "guests": [{"id": guest, "name": "S", "bands": [uid.hex()]}],
        "readers": [{"id": r, "site": SITE, "role": "pos", "outlet": "cafe"} for r in readers],
    }
    store.load_venue(venue, today=TODAY)
    return guest, uid, readers


def sell(gateways: tuple[Pair, Pair], sale: Sale, charge: Charge, uid: bytes) -> tuple[Tap, bool]:
    """The sale as it went: maybe a live tap first, then the till's journal uploaded as
    ``sale.uploads`` says. The offline tap, and whether the live tap paid."""
    first, second = gateways
    band = uid if sale.listed else UNKNOWN_BAND_UID
    paid_online = sale.paid_online and answer(first, pos_tap(charge, band)).granted
    tap = offline_sale(charge, band, reading=None if sale.listed else {})
    upload(first, tap)
    if sale.uploads != "once":
        upload(second if sale.uploads == "both" else first, tap)
    return tap, paid_online


@settings(max_examples=25, deadline=None)
@given(wallet=st.integers(0, 3000), sales=SALES)
def test_any_offline_sales_post_once_and_every_overdraft_is_reported(
    two_gateways: tuple[Pair, Pair], wallet: int, sales: list[Sale]
) -> None:
    store = two_gateways[0].store
    guest, uid, readers = new_shopper(store, len(sales))
    if wallet:
        topup(store, guest, wallet)
    taps: list[tuple[Sale, Charge, Tap, bool]] = []
    for sale, reader in zip(sales, readers, strict=True):
        charge = charge_at(store, reader, sale.amount)
        taps.append((sale, charge, *sell(two_gateways, sale, charge, uid)))
    records = [only_record(store, tap) for _sale, _charge, tap, _paid in taps]
    for (sale, charge, tap, paid_online), record in zip(taps, records, strict=True):
        transfers = paid_transfers(store, charge)
        assert len(transfers) == (1 if sale.listed else 0)  # posted once, or never
        if paid_online:  # paid already: the sale is a second payment, never posted
            assert record.exception == "charge_paid" and transfers[0].created_ms != tap.ts
    assert balance(store, guest) == wallet - sum(s.amount for s in sales if s.listed)
    assert_overdrafts_reported(store, guest, records)
    totals = store.run(lambda books: books.totals())
    assert (totals.total, totals.unbalanced, totals.drifted, totals.below_floor) == (0, 0, 0, 0)


def only_record(store: Store, tap: Tap) -> TapRecord:
    """The one record of ``tap`` among what its reader decided alone, however often uploaded."""
    (found,) = store.offline_taps(reader=tap.reader)
    assert found.mid == tap.mid
    return found


def assert_overdrafts_reported(store: Store, guest: str, records: list[TapRecord]) -> None:
    """What the wallet owes is what the report's overdrafts add up to (it sums them over
    exceptions: an overdraft is one, whatever else it is)."""
    assert all(r.exception is not None for r in records if r.overdraft)
    account = account_of(store, guest)
    owed = account.overdraft if account else 0
    assert owed == sum(r.overdraft or 0 for r in records)
    assert (account is not None and account.overdrawn) == (owed > 0)


# -- the tills' band lists ------------------------------------------------------------------


def till_with_floor(store: Store, floor: int | None = 2000, cap: int | None = 5000) -> None:
    reader = {"id": "pos-1", "site": SITE, "role": "pos", "outlet": "cafe"}
    limits = {"offline_floor": floor, "offline_cap": cap}
    store.load_venue({"readers": [reader | limits]}, today=TODAY)


def till_birth(pair: Pair) -> list[Command]:
    """pos-1 connects holding no list: the commands it gets besides its TIME_SYNC."""
    birth = Birth(reader="pos-1", ts=1, bdseq=1, firmware="fw", role=POS)
    frame = Frame(topics.reader_topic("pos-1", topics.BIRTH), encode(birth), NOON_MS)
    replies = pair.send([frame]).replies
    commands = [decode(reply.payload) for reply in replies]
    return [c for c in commands if isinstance(c, Command) and c.op != messages.TIME_SYNC]


def entries_of(commands: list[Command]) -> dict[bytes, bytes]:
    joined = b"".join(c.entries or b"" for c in commands)
    size = messages.LIST_ENTRY_SIZE
    found = [joined[i : i + size] for i in range(0, len(joined), size)]
    return {wire_list.entry_uid(e): e for e in found}


def test_a_till_without_an_offline_floor_takes_no_list(store: Store) -> None:
    till = Pair(store, Core(secret_key=SECRET))
    assert till_birth(till) == []


def test_a_till_lists_the_bands_that_may_pay_offline(store: Store) -> None:
    """Ada asks for a PIN above EUR 20, the floor is EUR 20: no offline sale passes it, so she
    is listed PAY alone. Dara's band is blocked; everyone else may pay."""
    till_with_floor(store)
    till = Pair(store, Core(secret_key=SECRET))
    (snapshot,) = till_birth(till)
    assert snapshot.op == messages.LIST_SNAPSHOT
    listed = entries_of([snapshot])
    assert set(listed) == {ADA, EMIL, CHEN, DEMO_BANDS["Bo"]}
    assert all(entry[11] == wire_list.PAY for entry in listed.values())


def test_pin_set_lock_charging_off_and_block_reach_the_till_as_deltas(store: Store) -> None:
    """Ada's threshold drops below the floor: with no PIN she needs one she has not set, so she
    leaves the list; a PIN set brings her back with flag PIN and a check the till's offline PIN
    key (as provisioned) accepts for her PIN only; her lock, Emil's charging switched off and
    Chen's band blocked take them off the list, each in a delta."""
    till_with_floor(store)
    till = Pair(store, Core(secret_key=SECRET))
    (snapshot,) = till_birth(till)
    held = snapshot.list_version
    store.run(lambda b: b.set_limits("g-ada", enabled=True, daily_limit=None, pin_threshold=500))
    (gone,) = pushed(till.core, store)
    assert (gone.op, gone.base_version, gone.remove) == (messages.LIST_DELTA, held, [ADA])
    check, salt = till.core.offline_pin_check("2468")
    hashed = till.core.pins.hash("g-ada", "2468")
    store.run(lambda b: b.set_pin_hash("g-ada", hashed, check=check, salt=salt))
    (back,) = pushed(till.core, store)
    entry = entries_of([back])[ADA]
    assert entry[11] == wire_list.PAY | wire_list.PIN
    key = offline_pin_key(SECRET)
    assert entry[12:14] == offline_pin_check(key, entry[14:16], "2468")
    assert entry[12:14] != offline_pin_check(key, entry[14:16], "1357")
    store.run(lambda b: b.wrong_pin("g-ada", 1))  # locked at once
    store.run(lambda b: b.set_limits("g-emil", enabled=False, daily_limit=None, pin_threshold=None))
    store.block_band(CHEN, reason="lost", now_ms=NOON_MS)
    (after,) = pushed(till.core, store)
    assert sorted(after.remove or []) == sorted([ADA, EMIL, CHEN])
    assert pushed(till.core, store) == []  # nothing changed since


def test_a_wrong_pin_that_does_not_lock_changes_no_list(store: Store) -> None:
    till_with_floor(store)
    till = Pair(store, Core(secret_key=SECRET))
    till_birth(till)
    applied = store.view.applied
    store.run(lambda b: b.wrong_pin("g-ada", 3))
    with store.transaction():
        pass
    assert store.view.applied == applied and pushed(till.core, store) == []


def test_the_till_config_carries_its_floor_and_cap_and_a_change_is_a_new_version(
    store: Store,
) -> None:
    from bandlink.gateway.core.configs import config_message

    before = store.reader("pos-1")
    till_with_floor(store, 2000, 5000)
    after = store.reader("pos-1")
    assert before is not None and after is not None
    assert after.config_version > before.config_version
    config = config_message(after, NOON_MS)
    assert (config.offline_floor, config.offline_cap) == (2000, 5000)
    gate = store.reader("gate-1")
    assert gate is not None and config_message(gate, NOON_MS).offline_floor is None
