"""``bandlink demo``: a small venue running on this machine with real parts.

A private Mosquitto on a free loopback port, the gateway on SQLite (var/demo.db) as its own
process, and two gate readers (entry and exit at the north gate) running the real firmware on the
MicroPython unix port. A script of bands taps on them; each tap prints what the guest saw and
what the gateway recorded. Ctrl-C (or the --taps count) stops every process the demo started.
"""

from __future__ import annotations

import itertools
import shutil
import signal
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

from bandlink.gateway.store import Store
from bandlink.gateway.venue import DEMO_VENUE, UNKNOWN_BAND_UID

from .broker import MosquittoBroker
from .gatewayproc import GatewayProcess
from .micropython import REPO_ROOT
from .simreader import Feedback, SimReader

VAR = REPO_ROOT / "var"
PAUSE_S = 0.25  # between taps, so a person can read along


def _band(first_name: str) -> bytes:
    for guest in DEMO_VENUE["guests"]:
        if guest["first_name"] == first_name:
            band = guest["bands"][0]
            return bytes.fromhex(band if isinstance(band, str) else band["uid"])
    raise KeyError(first_name)


# (reader, band): a morning at the north gate, repeated.
SCRIPT = [
    ("gate-1", "Ada"),  # valid ticket: green
    ("gate-1", "Emil"),  # valid ticket: green
    ("gate-1", "Ada"),  # already inside: red
    ("gate-1", "Bo"),  # ticket expired yesterday: red
    ("gate-1", None),  # a band nobody issued: red
    ("gate-2", "Ada"),  # exit: green
    ("gate-1", "Ada"),  # back in after leaving: green
    ("gate-1", "Chen"),  # ticket for another site: red
    ("gate-1", "Dara"),  # band reported lost, blocked: red
    ("gate-2", "Emil"),  # exit: green
    ("gate-2", "Ada"),  # exit: green
    ("gate-2", "Bo"),  # exit without an entry: granted, exits never block
]


def _script() -> Iterator[tuple[str, bytes]]:
    for reader, name in itertools.cycle(SCRIPT):
        yield reader, (_band(name) if name else UNKNOWN_BAND_UID)


def _fresh_db() -> str:
    for suffix in ("", "-wal", "-shm"):
        (VAR / f"demo.db{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{VAR / 'demo.db'}"


def _line(reader: str, uid: bytes, feedback: Feedback, store: Store) -> str:
    guest: str | None = "-"
    reason = "no_reply"
    if feedback.pattern != "retry":
        record = store.recent_taps(1)[0]
        reason = record.reason
        guest = store.guest_name(record.guest_id) if record.guest_id else "unknown"
    return (
        f"{reader:7} {uid.hex():15} {guest or '-':8} {feedback.pattern:6} {reason:16} "
        f"{feedback.ms:6.1f} ms"
    )


def _summary(results: list[Feedback]) -> str:
    times = [f.ms for f in results]
    counts = {p: sum(f.pattern == p for f in results) for p in ("green", "red", "retry")}
    return (
        f"{len(results)} taps: {counts['green']} green, {counts['red']} red, "
        f"{counts['retry']} retry; round trip p50 {statistics.median(times):.1f} ms, "
        f"max {max(times):.1f} ms"
    )


def run_demo(taps: int = 0) -> int:
    # SIGTERM (from a supervisor, or `timeout`) stops the demo as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir = VAR / "demo"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    db_url = _fresh_db()
    results: list[Feedback] = []
    readers: dict[str, SimReader] = {}
    try:
        with MosquittoBroker(workdir / "mosquitto") as broker:
            print(f"broker   {broker.url} (pid {broker.pid})")
            with GatewayProcess(broker.url, db_url, workdir) as gateway:
                print(f"gateway  pid {gateway.pid}, store {db_url}")
                try:
                    _start_readers(readers, broker.url, workdir)
                    _play(readers, Store(db_url), taps, results)
                finally:
                    for reader in readers.values():
                        reader.stop()
    except KeyboardInterrupt:
        print()
    if results:
        print(_summary(results))
        heap = max(r.heap_used_max for r in readers.values())
        print(f"firmware heap in use after a tap, at most {heap} bytes")
    print("stopped: broker, gateway and readers")
    return 0


def _start_readers(readers: dict[str, SimReader], broker_url: str, workdir: Path) -> None:
    for name, direction in (("gate-1", "in"), ("gate-2", "out")):
        reader = SimReader(name, broker_url, workdir, direction=direction, gate="north")
        readers[name] = reader.start()
    for reader in readers.values():
        reader.wait_online()
        print(f"reader   {reader.reader_id} (micropython pid {reader.pid}, heap {reader.heap})")


def _play(readers: dict[str, SimReader], store: Store, taps: int, results: list[Feedback]) -> None:
    print(f"{'reader':7} {'band':15} {'guest':8} {'light':6} {'reason':16} round trip")
    for reader_id, uid in _script():
        feedback = readers[reader_id].tap(uid)
        results.append(feedback)
        print(_line(reader_id, uid, feedback, store), flush=True)
        if taps and len(results) >= taps:
            return
        time.sleep(PAUSE_S)
