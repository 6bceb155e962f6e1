"""A till deciding alone (SPEC, "A till deciding alone"): the real firmware (SimReader, the
MicroPython unix port, at the reader's heap limit) against a paho-played gateway that gives it a
Config with an offline floor and cap and a band list (Command LIST_SNAPSHOT, entries made by
``protocol.lists.entry``), then says it is offline (its retained gateway state). What the guest
sees, what the journal on flash keeps, and what the till uploads once the gateway is back.

The journal's own rules are in test_journal.py; the till online in test_pos.py."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_double import PlayedGateway, paid, sim_reader

from bandlink.gateway.core.payments.pin import offline_pin_check, offline_pin_key, reader_pin_key
from bandlink.protocol import POS, lists, messages, reasons
from bandlink.tools.broker import MosquittoBroker
from bandlink.tools.micropython import DEFAULT_HEAP, run_micropython
from bandlink.tools.simreader import SimReader
from bandlink.tools.waiting import wait_for

READER = "till-1"
SECRET = b"the gateway's secret key, 32+ chars"
PIN_KEY = reader_pin_key(SECRET, READER)
OFFLINE_KEY = offline_pin_key(SECRET)
PAYS = bytes.fromhex("04a1b2c3d4e5f6")  # listed with PAY
PAYS_TOO = bytes.fromhex("04a1b2c3d4e5f7")
WITH_PIN = bytes.fromhex("04c0c0c0c0c0c0")  # PAY and PIN: "2468"
UNPAID = bytes.fromhex("04b0b0b0b0b0b0")  # listed without PAY (a gate's entry)
UNLISTED = bytes.fromhex("04d0d0d0d0d0d0")
SALT = bytes.fromhex("5a17")
FLOOR, CAP = 2000, 5000
LIST_VERSION = 77
DEADLINE_MS = 400


def band_list() -> bytes:
    entries = [
        lists.entry(PAYS, lists.PAY),
        lists.entry(PAYS_TOO, lists.PAY),
        lists.entry(
            WITH_PIN, lists.PAY | lists.PIN, offline_pin_check(OFFLINE_KEY, SALT, "2468"), SALT
        ),
        lists.entry(UNPAID, lists.ENTRY),
    ]
    return b"".join(sorted(entries, key=lambda e: e[: lists.KEY_SIZE]))


@pytest.fixture
def gateway(broker: MosquittoBroker, tmp_path: Path) -> Iterator[PlayedGateway]:
    played = PlayedGateway(broker, READER, tmp_path)
    yield played
    played.close()


@contextlib.contextmanager
def running_till(
    broker: MosquittoBroker, gateway: PlayedGateway, tmp_path: Path, **limits: int
) -> Iterator[SimReader]:
    """The till online with its Config (limits: offline_floor, offline_cap) and band list."""
    till = sim_reader(
        READER,
        broker,
        tmp_path,
        role="pos",
        pin_key=PIN_KEY,
        offline_pin_key=OFFLINE_KEY,
        deadline_ms=DEADLINE_MS,
        heap=DEFAULT_HEAP,
        hold_ms=300,
    )
    gateway.config(version=1, role=POS, deadline_ms=DEADLINE_MS, hold_ms=300, **limits)
    with till:
        yield ready(till, gateway)


def ready(till: SimReader, gateway: PlayedGateway) -> SimReader:
    till.wait_online()
    gateway.wait_births(1)
    gateway.command(
        messages.LIST_SNAPSHOT, list_version=LIST_VERSION, chunk=0, chunks=1, entries=band_list()
    )
    birth = gateway.rebirth()  # a barrier: the Config and the list were taken before it
    assert (birth.config_version, birth.list_version) == (1, LIST_VERSION), birth
    return till


@pytest.fixture
def till(broker: MosquittoBroker, gateway: PlayedGateway, tmp_path: Path) -> Iterator[SimReader]:
    with running_till(broker, gateway, tmp_path, offline_floor=FLOOR, offline_cap=CAP) as reader:
        yield reader


def offline(gateway: PlayedGateway) -> None:
    gateway.online(False)
    gateway.rebirth()  # the state was taken before it


def arm(
    gateway: PlayedGateway, till: SimReader, amount: int, label: str = "", pin: bool = False
) -> bytes:
    """A new sale, once the display shows its label (by default one no sale before had)."""
    charge = os.urandom(16)
    label = label or f"Sale {charge.hex()[:8]}"
    gateway.command(
        messages.CHARGE, charge=charge, amount=amount, currency="EUR", pin_required=pin, label=label
    )
    till.wait_show("idle", label)
    return charge


def shown(till: SimReader, band: bytes) -> tuple[str, str]:
    seen = till.tap(band)
    return seen.pattern, seen.text


def test_a_sale_under_the_floor_is_paid_alone_kept_on_flash_and_uploaded_when_back(
    gateway: PlayedGateway, till: SimReader
) -> None:
    offline(gateway)
    charge = arm(gateway, till, 450)
    assert shown(till, PAYS) == ("green-offline", "Paid")
    (kept,) = till.pending_operations()  # on flash when the light showed
    assert charge in kept
    till.wait_show("idle", "")  # paid: the sale is done
    assert shown(till, PAYS) == ("red", "No sale open")
    gateway.sent(0)  # nothing went to the gateway live
    gateway.online(True)
    (tap,) = gateway.uploaded(1)
    assert (tap.uid, tap.role, tap.charge, tap.pin) == (PAYS, POS, charge, None)
    assert (tap.offline, tap.local_granted, tap.local_reason) == (True, True, reasons.OFFLINE_LIST)
    assert wait_until_empty(till), "acknowledged: forgotten"


def wait_until_empty(till: SimReader) -> bool:
    """Whether the journal on flash holds no operation (waits a while for one)."""
    return wait_for(till.pending_operations, lambda ops: not ops) == []


def test_over_the_floor_or_the_bands_cap_is_refused_and_a_refusal_keeps_the_sale(
    gateway: PlayedGateway, till: SimReader
) -> None:
    offline(gateway)
    arm(gateway, till, FLOOR + 1)
    assert shown(till, PAYS) == ("red-offline", "offline_limit")
    for _ in range(2):  # 4,000 of the 5,000 cap
        arm(gateway, till, FLOOR)
        assert shown(till, PAYS)[0] == "green-offline"
    arm(gateway, till, 1001, "Third")
    assert shown(till, PAYS) == ("red-offline", "offline_limit")  # 5,001: over the cap
    till.wait_show("idle", "Third")  # refused alone: the sale stays for another band
    assert shown(till, PAYS_TOO) == ("green-offline", "Paid")  # the cap is per band
    arm(gateway, till, 1000)
    assert shown(till, PAYS)[0] == "green-offline", "5,000: at the cap, not above it"
    arm(gateway, till, 100)
    assert shown(till, UNPAID) == ("red-offline", "offline_not_listed")  # no PAY flag
    assert shown(till, UNLISTED) == ("red-offline", "offline_not_listed")
    gateway.online(True)
    taps = gateway.uploaded(8)
    granted = [t.local_granted for t in taps]
    assert granted == [False, True, True, False, True, True, False, False], taps
    assert len({t.mid for t in taps}) == 8


def test_without_a_floor_and_cap_in_the_config_no_sale_is_taken_alone(
    broker: MosquittoBroker, gateway: PlayedGateway, tmp_path: Path
) -> None:
    with running_till(broker, gateway, tmp_path, offline_floor=FLOOR) as till:  # no cap
        offline(gateway)
        arm(gateway, till, 100)
        assert shown(till, PAYS) == ("red-offline", "offline_limit")


def test_a_pin_band_types_its_pin_and_the_third_wrong_one_ends_the_sale(
    gateway: PlayedGateway, till: SimReader
) -> None:
    offline(gateway)
    arm(gateway, till, 300, "Pinned")
    assert shown(till, WITH_PIN) == ("pin", "Enter PIN")
    assert till.press("2468#").pattern == "green-offline"
    arm(gateway, till, 300, "Pinned")
    for attempt in range(3):
        assert shown(till, WITH_PIN) == ("pin", "Enter PIN")
        seen = till.press("1357#")
        assert (seen.pattern, seen.text) == ("red-offline", "wrong_pin")
        if attempt < 2:
            till.wait_show("idle", "Pinned")  # still armed: the guest may try again
    till.wait_show("idle", "")  # the third wrong PIN ended it
    assert shown(till, WITH_PIN) == ("red", "No sale open")
    gateway.online(True)
    taps = gateway.uploaded(4)
    assert [(t.local_granted, t.local_reason) for t in taps] == [
        (True, reasons.OFFLINE_LIST),
        *[(False, reasons.WRONG_PIN)] * 3,
    ]
    assert all(t.pin is None for t in taps), "no PIN, sealed or not, is journalled"


def test_a_list_chunk_taken_while_the_guest_types_does_not_change_the_pin_checked(
    gateway: PlayedGateway, till: SimReader
) -> None:
    """The band's PIN check is copied at the look-up: a delta merged meanwhile reads records
    into the list's own buffer, where the entry was."""
    offline(gateway)
    arm(gateway, till, 300)
    assert shown(till, WITH_PIN) == ("pin", "Enter PIN")
    first = bytes.fromhex("04000000000000")  # sorts first: the merge reads another entry last
    added = lists.entry(first, lists.PAY)
    gateway.command(
        messages.LIST_DELTA,
        list_version=78,
        base_version=LIST_VERSION,
        chunk=0,
        chunks=1,
        entries=added,
    )
    assert wait_for(till.band_list, lambda held: held[0] == 78) == (78, 5)
    assert till.press("2468#").pattern == "green-offline"


def fill_journal(path: Path, operations: int) -> None:
    """operations refused offline sales in the journal at path, written by the firmware's own
    journal.py and operation.py (a till that decided that many alone)."""
    script = (
        "import journal, operation\n"
        "from protocol import Tap\n"
        f"j = journal.Journal({str(path)!r}, 1024)\n"
        "buf = bytearray(300)\n"
        f"for i in range({operations}):\n"
        "    t = Tap(reader='till-1', ts=1795000000000 + i, mid=i.to_bytes(16, 'big'),\n"
        "            uid=b'\\x04\\x01\\x02\\x03', role=1, charge=b'c' * 16)\n"
        "    n = operation.pack(buf, 0, operation.OFFLINE, 22, t, amount=100)\n"
        "    assert j.append(memoryview(buf)[:n]) >= 0\n"
        "print(j.pending)\n"
    )
    done = run_micropython("-c", script, timeout=120)
    assert done.stdout.decode().split() == [str(operations)], done


def test_a_full_journal_refuses_the_sale_and_loses_nothing(
    broker: MosquittoBroker, gateway: PlayedGateway, tmp_path: Path
) -> None:
    fill_journal(tmp_path / f"{READER}.state.journal", 1023)  # one short of its 1,024
    with running_till(broker, gateway, tmp_path, offline_floor=FLOOR, offline_cap=CAP) as till:
        offline(gateway)
        charge = arm(gateway, till, 450, "Last")
        assert shown(till, PAYS)[0] == "green-offline"  # the 1,024th: kept
        arm(gateway, till, 450, "Refused")
        before = till.journal()
        assert shown(till, PAYS_TOO) == ("red-offline", "journal_full")
        assert till.journal() == before, "nothing journalled"
        till.wait_show("idle", "Refused")  # the sale stays armed
        gateway.online(True)
        taps = gateway.uploaded(1024, timeout=60)
        assert len(taps) == 1024 and len({t.mid for t in taps}) == 1024, "each once"
        assert next(t for t in taps if t.uid == PAYS).charge == charge
        assert PAYS_TOO not in {t.uid for t in taps}
        assert wait_until_empty(till)
        gateway.answer = lambda tap: paid(tap, "Paid EUR 4.50", 100)
        assert shown(till, PAYS_TOO) == ("green", "Paid EUR 4.50")  # online again: live


def test_an_unanswered_sale_is_uploaded_as_no_reply_once_its_window_is_over(
    gateway: PlayedGateway, till: SimReader
) -> None:
    """Journalled before it is sent, with its amount and without its PIN block; the clock moved
    on by a TIME_SYNC stands in for the 30 s window."""
    charge = arm(gateway, till, 450, pin=True)
    assert shown(till, PAYS) == ("pin", "Enter PIN")
    assert till.press("2468#").pattern == "retry"  # no reply
    (sent,) = gateway.sent(1)
    assert sent.pin is not None
    (arrival,) = gateway.arrivals
    assert sent.mid in arrival.taps_file, "on flash before it was published"
    assert sent.pin not in till.journal(), "the PIN block never reaches flash"
    skew_ms = 31_000
    gateway.command(messages.TIME_SYNC, time_ms=sent.ts + skew_ms)
    (tap,) = gateway.uploaded(1)
    assert (tap.mid, tap.ts, tap.charge, tap.pin) == (sent.mid, sent.ts, charge, None)
    assert (tap.local_granted, tap.local_reason) == (False, reasons.NO_REPLY)
    assert wait_until_empty(till)
    # Past its window the band gets a fresh operation, not the one uploaded (a PIN asked anew).
    gateway.answer = lambda tap: paid(tap, "Paid EUR 4.50", 100)
    assert shown(till, PAYS) == ("pin", "Enter PIN")
    assert till.press("2468#").text == "Paid EUR 4.50"
    first, again = gateway.sent(2)
    assert again.mid != first.mid and again.pin != first.pin


def test_an_answered_sale_is_ended_in_the_journal(gateway: PlayedGateway, till: SimReader) -> None:
    gateway.answer = lambda tap: paid(tap, "Paid EUR 4.50", 100)
    arm(gateway, till, 450)
    assert shown(till, PAYS) == ("green", "Paid EUR 4.50")
    (arrival,) = gateway.arrivals
    assert arrival.tap.mid in arrival.taps_file
    assert till.pending_operations() == []
