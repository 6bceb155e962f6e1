"""`bandlink fuzz` and `bandlink bench codec`, run in-process with small counts."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bandlink.protocol import decode, envelope, fields
from bandlink.tools import fuzz
from bandlink.tools.cli import main

# Both lines of ProtocolError codes a mutated frame must reach: the CBOR layer and the messages.
CODES = ("malformed", "unsupported", "trailing", "invalid", "too_deep", "bad_field")


def leg(output: str, name: str) -> str:
    """The part of the output about one leg ("CPython" or "MicroPython")."""
    parts = re.split(r"^== ", output, flags=re.MULTILINE)
    return next(part for part in parts if part.startswith(name))


def outcome(section: str, name: str) -> int:
    found = re.search(rf"^{name} +([\d,]+)$", section, flags=re.MULTILINE)
    return int(found.group(1).replace(",", "")) if found else 0


def test_cpython_decode_raises_only_protocol_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuzz", "--frames", "3000", "--seed", "7"]) == 0
    cpython = leg(capsys.readouterr().out, "CPython")
    assert "3,000 frames" in cpython
    assert "failures: none" in cpython
    for code in CODES:  # it really mutated: frames fail at every layer, and some still decode
        assert outcome(cpython, code) > 0, code
    assert outcome(cpython, "ok") > 0


def test_a_broken_decoder_fails_the_run_and_shows_the_frame(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(frame: bytes) -> Any:
        if len(frame) % 7 == 3:
            raise KeyError("deliberate")
        return decode(frame)

    monkeypatch.setattr(fuzz, "decode", broken)
    assert main(["fuzz", "--frames", "500"]) == 1
    out = capsys.readouterr().out
    assert "FAILURES: 1 distinct" in out
    assert "KeyError" in out
    shown = re.search(r"(\d+) bytes: ([0-9a-f]+)$", out, flags=re.MULTILINE)
    assert shown is not None
    frame = bytes.fromhex(shown.group(2))
    assert len(frame) == int(shown.group(1))
    with pytest.raises(KeyError):
        broken(frame)


def test_a_frame_is_reproducible_by_its_number() -> None:
    # How a failure on MicroPython is shown: the peer names the frame, this side makes it again.
    names = [name for name, _ in fuzz.seeds()] + [fuzz.RANDOM]
    seeds = [frame for _, frame in fuzz.seeds()]
    mutator = fuzz.Mutator(seeds, 5)
    frames = [mutator.frame() for _ in range(300)]
    again = fuzz.Mutator(seeds, 5)
    assert [again.frame() for _ in range(300)] == frames
    assert all(len(frame) <= fuzz.FRAME_MAX for _, frame in frames)
    by_number = fuzz._frames_by_number(names, seeds, 5, {0, 299})
    assert by_number == {n: (names[frames[n][0]], frames[n][1]) for n in (0, 299)}


def test_micropython_decode_raises_only_protocol_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["fuzz", "--frames", "2000", "--micropython"])
    reader = leg(capsys.readouterr().out, "MicroPython")
    assert "2,000 frames" in reader
    for name in CODES:
        assert outcome(reader, name) > 0, name
    assert code == 0, reader
    assert "failures: none" in reader


def test_bench_codec_prints_every_codec(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "codec", "--seconds", "0.15"]) == 0
    out = capsys.readouterr().out
    assert "cbor2 canonical bytes identical: yes" in out
    for row in ("CPython", "MicroPython", "cbor2"):
        rates = re.search(rf"^.*{row}.* ([\d,]+) +([\d,]+)$", out, flags=re.MULTILINE)
        assert rates is not None, row
        assert int(rates.group(1).replace(",", "")) > 0


def test_the_core_handles_every_frame(capsys: pytest.CaptureFixture[str]) -> None:
    """The same frames through Core.handle on a real store: never an exception, and frames
    reach every stage (drops, sessions, taps decided)."""
    assert main(["fuzz", "--frames", "3000", "--seed", "7"]) == 0
    core = leg(capsys.readouterr().out, "gateway core")
    assert "3,000 frames" in core and "failures: none" in core
    for name in ("malformed", "bad_field", "reader_mismatch", "wrong_topic", "birth", "status"):
        assert outcome(core, name) > 0, name


def test_the_core_leg_finds_a_number_the_store_cannot_hold(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """How the OverflowError was found: while the wire allowed any u64 for a time, a mutated
    tap's ts of 2^63 or more reached the insert and raised out of Core.handle. Times are u63
    now (SPEC, Envelope); with the old rule back, the fuzzer finds it again."""
    old_rule = tuple(
        (attr, key, fields.u64 if check is fields.u63 else check)
        for attr, key, check in envelope._ENVELOPE
    )
    monkeypatch.setattr(envelope, "_ENVELOPE", old_rule)
    assert main(["fuzz", "--frames", "10000", "--seed", "2"]) == 1
    core = leg(capsys.readouterr().out, "gateway core")
    assert "OverflowError" in core
