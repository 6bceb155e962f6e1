"""The gateway's handler without a broker: frames in, replies out, the store behind it real."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from bandlink.gateway.service import Gateway
from bandlink.gateway.store import Store
from bandlink.gateway.venue import DEMO_BANDS, DEMO_VENUE, UNKNOWN_BAND_UID
from bandlink.protocol import (
    GATE,
    IN,
    OUT,
    Birth,
    Death,
    GatewayState,
    Result,
    Tap,
    decode,
    dumps,
    encode,
    reasons,
    topics,
)

TODAY = date(2026, 11, 22)
ADA = DEMO_BANDS["Ada"]
EVT = topics.reader_topic("gate-1", topics.EVT)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(f"sqlite:///{tmp_path / 'gw.db'}")
    opened.migrate()
    opened.load_venue(DEMO_VENUE, today=TODAY)
    yield opened
    opened.close()


@pytest.fixture
def gateway(store: Store) -> Gateway:
    return Gateway(store, today=TODAY)


def tap_frame(uid: bytes = ADA, direction: int = IN, reader: str = "gate-1") -> tuple[Tap, bytes]:
    tap = Tap(reader=reader, ts=5, mid=os.urandom(16), uid=uid, role=GATE, direction=direction)
    return tap, encode(tap)


def answer(gateway: Gateway, frame: bytes, topic: str = EVT, now_ms: int = 1000) -> Result:
    (reply,) = gateway.handle(topic, frame, now_ms)
    assert reply.topic == topics.reader_topic("gate-1", topics.RES)
    result = decode(reply.payload)
    assert isinstance(result, Result)
    return result


def test_a_valid_band_is_let_in_and_greeted_by_name(gateway: Gateway, store: Store) -> None:
    tap, frame = tap_frame()
    result = answer(gateway, frame)
    assert (result.granted, result.reason, result.text, result.name) == (
        True,
        reasons.OK,
        "Welcome Ada",
        "Ada",
    )
    assert result.corr == tap.mid
    assert store.count_taps() == 1


def test_a_duplicate_gets_the_stored_answer_and_no_second_record(
    gateway: Gateway, store: Store
) -> None:
    _, frame = tap_frame()
    first = answer(gateway, frame, now_ms=1000)
    again = answer(gateway, frame, now_ms=9000)
    assert (again.granted, again.reason, again.text) == (first.granted, first.reason, first.text)
    assert store.count_taps() == 1
    assert gateway.counts["duplicate"] == 1
    # A new tap of the same band is a second entry attempt: anti-passback applies.
    assert answer(gateway, tap_frame()[1]).reason == reasons.ALREADY_INSIDE


def test_unknown_band_and_exit_without_entry(gateway: Gateway) -> None:
    assert answer(gateway, tap_frame(UNKNOWN_BAND_UID)[1]).reason == reasons.UNKNOWN_BAND
    left = answer(gateway, tap_frame(direction=OUT)[1])
    assert (left.granted, left.reason) == (True, reasons.NOT_INSIDE)


@pytest.mark.parametrize(
    ("frame", "counter"),
    [
        (b"\xff\x00", "dropped_malformed"),
        (bytes(5000), "dropped_too_large"),
        (dumps({0: 1, 1: 77}), "dropped_unknown_type"),
        (dumps([1, 2, 3]), "dropped_bad_field"),
    ],
)
def test_bad_frames_are_counted_and_dropped(
    gateway: Gateway, store: Store, frame: bytes, counter: str
) -> None:
    assert gateway.handle(EVT, frame, 1000) == []
    assert gateway.counts[counter] == 1
    assert store.count_taps() == 0


def test_a_frame_claiming_another_reader_is_dropped(gateway: Gateway, store: Store) -> None:
    _, frame = tap_frame(reader="gate-2")
    assert gateway.handle(EVT, frame, 1000) == []
    assert gateway.counts["dropped_reader_mismatch"] == 1
    assert store.count_taps() == 0


def test_an_unregistered_reader_is_answered_and_the_tap_recorded(
    gateway: Gateway, store: Store
) -> None:
    _, frame = tap_frame(reader="gate-9")
    (reply,) = gateway.handle(topics.reader_topic("gate-9", topics.EVT), frame, 1000)
    result = decode(reply.payload)
    assert isinstance(result, Result)
    assert (result.granted, result.reason) == (False, reasons.UNKNOWN_READER)
    assert store.count_taps() == 1


def test_frames_on_other_topics_are_ignored(gateway: Gateway) -> None:
    _, frame = tap_frame()
    assert gateway.handle(topics.reader_topic("gate-1", topics.RES), frame, 1000) == []
    assert gateway.handle("elsewhere/entirely", frame, 1000) == []


def birth_frame(reader: str, bdseq: int) -> bytes:
    return encode(Birth(reader=reader, ts=1, bdseq=bdseq, firmware="fw", role=GATE))


def death_frame(reader: str, bdseq: int) -> bytes:
    return encode(Death(reader=reader, ts=1, bdseq=bdseq))


def test_a_death_ends_the_session_its_birth_began(gateway: Gateway) -> None:
    assert (
        gateway.handle(topics.reader_topic("gate-1", topics.BIRTH), birth_frame("gate-1", 7), 1)
        == []
    )
    assert gateway.sessions == {"gate-1": 7}
    gateway.handle(topics.reader_topic("gate-1", topics.DEATH), death_frame("gate-1", 7), 2)
    assert gateway.sessions == {}
    assert gateway.counts["death"] == 1


def test_a_late_death_of_an_old_session_is_ignored(gateway: Gateway) -> None:
    """Sparkplug B: the reader reconnected (birth 8) before the broker sent the will of 7."""
    gateway.handle(topics.reader_topic("gate-1", topics.BIRTH), birth_frame("gate-1", 8), 1)
    gateway.handle(topics.reader_topic("gate-1", topics.DEATH), death_frame("gate-1", 7), 2)
    assert gateway.sessions == {"gate-1": 8}
    assert gateway.counts["stale_death"] == 1


def test_a_message_on_the_wrong_topic_is_dropped(gateway: Gateway, store: Store) -> None:
    _, frame = tap_frame()
    assert gateway.handle(topics.reader_topic("gate-1", topics.BIRTH), frame, 1) == []
    assert gateway.handle(EVT, birth_frame("gate-1", 1), 1) == []
    assert gateway.counts["dropped_wrong_topic"] == 2
    assert store.count_taps() == 0 and gateway.sessions == {}


def test_the_gateway_state_frame_says_online_or_offline(gateway: Gateway) -> None:
    for online in (True, False):
        frame = gateway.state_frame(online=online, now_ms=5)
        assert frame.topic == "bl/1/$gw/state"
        state = decode(frame.payload)
        assert isinstance(state, GatewayState) and state.online is online


def test_every_reason_the_gateway_can_give_is_in_the_wire_registry() -> None:
    """The service looks reasons up by name (reasons.code); a name missing from the registry
    would fail at the first such tap, on the hot path, instead of here."""
    from bandlink.gateway import entry, service

    given = set(entry.REASONS) | set(service._REFUSAL_TEXT)
    assert given <= set(reasons.NAMES.values())
