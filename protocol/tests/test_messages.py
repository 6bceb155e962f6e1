"""Messages: what each side builds is legal, what a peer sends is validated like it, and every
message survives a round trip unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandlink.protocol import Message, ProtocolError, decode, dumps, encode, loads
from bandlink.protocol import messages as m
from bandlink.protocol.examples import examples, gate_tap
from bandlink.protocol.tests.strategies import any_message, taps


@given(any_message)
def test_every_message_survives_a_round_trip(message: Message) -> None:
    assert decode(encode(message)) == message


@pytest.mark.parametrize(("name", "message"), examples(), ids=[n for n, _ in examples()])
def test_every_example_round_trips_and_fits_the_readers_buffer(name: str, message: Message) -> None:
    frame = encode(message)
    assert decode(frame) == message
    assert len(frame) <= 1024 - 64  # the reader's MQTT buffer, less topic and header


def test_every_message_type_has_an_example() -> None:
    assert {type(msg) for _, msg in examples()} == set(m.CLASSES)


def test_a_gate_tap_with_a_sun_band_fits_in_one_small_packet() -> None:
    sun = {"picc": bytes(16), "cmac": bytes(8)}
    assert len(encode(gate_tap(**sun))) <= 128


@pytest.mark.parametrize(
    "changes",
    [
        {"mid": b"short"},
        {"mid": None},
        {"uid": b"\x01\x02"},
        {"direction": 2},
        {"direction": None},  # a gate tap needs its direction
        {"reader": "gate/1"},
        {"reader": "+"},
        {"reader": ""},
        {"seq": 256},
        {"ts": -1},
        {"ts": True},
        {"colour": "red"},
        {"picc": bytes(16)},  # SUN fields come together
        {"offline": True},  # an offline tap says what the guest was shown
        {"local_granted": True},  # ... and only an offline tap does
        {"role": m.POS},  # a pos tap names the charge it answers
    ],
)
def test_building_an_illegal_tap_fails_fast(changes: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as caught:
        gate_tap(**changes)
    assert caught.value.code == "bad_field"


@pytest.mark.parametrize(
    "build",
    [
        lambda: m.Command(reader="r", ts=1, mid=bytes(16), op=m.CHARGE, amount=5),
        lambda: m.Command(
            reader="r",
            ts=1,
            mid=bytes(16),
            op=m.LIST_SNAPSHOT,
            list_version=1,
            chunk=3,
            chunks=3,
        ),
        lambda: m.Command(
            reader="r",
            ts=1,
            mid=bytes(16),
            op=m.LIST_SNAPSHOT,
            list_version=1,
            chunk=0,
            chunks=1,
            entries=bytes(15),  # not whole entries
        ),
        lambda: m.Command(
            reader="r",
            ts=1,
            mid=bytes(16),
            op=m.LIST_DELTA,
            list_version=2,
            base_version=1,
            chunk=0,
            chunks=1,
            entries=bytes(16 * 9),
            remove=[b"\x04" * 7] * 8,  # 17 bands
        ),
        lambda: m.Birth(reader="r", ts=1, firmware="x", role=m.GATE),  # no bdseq
        lambda: m.Result(reader="r", ts=1, granted=True, reason=0),  # no corr
        lambda: m.Journal(reader="r", ts=1, mid=bytes(16), taps=[]),
        lambda: m.Journal(reader="r", ts=1, mid=bytes(16), taps=[gate_tap()]),  # not offline
        lambda: m.GatewayState(ts=1, online="yes"),
    ],
)
def test_other_illegal_messages_fail_fast(build: Any) -> None:
    with pytest.raises(ProtocolError) as caught:
        build()
    assert caught.value.code == "bad_field"


def test_a_peer_frame_is_checked_like_a_built_one() -> None:
    wire = gate_tap().to_wire()
    wire[9][0] = "not bytes"
    with pytest.raises(ProtocolError) as caught:
        decode(dumps(wire))
    assert caught.value.code == "bad_field"


def test_a_journal_entry_is_checked_like_a_tap() -> None:
    journal = dict(examples())["journal"]
    wire = journal.to_wire()
    wire[9][0][0][9][0] = b"\x01"  # first tap's uid too short
    with pytest.raises(ProtocolError) as caught:
        decode(dumps(wire))
    assert caught.value.code == "bad_field"


def test_unknown_keys_are_ignored_for_forward_compatibility() -> None:
    wire = gate_tap().to_wire()
    wire[20] = "a field from a later minor version"
    wire[9][20] = [1, 2, 3]
    assert decode(dumps(wire)) == gate_tap()


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        ([1, 2], "bad_field"),
        ({0: 2, 1: 1}, "bad_version"),
        ({1: 1}, "bad_version"),
        ({0: 1, 1: 99}, "unknown_type"),
        ({0: 1, 1: "tap"}, "unknown_type"),
        ({0: 1, 1: 1, 9: 5}, "bad_field"),
    ],
)
def test_frames_that_are_not_messages_get_a_stable_code(wire: object, code: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode(dumps(wire))
    assert caught.value.code == code


def test_wire_form_uses_small_integer_keys() -> None:
    for _, message in examples():
        wire = loads(encode(message))
        assert all(isinstance(key, int) and 0 <= key < 24 for key in wire)
        assert all(isinstance(key, int) and 0 <= key < 24 for key in wire[9])


@pytest.mark.parametrize(("version", "kind"), [(True, 1), (1, True)])
def test_a_boolean_is_not_a_version_or_a_type(version: object, kind: object) -> None:
    wire = gate_tap().to_wire()
    wire[0], wire[1] = version, kind
    with pytest.raises(ProtocolError) as caught:
        decode(dumps(wire))
    assert caught.value.code in {"bad_version", "unknown_type"}


def test_a_journal_may_not_carry_another_readers_taps() -> None:
    other = gate_tap(reader="gate-2", offline=True, local_granted=True)
    with pytest.raises(ProtocolError) as caught:
        m.Journal(reader="gate-1", ts=1, mid=bytes(16), taps=[other])
    assert caught.value.code == "bad_field"


def test_local_reason_only_on_an_offline_tap() -> None:
    with pytest.raises(ProtocolError):
        gate_tap(local_reason=1)


@given(any_message)
def test_peek_tap_reads_exactly_a_taps_envelope(message: Message) -> None:
    peeked = m.peek_tap(encode(message))
    if isinstance(message, m.Tap):
        assert peeked == (message.reader, message.mid, message.seq)
    else:
        assert peeked is None


@given(taps(), st.sampled_from([m.RESULT, 0, 99]))
def test_peek_tap_answers_a_broken_tap_and_nothing_else(tap: m.Tap, kind: int) -> None:
    wire = tap.to_wire()
    wire[9] = {0: b"", 1: 7}  # a uid too short, a role out of range: decode refuses it
    with pytest.raises(ProtocolError) as refused:
        decode(dumps(wire))
    assert refused.value.code == "bad_field"
    assert m.peek_tap(dumps(wire)) == (tap.reader, tap.mid, tap.seq)
    assert m.peek_tap(dumps({**wire, 1: kind})) is None  # not a tap
    assert m.peek_tap(dumps({**wire, 0: 2})) is None  # not version 1
    assert m.peek_tap(dumps({**wire, 2: "gate/1"})) is None  # no valid reader
    assert m.peek_tap(dumps({**wire, 5: b"short"})) is None  # no mid to answer
    assert m.peek_tap(dumps(wire)[:-1]) is None  # truncated: not CBOR
    assert m.peek_tap(b"\xff\x00") is None and m.peek_tap(dumps([1, 1])) is None
