"""Messages: what each side builds is legal, what a peer sends is validated, and a frame survives
a round trip unchanged."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandlink.protocol import IN, OUT, ProtocolError, Result, Tap, decode, dumps, encode, loads

reader_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=32)
common = {
    "reader": reader_ids,
    "ts": st.integers(0, 2**64 - 1),
    "seq": st.integers(0, 255),
}
taps = st.builds(
    Tap,
    mid=st.binary(min_size=16, max_size=16),
    uid=st.binary(min_size=4, max_size=10),
    direction=st.sampled_from([IN, OUT]),
    gate=st.none() | st.text(max_size=24),
    deadline=st.none() | st.integers(0, 2**64 - 1),
    **common,
)
results = st.builds(
    Result,
    corr=st.binary(min_size=16, max_size=16),
    granted=st.booleans(),
    reason=st.integers(0, 2**32 - 1),
    text=st.none() | st.text(max_size=32),
    name=st.none() | st.text(max_size=24),
    **common,
)


@given(taps | results)
def test_every_message_survives_a_round_trip(message: Tap | Result) -> None:
    assert decode(encode(message)) == message


def gate_tap(**changes: object) -> Tap:
    fields: dict[str, object] = {
        "reader": "gate-1",
        "ts": 1_700_000_000_000,
        "mid": bytes(range(16)),
        "uid": bytes.fromhex("04a1b2c3d4e5f6"),
        "direction": IN,
        "gate": "north",
    }
    fields.update(changes)
    return Tap(**fields)


def test_a_gate_tap_fits_in_one_small_packet() -> None:
    assert len(encode(gate_tap())) <= 64


@pytest.mark.parametrize(
    "changes",
    [
        {"mid": b"short"},
        {"mid": None},
        {"uid": b"\x01\x02"},
        {"direction": 2},
        {"reader": "gate/1"},
        {"reader": "+"},
        {"reader": ""},
        {"seq": 256},
        {"ts": -1},
        {"ts": True},
        {"colour": "red"},
    ],
)
def test_building_an_illegal_message_fails_fast(changes: dict[str, object]) -> None:
    with pytest.raises(ProtocolError) as caught:
        gate_tap(**changes)
    assert caught.value.code == "bad_field"


def test_a_peer_frame_is_checked_like_a_built_one() -> None:
    wire = gate_tap().to_wire()
    wire[9][0] = "not bytes"
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
        ({0: 1, 1: 99}, "unknown_type"),
        ({0: 1, 1: 1, 9: 5}, "bad_field"),
    ],
)
def test_frames_that_are_not_messages_get_a_stable_code(wire: object, code: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode(dumps(wire))
    assert caught.value.code == code


def test_wire_form_uses_small_integer_keys() -> None:
    wire = loads(encode(gate_tap()))
    assert all(isinstance(key, int) and 0 <= key < 24 for key in wire)
