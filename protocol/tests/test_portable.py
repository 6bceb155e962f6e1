"""The same protocol files on both interpreters: every frame fed to the real MicroPython gets
exactly the answer CPython gives — the same bytes back, or the same error code — never a crash."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bandlink.protocol import ProtocolError, decode, dumps, encode, loads, peek_tap
from bandlink.protocol.examples import examples
from bandlink.protocol.tests.strategies import any_message
from bandlink.protocol.tests.test_cbor import values
from bandlink.protocol.tests.vectors import appendix_a
from bandlink.tools.micropython import run_micropython


def cpython_answer(kind: str, frame: bytes) -> str:
    if kind == "p":
        peeked = peek_tap(frame)
        return "none" if peeked is None else f"ok {peeked[0]} {peeked[1].hex()} {peeked[2]}"
    try:
        out = encode(decode(frame)) if kind == "m" else dumps(loads(frame))
    except ProtocolError as err:
        return "err " + err.code
    return "ok " + out.hex()


def assert_same_answers(frames: list[tuple[str, bytes]]) -> None:
    lines = "".join(f"{kind} {frame.hex()}\n" for kind, frame in frames)
    done = run_micropython("protocol/tests/codec_peer.py", input=lines.encode())
    assert done.returncode == 0, done.stderr.decode()
    theirs = done.stdout.decode().splitlines()
    ours = [cpython_answer(kind, frame) for kind, frame in frames]
    assert len(theirs) == len(ours)
    for (kind, frame), mine, other in zip(frames, ours, theirs, strict=True):
        assert other == mine, f"{kind} {frame.hex()}: CPython {mine!r}, MicroPython {other!r}"


def test_appendix_a_answers_agree() -> None:
    assert_same_answers([("c", bytes.fromhex(e["hex"])) for e in appendix_a()])


BAD_UTF8 = ["ff", "c080", "c1bf", "e08080", "eda080", "f4908080", "f5808080", "e282", "80", "c3"]


def test_malformed_utf8_is_refused_on_both() -> None:
    # MicroPython's str() would take these; the codec must refuse them there as CPython does.
    frames = [("c", bytes([0x60 + len(b) // 2]) + bytes.fromhex(b)) for b in BAD_UTF8]
    assert all(cpython_answer(*f) == "err malformed" for f in frames)
    assert_same_answers(frames)


def test_every_example_message_gets_the_same_answer() -> None:
    frames = [("m", encode(message)) for _, message in examples()]
    assert all(answer.startswith("ok") for answer in [cpython_answer(*f) for f in frames])
    assert_same_answers(frames)


def mutate(frame: bytes, data: st.DataObject) -> bytes:
    mutated = bytearray(frame)
    for _ in range(data.draw(st.integers(1, 3))):
        mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    return bytes(mutated[: data.draw(st.integers(1, len(mutated)))])


# Large batches on purpose: one micropython process answers a whole batch.
@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.lists(values, min_size=50, max_size=100),
    st.lists(any_message, min_size=10, max_size=25),
    st.data(),
)
def test_random_and_mutated_frames_get_the_same_answers(
    items: list[Any], messages: list[Any], data: st.DataObject
) -> None:
    frames = [("c", dumps(item)) for item in items]
    frames += [("m", encode(message)) for message in messages]
    frames += [(kind, mutate(frame, data)) for kind, frame in frames]
    frames += [("p", frame) for _, frame in frames]
    assert_same_answers(frames)
