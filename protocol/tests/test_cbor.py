"""The portable codec on CPython: the shared Appendix A vectors, cbor2 as the reference, and
inputs a hostile or broken peer could send."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandlink.protocol import MAX_DEPTH, ProtocolError, dumps, loads
from bandlink.protocol.tests.vectors import appendix_a, in_wire_subset

SUBSET = [e for e in appendix_a() if in_wire_subset(e)]
OUTSIDE = [e for e in appendix_a() if not in_wire_subset(e)]


@pytest.mark.parametrize("example", SUBSET, ids=[e["hex"] for e in SUBSET])
def test_decodes_every_appendix_a_example_in_the_subset(example: dict[str, Any]) -> None:
    raw = bytes.fromhex(example["hex"])
    assert loads(raw) == cbor2.loads(raw)
    assert dumps(loads(raw)) == raw


@pytest.mark.parametrize("example", OUTSIDE, ids=[e["hex"] for e in OUTSIDE])
def test_refuses_examples_outside_the_subset_with_a_code(example: dict[str, Any]) -> None:
    raw = bytes.fromhex(example["hex"])
    with pytest.raises(ProtocolError) as caught:
        loads(raw)
    assert caught.value.code in {"unsupported", "malformed"}


# Values of the wire subset whose maps have keys 0..23: there RFC 8949's bytewise key order and
# cbor2's canonical (length-first) order agree, so the bytes must be identical.
leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20)
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.integers(min_value=0, max_value=23), inner, max_size=5)
    ),
    max_leaves=20,
)


@given(values)
def test_identical_bytes_to_cbor2_and_each_reads_the_other(value: Any) -> None:
    ours = dumps(value)
    assert ours == cbor2.dumps(value, canonical=True)
    assert loads(ours) == value
    assert cbor2.loads(ours) == value


@given(
    st.dictionaries(st.integers(-1000, 1000) | st.text(max_size=6), st.integers(0, 9), max_size=8)
)
def test_map_keys_in_bytewise_order_of_their_encodings(value: dict[Any, int]) -> None:
    encoded = dumps(value)
    decoded_keys = list(cbor2.loads(encoded).keys())
    assert decoded_keys == sorted(value, key=cbor2.dumps)


@given(st.binary(max_size=64))
def test_random_bytes_raise_only_protocol_error(data: bytes) -> None:
    try:
        loads(data)
    except ProtocolError as err:
        assert err.code


@given(values, st.data())
def test_mutated_frames_raise_only_protocol_error(value: Any, data: st.DataObject) -> None:
    frame = bytearray(dumps(value))
    index = data.draw(st.integers(0, len(frame) - 1))
    frame[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(frame)))
    try:
        loads(bytes(frame[:cut]))
    except ProtocolError as err:
        assert err.code


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("", "malformed"),  # nothing at all
        ("19 01", "malformed"),  # truncated head
        ("44 01 02", "malformed"),  # truncated byte string
        ("1c", "malformed"),  # reserved additional information
        ("f8 10", "malformed"),  # two-byte simple value below 32
        ("ff", "malformed"),  # stray break
        ("82 01 ff", "malformed"),  # break inside a definite array
        ("9a ff ff ff ff", "malformed"),  # count larger than the message
        ("62 c3 28", "malformed"),  # invalid UTF-8
        ("01 02", "trailing"),
        ("a2 01 02 01 03", "invalid"),  # repeated map key
        ("a1 f6 01", "unsupported"),  # null as a map key
        ("f9 3c 00", "unsupported"),  # half float
        ("c1 01", "unsupported"),  # tag
        ("5f 41 01 ff", "unsupported"),  # indefinite byte string
    ],
)
def test_refuses_bad_input_with_a_stable_code(raw: str, code: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        loads(bytes.fromhex(raw.replace(" ", "")))
    assert caught.value.code == code


def test_limits_on_depth_and_size() -> None:
    with pytest.raises(ProtocolError) as caught:
        loads(b"\x81" * (MAX_DEPTH + 1) + b"\x00")
    assert caught.value.code == "too_deep"
    loads(b"\x81" * MAX_DEPTH + b"\x00")
    with pytest.raises(ProtocolError) as caught:
        loads(b"\x00" * 5000)
    assert caught.value.code == "too_large"
    with pytest.raises(ProtocolError) as caught:
        dumps(b"x" * 5000)
    assert caught.value.code == "too_large"


def test_refuses_to_encode_what_the_wire_cannot_carry() -> None:
    for value in (1.5, 2**64, {(1, 2): 3}, object()):
        with pytest.raises(ProtocolError):
            dumps(value)


def test_containers_past_the_item_limit_are_refused_before_allocating() -> None:
    from bandlink.protocol.cbor import MAX_ITEMS

    loads(dumps(list(range(MAX_ITEMS))))
    for head in (b"\x99", b"\xb9"):  # array, map: a 2-byte count
        frame = head + (MAX_ITEMS + 1).to_bytes(2, "big") + b"\x00" * 2 * (MAX_ITEMS + 1)
        with pytest.raises(ProtocolError) as caught:
            loads(frame)
        assert caught.value.code == "too_large"
    with pytest.raises(ProtocolError):
        dumps([0] * (MAX_ITEMS + 1))


utf8ish = st.binary(max_size=12) | st.text(max_size=6).map(
    lambda s: s.encode("utf-8", "surrogatepass")
)


@given(utf8ish, st.data())
def test_the_readers_utf8_check_agrees_with_cpythons_codec(
    data: bytes, more: st.DataObject
) -> None:
    """MicroPython's str() accepts malformed UTF-8, so the codec checks it there by itself;
    this proves that check against CPython's codec (run here, where the check is not needed)."""
    from bandlink.protocol.cbor import _utf8_well_formed

    if data and more.draw(st.booleans()):
        mutated = bytearray(data)
        mutated[more.draw(st.integers(0, len(data) - 1))] = more.draw(st.integers(0x80, 0xFF))
        data = bytes(mutated)
    try:
        data.decode("utf-8")
        strict = True
    except UnicodeDecodeError:
        strict = False
    assert _utf8_well_formed(data) == strict
