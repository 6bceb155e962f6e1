"""Bands prove every tap (SPEC, "Proving a band"), through the core and a real store on SQLite
and PostgreSQL: a copied UID, a forged reading, a replayed one, a reading of another band are
refused and leave no effect; a resend under its mid is never a replay; exits are never refused;
plain-UID bands only where the venue file says so, and marked."""

from __future__ import annotations

import os

import pytest

from bandlink.gateway.core.bands import sun
from bandlink.gateway.core.bands.keys import BandKeys
from bandlink.gateway.core.handler import Core, Decided
from bandlink.gateway.core.payments.pin import reader_pin_key, seal_pin_block
from bandlink.gateway.store import Store
from bandlink.gateway.venue import DEMO_BANDS, SITE
from bandlink.protocol import OUT, Tap, reasons
from bandlink.tools.sunband import SunBands, development_bands

from .pair import TODAY, Pair, evt_frame, make_tap
from .test_ledger import charge_at, topup
from .test_payments import SECRET, answer, pos_tap, with_pin

ADA, EMIL = DEMO_BANDS["Ada"], DEMO_BANDS["Emil"]


def _send(pair: Pair, tap: Tap) -> tuple[bool, int, str | None, str | None]:
    assert tap.reader is not None
    (result,) = pair.results([evt_frame(tap, reader=tap.reader)])
    return result.granted, result.reason, result.name, result.text


def _again(tap: Tap, **changes: object) -> Tap:
    """The same reading in a new operation (a fresh mid): what a copier sends."""
    fields = {
        "reader": tap.reader,
        "ts": tap.ts,
        "mid": os.urandom(16),
        "uid": tap.uid,
        "role": tap.role,
        "direction": tap.direction,
        "picc": tap.picc,
        "cmac": tap.cmac,
        "file": tap.file,
    }
    return Tap(**(fields | changes))


def _inside(store: Store, guest: str = "g-ada") -> bool:
    presence = store.presence(guest, SITE)
    return presence is not None and presence.inside


REFUSED = "Band not accepted - see staff"


def test_a_copied_uid_is_refused_without_a_name(pair: Pair, store: Store) -> None:
    """Issue: a UID copied onto any tag opened the gate as Ada. Her band is a SUN band: a tap
    with her UID alone is refused bad_mac, names nobody, and lets nobody in."""
    assert _send(pair, make_tap(ADA, sun=False)) == (False, reasons.BAD_MAC, None, REFUSED)
    assert not _inside(store)
    (record,) = store.recent_taps(1)
    assert (record.reason, record.guest_id, record.proof) == ("bad_mac", None, "plain")


def test_a_proven_tap_is_recorded_with_its_counter(pair: Pair, store: Store) -> None:
    tap = make_tap(ADA)
    assert _send(pair, tap)[:3] == (True, reasons.OK, "Ada")
    counter = development_bands().band(ADA).counter
    (record,) = store.recent_taps(1)
    assert (record.proof, record.sun_counter, record.guest_id) == ("sun", counter, "g-ada")
    assert store.last_counter(ADA) == counter


@pytest.mark.parametrize("part", ["picc", "cmac"])
def test_a_forged_reading_is_bad_mac(pair: Pair, store: Store, part: str) -> None:
    tap = make_tap(ADA)
    value = bytearray(getattr(tap, part))
    value[3] ^= 0x40
    assert _send(pair, _again(tap, **{part: bytes(value)}))[:2] == (False, reasons.BAD_MAC)
    assert not _inside(store)
    assert store.last_counter(ADA) is None  # a reading that does not verify uses nothing up


def test_another_bands_reading_under_this_uid_is_bad_mac(pair: Pair, store: Store) -> None:
    """Emil's genuine reading, sent with Ada's UID."""
    emils = make_tap(EMIL)
    assert _send(pair, _again(emils, uid=ADA))[:2] == (False, reasons.BAD_MAC)
    assert not _inside(store) and not _inside(store, "g-emil")


def test_a_replayed_reading_is_refused_and_a_resend_is_not(pair: Pair, store: Store) -> None:
    """The reading Ada's band made at the gate, copied (a sniffed URL) and shown again later in
    a new operation, is a replay; the reader resending its own operation gets its answer."""
    first = make_tap(ADA)
    assert _send(pair, first)[:2] == (True, reasons.OK)
    assert _send(pair, first)[:2] == (True, reasons.OK)  # a resend: the stored answer
    pair.tap(ADA, reader="gate-2", direction=OUT)  # she leaves, with a new reading
    assert _send(pair, _again(first)) == (False, reasons.REPLAYED, None, REFUSED)
    assert not _inside(store)  # the copy let nobody in


def test_a_copy_under_the_mid_of_a_bands_operation_gets_none_of_its_answer(
    pair: Pair, store: Store
) -> None:
    """Review: a reader resends a band's unanswered operation (its mid) for any tag showing
    that UID within 30 s; a copied UID tapped after Ada's reply was lost got "Welcome Ada".
    The stored answer goes to her band showing itself again, and to nothing else."""
    older = make_tap(ADA)
    first = make_tap(ADA)
    assert _send(pair, first)[:3] == (True, reasons.OK, "Ada")
    copy = make_tap(ADA, mid=first.mid, sun=False)
    assert _send(pair, copy) == (False, reasons.BAD_MAC, None, REFUSED)
    old_reading = _again(older, mid=first.mid)
    assert _send(pair, old_reading)[:3] == (False, reasons.REPLAYED, None)
    assert _send(pair, first)[:3] == (True, reasons.OK, "Ada")  # a redelivery
    fresh = make_tap(ADA, mid=first.mid)  # the reader's resend, with this tap's fresh read
    assert _send(pair, fresh)[:3] == (True, reasons.OK, "Ada")
    assert store.count_taps() == 1


def test_an_older_reading_after_a_newer_one_is_a_replay(pair: Pair, store: Store) -> None:
    older = make_tap(ADA)
    newer = make_tap(ADA)
    assert _send(pair, newer)[:2] == (True, reasons.OK)
    pair.tap(ADA, reader="gate-2", direction=OUT)
    assert _send(pair, older)[:2] == (False, reasons.REPLAYED)


def test_an_exit_is_never_refused_but_an_unproven_band_is_nobody(pair: Pair, store: Store) -> None:
    """A copied band at the exit is let out ("not inside"): exits are never refused. It does
    not take the real guest's presence with it."""
    assert pair.tap(ADA).reason == reasons.OK
    copy = make_tap(ADA, direction=OUT, reader="gate-2", sun=False)
    assert _send(pair, copy) == (True, reasons.NOT_INSIDE, None, "Goodbye")
    assert _inside(store)


def _alerts(pair: Pair) -> list[str]:
    return [e.alert for e in pair.events() if isinstance(e, Decided) and e.alert]


def test_at_an_exit_a_copy_or_a_stolen_band_is_let_out_as_nobody_and_flagged(
    pair: Pair, store: Store
) -> None:
    """Review: exits are never refused, but a copied UID there raised no alert, and a band
    blocked as stolen said "Goodbye Ada", raised no alert and marked her outside."""
    assert pair.tap(ADA).reason == reasons.OK
    copy = make_tap(ADA, direction=OUT, reader="gate-2", sun=False)
    assert _send(pair, copy)[:3] == (True, reasons.NOT_INSIDE, None)
    store.block_band(ADA, reason="stolen", now_ms=0)
    stolen = make_tap(ADA, direction=OUT, reader="gate-2")
    assert _send(pair, stolen) == (True, reasons.NOT_INSIDE, None, "Goodbye")
    assert _inside(store)
    assert _alerts(pair) == ["possible clone", "possible theft: band reported stolen"]


def test_an_lrp_band_proves_its_taps(store: Store) -> None:
    bands = SunBands(b"bandlink-dev-key", mode=sun.LRP)
    tap = make_tap(ADA, sun=False)
    lrp = _again(tap, **bands.read(ADA))
    assert lrp.picc is not None and len(lrp.picc) == 24
    pair = Pair(store, Core(band_keys=BandKeys(b"bandlink-dev-key")))
    assert _send(pair, lrp)[:2] == (True, reasons.OK)
    assert _send(pair, _again(lrp))[:2] == (False, reasons.REPLAYED)


def test_bands_of_another_master_key_do_not_prove(store: Store) -> None:
    """A band personalised by another venue (or with a guessed key)."""
    foreign = SunBands(bytes(16))
    tap = _again(make_tap(ADA, sun=False), **foreign.read(ADA))
    assert _send(Pair(store), tap)[:2] == (False, reasons.BAD_MAC)


def test_plain_uid_bands_only_where_the_venue_says_and_marked(pair: Pair, store: Store) -> None:
    plain = bytes.fromhex("04aaaaaaaaaa02")
    ticket = {"id": "t-pat", "valid_from": "today", "valid_until": "today"}
    pat = {"id": "g-pat", "name": "Pat", "bands": [plain.hex()], "tickets": [ticket]}
    store.load_venue({"site": SITE, "band_security": "plain-uid", "guests": [pat]}, today=TODAY)
    assert store.plain_uid_bands() == 1
    assert pair.tap(plain, sun=False).reason == reasons.OK
    (record,) = store.recent_taps(1)
    assert record.proof == "plain"
    with pytest.raises(ValueError, match="band_security"):
        store.load_venue({"site": SITE, "band_security": "uid", "guests": [pat]}, today=TODAY)


def test_a_replayed_reading_pays_nothing(store: Store) -> None:
    till = Pair(store, Core(secret_key=SECRET))
    topup(store, "g-ada", 5000)
    paid = pos_tap(charge_at(store, "pos-1", 450))
    assert answer(till, paid).reason == reasons.OK
    copy = _again(paid, charge=charge_at(store, "pos-1", 450).id, role=paid.role)
    declined = answer(till, copy)
    assert (declined.granted, declined.reason, declined.text) == (False, reasons.REPLAYED, REFUSED)
    assert store.run(lambda books: books.totals()).transfers == 2  # the top-up, one payment


def test_a_copy_under_a_paid_taps_mid_is_not_told_it_paid(store: Store) -> None:
    till = Pair(store, Core(secret_key=SECRET))
    topup(store, "g-ada", 5000)
    paid = pos_tap(charge_at(store, "pos-1", 450))
    assert answer(till, paid).reason == reasons.OK
    copy = _again(paid, picc=None, cmac=None, charge=paid.charge, mid=paid.mid)
    refused = answer(till, copy)
    assert (refused.granted, refused.reason, refused.balance) == (False, reasons.BAD_MAC, None)
    assert answer(till, paid).reason == reasons.OK  # the reader's own resend: its answer


def test_the_pin_follows_with_the_reading_that_asked_for_it(store: Store) -> None:
    """A pos tap answered pin_required does not use its reading up: the reader sends the PIN
    with the same reading while the guest types. It pays once; the reading is then used."""
    till = Pair(store, Core(secret_key=SECRET))
    topup(store, "g-ada", 5000)
    with_pin(store, till.core.pins.hash("g-ada", "2468"), threshold=1000)
    charge = charge_at(store, "pos-1", 2500)
    asked = pos_tap(charge)
    assert answer(till, asked).reason == reasons.PIN_REQUIRED
    block = seal_pin_block(reader_pin_key(SECRET, "pos-1"), charge.id, "2468", os.urandom(16))
    with_the_pin = _again(asked, charge=charge.id, pin=block)
    assert answer(till, with_the_pin).reason == reasons.OK
    again = _again(asked, charge=charge_at(store, "pos-1", 100).id)  # below the threshold
    assert answer(till, again).reason == reasons.REPLAYED
