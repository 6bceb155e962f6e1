"""``bandlink demo``: a small venue running on this machine with real parts.

A private Mosquitto on a free loopback port, two gateway processes (``--gateways N``) sharing the
readers' traffic on one SQLite file (var/demo/venue.db), and two gate readers (entry and exit at
the north gate) running the real firmware on the MicroPython unix port. A script of bands taps
on them; each tap prints what the guest saw and what the gateway recorded. Ctrl-C (or the
--taps count) stops every process the demo started.
"""

from __future__ import annotations

import itertools
import signal
import statistics
import time
from collections.abc import Callable, Iterator

from bandlink.gateway.store import Store
from bandlink.gateway.venue import DEMO_BANDS, UNKNOWN_BAND_UID

from .micropython import REPO_ROOT
from .rig import Rig, venue_rig
from .simreader import Feedback, ReaderError

VAR = REPO_ROOT / "var"
PAUSE_S = 0.25  # between taps, so a person can read along


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


def script() -> Iterator[tuple[str, bytes]]:
    for reader, name in itertools.cycle(SCRIPT):
        yield reader, (DEMO_BANDS[name] if name else UNKNOWN_BAND_UID)


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


def summary(results: list[Feedback]) -> str:
    times = [f.ms for f in results]
    counts = {p: sum(f.pattern == p for f in results) for p in ("green", "red", "retry")}
    return (
        f"{len(results)} taps: {counts['green']} green, {counts['red']} red, "
        f"{counts['retry']} retry; round trip p50 {statistics.median(times):.1f} ms, "
        f"max {max(times):.1f} ms"
    )


def run_demo(taps: int = 0, gateways: int = 2) -> int:
    # SIGTERM (from a supervisor, or `timeout`) stops the demo as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    results: list[Feedback] = []
    heap = 0
    started = time.monotonic()
    first_decided: list[float] = []  # seconds from start to the first light, once seen
    try:
        with venue_rig(VAR / "demo", gateways=gateways) as rig:
            try:
                _play(rig, taps, results, lambda: first_decided.append(time.monotonic()))
            finally:
                heap = rig.heap_used_max()
    except KeyboardInterrupt:
        print()
    except ReaderError as err:
        print(f"a reader failed: {err}")
        return 1
    if results:
        print(summary(results))
        print(f"first tap decided {first_decided[0] - started:.2f} s after the demo started")
        print(f"firmware heap in use after a tap, at most {heap} bytes")
    print("stopped: broker, gateways and readers")
    return 0


def _play(rig: Rig, taps: int, results: list[Feedback], on_first: Callable[[], object]) -> None:
    print(f"{'reader':7} {'band':15} {'guest':8} {'light':6} {'reason':16} round trip")
    for reader_id, uid in script():
        feedback = rig.readers[reader_id].tap(uid)
        if not results:
            on_first()
        results.append(feedback)
        print(_line(reader_id, uid, feedback, rig.store), flush=True)
        if taps and len(results) >= taps:
            return
        time.sleep(PAUSE_S)
