"""The load generator against a real broker and the echo: every tap answered and matched, and
the open loop charging a stall to the taps scheduled during it (no coordinated omission)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bandlink.protocol import GATE, Tap, decode
from bandlink.tools.broker import MosquittoBroker
from bandlink.tools.loadgen import (
    ECHO_ID,
    PHASE_PREFIX,
    EchoProcess,
    LoadGenerator,
    band_uid,
    check_encoding,
    loadgen_command,
    reader_ids,
    tap_frame,
    tap_wire,
    write_logins,
)

FREEZE_S = 0.3
SUMMARY_KEYS = {"taps_per_s", "p50_ms", "p99_ms", "max_ms", "sent", "answered", "lost"}


@pytest.fixture
def echo(broker: MosquittoBroker, tmp_path: Path) -> Iterator[EchoProcess]:
    with EchoProcess(broker.url, tmp_path, broker.gateway_login(ECHO_ID)) as running:
        yield running


def _generator(
    broker: MosquittoBroker, on_phase: Callable[[str], None] = lambda _: None
) -> LoadGenerator:
    bands = [band_uid(i) for i in range(64)]
    readers = broker.reader_logins(reader_ids(4))
    return LoadGenerator(broker.url, readers, bands, echo=True, on_phase=on_phase).connect()


def _freeze_later(pid: int | None, after_s: float) -> threading.Thread:
    """SIGSTOP ``pid`` ``after_s`` from now, SIGCONT FREEZE_S later (in a thread)."""
    assert pid is not None

    def freeze() -> None:
        time.sleep(after_s)
        os.kill(pid, signal.SIGSTOP)
        time.sleep(FREEZE_S)
        os.kill(pid, signal.SIGCONT)

    return threading.Thread(target=freeze, daemon=True)


def test_tap_frames_are_the_protocol_encoders_bytes() -> None:
    check_encoding()  # raises if cbor2's bytes differ from bandlink.protocol.encode's
    mid = os.urandom(16)
    frame = tap_frame(
        tap_wire(reader="load-002", seq=7, mid=mid, ts=1, uid=band_uid(3), direction=1, gate="g")
    )
    tap = decode(frame)
    assert isinstance(tap, Tap)
    assert (tap.reader, tap.mid, tap.role, tap.direction, tap.deadline) == (
        "load-002",
        mid,
        GATE,
        1,
        801,
    )


def test_closed_loop_matches_every_tap(broker: MosquittoBroker, echo: EchoProcess) -> None:
    generator = _generator(broker)
    try:
        result = generator.run_closed(window=16, seconds=60, limit=200)
    finally:
        generator.close()
    assert (result.sent, result.answered, result.decided, result.lost) == (200, 200, 200, 0)
    assert result.unmatched == 0 and result.band_reuse == 0
    assert result.reasons == {"echo": 200}
    assert len(set(generator.decided_mids)) == 200  # a fresh mid per tap
    assert result.p50_ms is not None and result.p99_ms is not None and result.max_ms is not None
    assert 0 < result.p50_ms <= result.p99_ms <= result.max_ms
    assert result.taps_per_s > 0
    assert set(result.summary()) >= SUMMARY_KEYS


def test_open_loop_charges_a_frozen_echo_to_the_taps(
    broker: MosquittoBroker, echo: EchoProcess
) -> None:
    # 400 taps/s for 1.5 s; the echo freezes 0.5 s in. The broker holds the taps meanwhile and
    # the generator keeps sending on schedule, so the taps of the first ~30 ms of the freeze
    # (more than 1 % of all) wait nearly the whole FREEZE_S.
    freezer = _freeze_later(echo.pid, after_s=0.5)

    def arm(phase: str) -> None:
        if phase == "running":
            freezer.start()

    generator = _generator(broker, on_phase=arm)
    try:
        result = generator.run_open(rate=400, seconds=1.5)
    finally:
        generator.close()
    freezer.join()
    assert (result.sent, result.answered, result.lost) == (600, 600, 0)
    assert result.p99_ms is not None and result.p99_ms >= FREEZE_S * 1000 * 2 / 3


def test_open_loop_counts_from_the_scheduled_time(
    broker: MosquittoBroker, echo: EchoProcess, tmp_path: Path
) -> None:
    """Freeze the GENERATOR: taps due while it is stopped go out late, in a burst, and are
    echoed at once. Timed from their actual send they would look fast; from their scheduled
    time (the time a reader would have tapped) they carry the stall."""
    mids = tmp_path / "mids"
    logins = write_logins(tmp_path / "logins.json", broker.reader_logins(reader_ids(4)))
    command = loadgen_command(
        broker.url, logins=logins, bands=64, seconds=1.5, rate=400, echo=True, mids_file=mids
    )
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as generator:
        assert generator.stdout is not None
        lines = iter(generator.stdout)
        assert next(lines).strip() == PHASE_PREFIX + "running"
        freezer = _freeze_later(generator.pid, after_s=0.5)
        freezer.start()
        output = [line.strip() for line in lines]
    freezer.join()
    assert generator.returncode == 0
    assert PHASE_PREFIX + "draining" in output
    summary = json.loads(output[-1])
    assert set(summary) >= SUMMARY_KEYS
    assert (summary["sent"], summary["answered"], summary["lost"]) == (600, 600, 0)
    assert summary["p99_ms"] >= FREEZE_S * 1000 * 2 / 3
    assert len(mids.read_bytes()) == 600 * 16
