"""Unanswered taps are kept per band, on flash: the real firmware (SimReader, MicroPython unix
port) against a paho-played gateway that answers only the bands it is told to.

A band whose tap got no answer, or a RETRY, gets the same operation back (same mid and ts, new
seq and deadline) when it taps again within 30 s, even after another band was answered in
between and after a reboot; the mid is on flash (the journal) before the tap is published. The
journal's own rules (torn tails, compaction, kills) are in mp_journal.py and test_journal.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_double import PlayedGateway, grant, retry, sim_reader

from bandlink.protocol import Tap
from bandlink.tools.broker import MosquittoBroker

READER = "gate-1"
BAND_A = bytes.fromhex("04a1b2c3d4e5f6")
BAND_B = bytes.fromhex("04b0b0b0b0b0b0")
DEADLINE_MS = 400


@pytest.fixture
def gateway(broker: MosquittoBroker, tmp_path: Path) -> Iterator[PlayedGateway]:
    played = PlayedGateway(broker, READER, tmp_path)
    yield played
    played.close()


def assert_resent(first: Tap, again: Tap) -> None:
    assert (again.mid, again.ts) == (first.mid, first.ts), (first, again)
    assert again.deadline is not None and first.deadline is not None
    assert again.deadline > first.deadline, "a resend gets a new deadline"


def test_a_band_gets_its_unanswered_operation_back_after_another_band_and_a_reboot(
    broker: MosquittoBroker, gateway: PlayedGateway, tmp_path: Path
) -> None:
    gateway.answer = lambda tap: grant(tap) if tap.uid == BAND_B else None
    with sim_reader(READER, broker, tmp_path, deadline_ms=DEADLINE_MS) as reader:
        reader.wait_online()
        gateway.wait_births(1)
        assert reader.tap(BAND_A).pattern == "retry"  # no answer
        assert reader.tap(BAND_B).pattern == "green"  # another band answered in between
        assert reader.tap(BAND_A).pattern == "retry"
    with sim_reader(READER, broker, tmp_path, deadline_ms=DEADLINE_MS) as reader:  # a reboot
        reader.wait_online()
        gateway.wait_births(2)
        gateway.answer = retry  # busy: nothing decided, the operation stays
        assert reader.tap(BAND_A).pattern == "retry"
        gateway.answer = grant
        assert reader.tap(BAND_A).pattern == "green"  # answered: the entry goes
        assert reader.tap(BAND_A).pattern == "green"
    a1, b, a2, a3, a4, a5 = gateway.taps()
    assert [t.uid for t in (a1, b, a2, a3, a4, a5)] == [BAND_A, BAND_B, *[BAND_A] * 4]
    assert b.mid != a1.mid
    assert_resent(a1, a2)
    assert_resent(a2, a3)
    assert_resent(a3, a4)
    assert a2.seq != a1.seq
    assert a5.mid != a1.mid, "answered: the band's next tap is a new operation"
    assert a5.ts > a1.ts


def test_the_deadline_of_a_resend_is_its_own_send_time_plus_deadline_ms(
    broker: MosquittoBroker, gateway: PlayedGateway, tmp_path: Path
) -> None:
    with sim_reader(READER, broker, tmp_path, deadline_ms=DEADLINE_MS) as reader:
        reader.wait_online()
        gateway.wait_births(1)
        # Two sends of one operation: a third reply missed in a row would make the reader
        # decide alone (an outage, test_offline.py).
        for _ in range(2):
            assert reader.tap(BAND_A).pattern == "retry"
    arrivals = gateway.arrivals
    assert len({a.tap.mid for a in arrivals}) == 1
    # Same machine, same clock (no time sync). Each send's deadline is its own send time plus
    # deadline_ms: a resend was made after the send before it had arrived (not at the first
    # send's time), and no send is dated after its own arrival.
    previous_arrival = None
    for arrival in arrivals:
        assert arrival.tap.deadline is not None
        sent = arrival.tap.deadline - DEADLINE_MS
        assert sent <= arrival.at_ms + 5, (arrival, sent)
        if previous_arrival is not None:
            assert sent >= previous_arrival - 5, (arrival, sent, previous_arrival)
        previous_arrival = arrival.at_ms


def test_the_mid_is_on_flash_before_the_tap_is_published(
    broker: MosquittoBroker, gateway: PlayedGateway, tmp_path: Path
) -> None:
    gateway.answer = grant
    with sim_reader(READER, broker, tmp_path, deadline_ms=DEADLINE_MS) as reader:
        reader.wait_online()
        gateway.wait_births(1)
        for band in (BAND_A, BAND_B, BAND_A):
            assert reader.tap(band).pattern == "green"
    assert len(gateway.arrivals) == 3
    for arrival in gateway.arrivals:
        assert arrival.tap.mid in arrival.taps_file, arrival
    # Every tap was answered: no operation was left to resend (the third is a new one).
    assert len({arrival.tap.mid for arrival in gateway.arrivals}) == 3
