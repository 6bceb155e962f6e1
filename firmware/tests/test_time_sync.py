"""The reader's clock follows the gateway's (SPEC, Clocks and time): the real firmware
(SimReader, MicroPython unix port) gets Command TIME_SYNC from a paho-played gateway, and every
ts and deadline it sends after is on the gateway's clock, across a reconnect too. The resend
window of an unanswered tap is measured on that clock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_double import PlayedGateway, retry, sim_reader

from bandlink.protocol import Tap, messages
from bandlink.tools.broker import MosquittoBroker

READER = "gate-1"
BAND = bytes.fromhex("04a1b2c3d4e5f6")
DEADLINE_MS = 400
HOUR_MS = 3_600_000
SLACK_MS = 2_000  # message travel and test pace; far below the hour being checked


@pytest.fixture
def gateway(broker: MosquittoBroker, tmp_path: Path) -> Iterator[PlayedGateway]:
    played = PlayedGateway(broker, READER, tmp_path)
    yield played
    played.close()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def sync(gateway: PlayedGateway, ahead_ms: int) -> None:
    """Set the reader's clock to ours plus ahead_ms; return once it has taken it in."""
    gateway.command(messages.TIME_SYNC, time_ms=now_ms() + ahead_ms)
    gateway.rebirth()  # the broker keeps our order: the sync came before the REBIRTH


def assert_ahead(ts: int, ahead_ms: int) -> None:
    assert abs(ts - (now_ms() + ahead_ms)) < SLACK_MS, (ts - now_ms(), ahead_ms)


def assert_tap_ahead(tap: Tap, ahead_ms: int) -> None:
    assert_ahead(tap.ts, ahead_ms)
    assert tap.deadline == tap.ts + DEADLINE_MS, tap


def test_taps_and_births_use_the_synced_clock_across_a_reconnect(
    broker: MosquittoBroker, gateway: PlayedGateway, tmp_path: Path
) -> None:
    with sim_reader(READER, broker, tmp_path, deadline_ms=DEADLINE_MS) as reader:
        reader.wait_online()
        assert_ahead(gateway.wait_births(1).ts, 0)  # not synced yet: its own clock
        sync(gateway, HOUR_MS)
        assert_ahead(gateway.births[-1].ts, HOUR_MS)
        reader.tap(BAND)
        assert_tap_ahead(gateway.taps()[-1], HOUR_MS)

        session = gateway.births[-1].bdseq
        assert session is not None
        broker.restart()  # the link drops and comes back: a new session, the same clock
        assert_ahead(gateway.next_session(session).ts, HOUR_MS)
        reader.tap(bytes.fromhex("04b0b0b0b0b0b0"))
        assert len(gateway.taps()) == 2
        assert_tap_ahead(gateway.taps()[-1], HOUR_MS)


def test_the_resend_window_runs_on_the_synced_clock(
    broker: MosquittoBroker, gateway: PlayedGateway, tmp_path: Path
) -> None:
    with sim_reader(READER, broker, tmp_path, deadline_ms=DEADLINE_MS) as reader:
        reader.wait_online()
        gateway.wait_births(1)
        # The gateway answers busy throughout (RETRY: nothing decided, the operation stays);
        # silence would make the reader decide alone from the second missed reply on.
        gateway.answer = retry
        assert reader.tap(BAND).pattern == "retry"
        assert reader.tap(BAND).pattern == "retry"
        sync(gateway, 31_000)  # the gateway's clock is 31 s ahead of ours: the window is over
        assert reader.tap(BAND).pattern == "retry"
        assert reader.tap(BAND).pattern == "retry"
        sync(gateway, 0)  # and back: the last operation's ts is in the future, its age unknown
        assert reader.tap(BAND).pattern == "retry"
    first, resent, late, late_resent, back = gateway.taps()
    assert resent.mid == first.mid
    assert late.mid != first.mid, "31 s on the wall clock after its ts: a new operation"
    assert_tap_ahead(late, 31_000)
    assert late_resent.mid == late.mid
    assert back.mid not in (first.mid, late.mid), "a clock that went back: a new operation"
    assert_tap_ahead(back, 0)
