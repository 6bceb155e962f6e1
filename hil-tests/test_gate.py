"""A guest taps at the gate: every layer real (Mosquitto, gateway process, SQLite, firmware on
MicroPython), only the NFC front end simulated."""

from __future__ import annotations

import os
import signal

import pytest

from bandlink.gateway.store import Store
from bandlink.gateway.venue import DEMO_BANDS, UNKNOWN_BAND_UID
from bandlink.protocol import GATE, IN, Tap, encode
from bandlink.tools.broker import MosquittoBroker
from bandlink.tools.gatewayproc import GatewayGroup
from bandlink.tools.simreader import SimReader
from bandlink.tools.sunband import development_bands
from bandlink.tools.waiting import wait_for
from bandlink.tools.wire import WireReaders

ADA = DEMO_BANDS["Ada"]
BO = DEMO_BANDS["Bo"]  # ticket expired yesterday
DEADLINE_MS = 800  # the simulated reader's default


def reasons_recorded(store: Store) -> list[str]:
    return [tap.reason for tap in reversed(store.recent_taps(100))]


def test_valid_ticket_turns_the_light_green(
    gateway: GatewayGroup, store: Store, entry_reader: SimReader
) -> None:
    seen = entry_reader.tap(ADA)
    assert (seen.pattern, seen.text) == ("green", "Welcome Ada")
    assert reasons_recorded(store) == ["ok"]


def test_unknown_band_is_refused(
    gateway: GatewayGroup, store: Store, entry_reader: SimReader
) -> None:
    seen = entry_reader.tap(UNKNOWN_BAND_UID)
    assert seen.pattern == "red"
    assert reasons_recorded(store) == ["unknown_band"]


def test_expired_ticket_is_refused(
    gateway: GatewayGroup, store: Store, entry_reader: SimReader
) -> None:
    assert entry_reader.tap(BO).pattern == "red"
    assert reasons_recorded(store) == ["no_valid_ticket"]


def test_second_entry_without_exit_is_refused(
    gateway: GatewayGroup, store: Store, entry_reader: SimReader
) -> None:
    assert entry_reader.tap(ADA).pattern == "green"
    seen = entry_reader.tap(ADA)
    assert (seen.pattern, seen.text) == ("red", "Already inside")
    assert reasons_recorded(store) == ["ok", "already_inside"]


def test_exit_then_entry_is_green(
    gateway: GatewayGroup, store: Store, entry_reader: SimReader, exit_reader: SimReader
) -> None:
    assert entry_reader.tap(ADA).pattern == "green"
    seen = exit_reader.tap(ADA)
    assert (seen.pattern, seen.text) == ("green", "Goodbye Ada")
    assert entry_reader.tap(ADA).pattern == "green"
    assert reasons_recorded(store) == ["ok", "ok", "ok"]


def test_the_same_tap_twice_is_recorded_once_with_the_same_answer(
    broker: MosquittoBroker, gateway: GatewayGroup, store: Store
) -> None:
    raw = WireReaders(broker)
    tap = Tap(
        reader="gate-1",
        ts=1,
        mid=os.urandom(16),
        uid=ADA,
        role=GATE,
        direction=IN,
        gate="north",
        **development_bands().read(ADA),
    )
    for sent in (1, 2):
        raw.publish("gate-1", encode(tap))
        assert len(raw.wait_answers(sent)) == sent
    raw.close()
    first, second = raw.answers
    assert first.granted and first.corr == tap.mid
    assert (second.granted, second.reason, second.text) == (True, first.reason, first.text)
    assert reasons_recorded(store) == ["ok"]


def test_garbage_on_the_event_topic_leaves_the_gateway_deciding(
    broker: MosquittoBroker, gateway: GatewayGroup, store: Store, entry_reader: SimReader
) -> None:
    """(A frame over 4096 bytes never gets this far: the broker drops it, test_attacks.py.)"""
    raw = WireReaders(broker, ["gate-2"])  # gate-1 is the firmware's: its login is its own
    for frame in (b"\xff\x00garbage", b"\x9a\xff\xff\xff\xff", b"\xa1" * 40):
        raw.publish("gate-2", frame)
    raw.close()
    assert entry_reader.tap(ADA).pattern == "green"
    assert reasons_recorded(store) == ["ok"]
    assert "dropped frame from gate-2: malformed" in gateway.log()


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_gateway_gone_readers_decide_alone_at_once(
    how: str, gateway: GatewayGroup, entry_reader: SimReader
) -> None:
    """A stopped gateway says so on its state topic; a killed one's will says it for it. While
    one of the two serves, taps are decided; once neither does, the reader decides alone from
    its band list at once, without making the guest wait out the deadline."""
    first, second = gateway.members
    # The gate's band list came with the answer to its birth: Ada, Emil (not Bo, Dara).
    assert wait_for(entry_reader.band_list, lambda held: held[1] == 2)[1] == 2
    if how == "stopped":
        first.stop()
    else:
        first.kill()
    for _ in range(4):  # shared subscription: were gw-1 still subscribed, some would go to it
        assert entry_reader.tap(ADA).pattern in ("green", "red")
    if how == "stopped":
        second.stop()
    else:
        second.kill()
    seen = wait_for(lambda: entry_reader.tap(ADA), lambda s: s.ms < DEADLINE_MS)
    # Ada is on the gate's list (the gateway let her in, which the reader cannot know).
    assert seen.pattern == "green-offline"
    assert seen.ms < DEADLINE_MS  # it knew, rather than waiting for a reply that cannot come


def test_a_silent_gateway_gets_the_deadline_then_try_again_never_green(
    gateway: GatewayGroup, entry_reader: SimReader
) -> None:
    gateway.send_signal(signal.SIGSTOP)  # alive to the broker, deciding nothing
    try:
        seen = entry_reader.tap(ADA)
    finally:
        gateway.send_signal(signal.SIGCONT)
    assert seen.pattern == "retry"
    assert DEADLINE_MS <= seen.ms < DEADLINE_MS + 500


def test_a_lost_green_is_shown_again_on_the_next_tap_and_counted_once(
    gateway: GatewayGroup, store: Store, entry_reader: SimReader
) -> None:
    """The gateway freezes mid-tap: the reader shows "try again"; the gateway wakes, records
    the entry and answers too late. The guest taps again: the reader resends the same operation
    and shows the stored green, not "already inside", and only one entry is counted."""
    gateway.send_signal(signal.SIGSTOP)
    try:
        assert entry_reader.tap(ADA).pattern == "retry"
    finally:
        gateway.send_signal(signal.SIGCONT)
    seen = entry_reader.tap(ADA)
    assert (seen.pattern, seen.text) == ("green", "Welcome Ada")
    assert reasons_recorded(store) == ["ok"]
