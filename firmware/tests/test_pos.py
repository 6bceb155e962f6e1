"""The pos role: the real firmware (SimReader, MicroPython unix port, at the reader's heap
limit) armed by a paho-played gateway with CHARGE and CANCEL commands, answering the taps it is
told to. What the guest sees, and what goes on the wire: the charge id, the PIN sealed in a
block that opens to what the guest typed, and the same operation again after no reply."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gateway_double import PlayedGateway, paid, refuse, retry, sim_reader

from bandlink.gateway.core.payments.pin import open_pin_block, reader_pin_key
from bandlink.protocol import POS, Tap, messages, reasons
from bandlink.tools.broker import MosquittoBroker
from bandlink.tools.micropython import DEFAULT_HEAP
from bandlink.tools.simreader import SimReader

READER = "till-1"
PIN_KEY = reader_pin_key(b"the gateway's secret key, 32+ chars", READER)
BAND_A = bytes.fromhex("04a1b2c3d4e5f6")
BAND_B = bytes.fromhex("04b0b0b0b0b0b0")
LABEL = "EUR 4.50 Coffee"
DEADLINE_MS = 400
HOLD_MS = 300


@pytest.fixture
def gateway(broker: MosquittoBroker, tmp_path: Path) -> Iterator[PlayedGateway]:
    played = PlayedGateway(broker, READER, tmp_path)
    yield played
    played.close()


@pytest.fixture
def till(broker: MosquittoBroker, gateway: PlayedGateway, tmp_path: Path) -> Iterator[SimReader]:
    reader = sim_reader(
        READER,
        broker,
        tmp_path,
        role="pos",
        pin_key=PIN_KEY,
        deadline_ms=DEADLINE_MS,
        heap=DEFAULT_HEAP,
        hold_ms=HOLD_MS,
    )
    with reader:
        reader.wait_online()
        gateway.wait_births(1)  # subscribed to its commands
        yield reader


def arm(gateway: PlayedGateway, till: SimReader, *, pin: bool, label: str = LABEL) -> bytes:
    """Arm the reader with a charge of EUR 4.50; its id, once the display shows the label."""
    charge = os.urandom(16)
    gateway.command(
        messages.CHARGE, charge=charge, amount=450, currency="EUR", pin_required=pin, label=label
    )
    till.wait_show("idle", label)
    return charge


def paid_450(tap: Tap) -> messages.Result:
    return paid(tap, "Paid EUR 4.50", 8750)


def test_an_armed_reader_shows_the_label_and_a_tap_pays(
    gateway: PlayedGateway, till: SimReader
) -> None:
    assert till.tap(BAND_A).text == "No sale open"  # nothing armed: nothing sent
    charge = arm(gateway, till, pin=False)
    gateway.answer = paid_450
    shown = till.tap(BAND_A)
    assert (shown.pattern, shown.text) == ("green", "Paid EUR 4.50")
    (tap,) = gateway.sent(1)
    assert (tap.role, tap.uid, tap.charge, tap.pin) == (POS, BAND_A, charge, None)
    assert tap.deadline is not None and tap.deadline - tap.ts == DEADLINE_MS
    till.wait_show("idle", "")  # paid: the sale is over, the display blank
    shown = till.tap(BAND_A)
    assert (shown.pattern, shown.text) == ("red", "No sale open")
    gateway.sent(1)


def test_the_pin_the_guest_types_travels_sealed_for_this_charge(
    gateway: PlayedGateway, till: SimReader
) -> None:
    charge = arm(gateway, till, pin=True)
    gateway.answer = paid_450
    shown = till.tap(BAND_A)
    assert (shown.pattern, shown.text) == ("pin", "Enter PIN")
    assert till.press("123#").pattern == "pin", "three digits are too few: asked again"
    assert till.press("99*5678#").text == "Paid EUR 4.50"  # "*" cleared the 99
    (tap,) = gateway.sent(1)
    assert tap.charge == charge and tap.pin is not None and len(tap.pin) == 16
    assert open_pin_block(PIN_KEY, charge, tap.pin) == "5678"
    assert open_pin_block(PIN_KEY, os.urandom(16), tap.pin) is None


def test_after_no_reply_the_same_band_resends_the_same_operation_and_another_band_does_not(
    gateway: PlayedGateway, till: SimReader
) -> None:
    """Each band's second send is answered (a RETRY, then a payment): two replies missed in a
    row would make the till decide alone (test_pos_offline.py)."""
    arm(gateway, till, pin=True)
    replies: Iterator[Callable[[Tap], messages.Result] | None] = iter([None, retry, None, paid_450])
    gateway.answer = lambda tap: (answer := next(replies)) and answer(tap)
    assert till.tap(BAND_A).pattern == "pin"
    assert till.press("1234#").pattern == "retry"  # no reply
    assert till.tap(BAND_A).pattern == "retry", "resent at once: no second PIN prompt"
    assert till.tap(BAND_B).pattern == "pin"
    assert till.press("4321#").pattern == "retry"
    assert till.tap(BAND_B).text == "Paid EUR 4.50"
    a1, a2, b1, b2 = gateway.sent(4)
    assert (a2.mid, a2.ts, a2.pin) == (a1.mid, a1.ts, a1.pin)
    assert a2.seq != a1.seq and a2.deadline is not None and a1.deadline is not None
    assert a2.deadline > a1.deadline
    assert b1.mid != a1.mid and b1.pin != a1.pin
    assert (b2.mid, b2.ts, b2.pin) == (b1.mid, b1.ts, b1.pin)


def test_a_wrong_pin_keeps_the_sale_open_for_another_try(
    gateway: PlayedGateway, till: SimReader
) -> None:
    charge = arm(gateway, till, pin=True)
    gateway.answer = lambda tap: refuse(tap, reasons.WRONG_PIN, "Wrong PIN")
    assert till.tap(BAND_A).pattern == "pin"
    shown = till.press("1111#")
    assert (shown.pattern, shown.text) == ("red", "Wrong PIN")
    till.wait_show("idle", LABEL)  # still armed
    gateway.answer = paid_450
    assert till.tap(BAND_A).pattern == "pin"
    assert till.press("2222#").text == "Paid EUR 4.50"
    first, second = gateway.sent(2)
    assert second.mid != first.mid
    assert second.pin is not None and open_pin_block(PIN_KEY, charge, second.pin) == "2222"


def test_a_pin_asked_for_by_the_gateway_is_typed_and_sent_as_a_new_operation(
    gateway: PlayedGateway, till: SimReader
) -> None:
    charge = arm(gateway, till, pin=False)
    gateway.answer = lambda tap: (
        paid_450(tap) if tap.pin else refuse(tap, reasons.PIN_REQUIRED, "Enter PIN", messages.PIN)
    )
    assert till.tap(BAND_A).pattern == "pin"
    assert till.press("246813#").text == "Paid EUR 4.50"
    first, second = gateway.sent(2)
    assert first.pin is None and second.mid != first.mid
    assert second.pin is not None and open_pin_block(PIN_KEY, charge, second.pin) == "246813"


def test_a_cancelled_sale_takes_no_more_taps(gateway: PlayedGateway, till: SimReader) -> None:
    charge = arm(gateway, till, pin=False)
    gateway.command(messages.CANCEL, charge=os.urandom(16))  # another charge: ignored
    replaced = arm(gateway, till, pin=False, label="EUR 9.00 Lunch")  # a new one replaces it
    gateway.command(messages.CANCEL, charge=charge)  # the replaced one: ignored too
    gateway.command(messages.CANCEL, charge=replaced)
    shown = till.wait_show("red")
    assert shown.text == "Cancelled"
    till.wait_show("idle", "")
    assert till.tap(BAND_A).text == "No sale open"
    gateway.sent(0)


def test_other_refusals_end_the_sale(gateway: PlayedGateway, till: SimReader) -> None:
    arm(gateway, till, pin=False)
    gateway.answer = lambda tap: refuse(tap, reasons.INSUFFICIENT_FUNDS, "Balance too low")
    assert till.tap(BAND_A).text == "Balance too low"
    till.wait_show("idle", "")
    assert till.tap(BAND_A).text == "No sale open"
    gateway.sent(1)


def test_many_sales_with_pins_run_at_the_readers_heap_limit(
    gateway: PlayedGateway, till: SimReader
) -> None:
    assert till.heap == DEFAULT_HEAP
    gateway.answer = paid_450
    for i in range(10):
        arm(gateway, till, pin=True, label=f"EUR 4.50 Coffee {i}")
        assert till.tap(BAND_A if i % 2 else BAND_B).pattern == "pin"
        assert till.press("%04d#" % i).text == "Paid EUR 4.50"
    assert till.heap_used_max > 0, "the reader reported its heap after each tap"
    assert len(gateway.sent(10)) == 10


def test_a_pin_not_typed_within_30_s_sends_nothing(gateway: PlayedGateway, till: SimReader) -> None:
    arm(gateway, till, pin=True)
    assert till.tap(BAND_A).pattern == "pin"
    started = time.monotonic()
    shown = till.wait_show("retry", timeout=40)
    assert shown.text == "PIN timed out" and time.monotonic() - started >= 29
    till.wait_show("idle", LABEL)  # the sale stays open
    gateway.sent(0)


def test_a_cancel_during_the_pin_prompt_ends_it(gateway: PlayedGateway, till: SimReader) -> None:
    """The prompt is a task of its own: CANCEL ends it, and keys typed afterwards pay nothing;
    a new CHARGE during a prompt ends it too and shows the new sale."""
    charge = arm(gateway, till, pin=True)
    assert till.tap(BAND_A).pattern == "pin"
    gateway.command(messages.CANCEL, charge=charge)
    assert till.wait_show("red").text == "Cancelled"
    assert till.tap(BAND_A).text == "No sale open"
    arm(gateway, till, pin=True)
    assert till.tap(BAND_B).pattern == "pin"
    arm(gateway, till, pin=False, label="EUR 9.00 Lunch")  # shown once the prompt has ended
    gateway.answer = paid_450
    assert till.tap(BAND_B).text == "Paid EUR 4.50"
    (tap,) = gateway.sent(1)
    assert tap.pin is None  # the new sale asked for none
