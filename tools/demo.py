"""``bandlink demo``: a small venue running on this machine with real parts.

A private Mosquitto on a free loopback port, two gateway processes (``--gateways N``) sharing the
readers' traffic on one SQLite file (var/demo/venue.db) and serving the HTTP API, two gate
readers (entry and exit at the north gate) and the cafe's pos reader running the real firmware
on the MicroPython unix port. First the cash desk tops up and a till charges three guests at
the cafe (one paid, one with a PIN, one declined); then a script of bands taps at the gate, each
tap printing what the guest saw and what the gateway recorded, while a guest waits at the cafe
to pay whatever a till (``bandlink till charge``) asks. Ctrl-C (or the --taps count) stops
every process the demo started.
"""

from __future__ import annotations

import itertools
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bandlink.gateway.core.payments.money import format_amount
from bandlink.gateway.store import Store
from bandlink.gateway.venue import DEMO_BANDS, UNKNOWN_BAND_UID

from .access import write_private
from .api import ApiClient, create_token
from .micropython import REPO_ROOT
from .rig import Rig, venue_rig
from .simreader import PLAIN_BAND, SUN_BAND, Feedback, ReaderError

VAR = REPO_ROOT / "var"
PAUSE_S = 0.25  # between taps, so a person can read along


COPY_OF_EMIL = "Emil's UID"  # a tag that shows Emil's UID and nothing else
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
    ("gate-1", COPY_OF_EMIL),  # Emil's UID copied onto a blank tag by a phone: red (bad_mac)
    ("gate-2", "Ada"),  # exit: green
    ("gate-2", "Bo"),  # exit without an entry: granted, exits never block
]


def script() -> Iterator[tuple[str, bytes, str]]:
    """(reader, UID, what is placed: a SUN band, or a plain tag with the UID alone)."""
    for reader, name in itertools.cycle(SCRIPT):
        if name == COPY_OF_EMIL:
            yield reader, DEMO_BANDS["Emil"], PLAIN_BAND
        else:
            yield reader, (DEMO_BANDS[name] if name else UNKNOWN_BAND_UID), SUN_BAND


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
        with venue_rig(VAR / "demo", gateways=gateways, payments=True) as rig:
            try:
                _at_the_cafe(rig, VAR / "demo")
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
    for reader_id, uid, band in script():
        feedback = rig.readers[reader_id].tap(uid, band=band)
        if not results:
            on_first()
        results.append(feedback)
        print(_line(reader_id, uid, feedback, rig.store), flush=True)
        if taps and len(results) >= taps:
            return
        time.sleep(PAUSE_S)


# (guest, band, amount, what, keys typed if the reader asks for the PIN): the till's script.
SALES = [
    ("Ada", 450, "Coffee", None),  # from the Okafor family's wallet: paid
    ("Ada", 2500, "Dinner", "2468#"),  # above her EUR 20 threshold: she types her PIN
    ("Bo", 600, "Ice cream", None),  # his wallet holds EUR 5: declined
]
ADA_PIN = "2468"
WAITING_GUEST = "Emil"  # at the cafe for the rest of the demo, paying what a till asks


def _at_the_cafe(rig: Rig, workdir: Path) -> None:
    """The cash desk and a till, through the HTTP API; a guest at pos-1 for the rest."""
    url = rig.gateways.http_urls[0]
    secrets = {
        name: create_token(rig.db_url, role, outlet)[1]
        for name, role, outlet in (("till", "till", "cafe"), ("desk", "desk", None))
    }
    desk, till = ApiClient(url, secrets["desk"]), ApiClient(url, secrets["till"])
    for guest, amount in (("g-ada", 5000), ("g-bo", 500)):
        reply = desk.move(
            "POST", f"/v1/guests/{guest}/topups", {"amount": amount, "currency": "EUR"}
        )
        after = format_amount(reply.body["balance"], "EUR")
        print(f"desk    top-up {guest:7} {format_amount(amount, 'EUR')}: balance {after}")
    desk.call("POST", "/v1/guests/g-ada/pin", {"pin": ADA_PIN})
    print(f"desk    g-ada's PIN set ({ADA_PIN}); above EUR 20.00 she types it")
    pos = rig.readers["pos-1"]
    for name, amount, what, keys in SALES:
        body = {"amount": amount, "currency": "EUR", "description": what}
        charge = till.move("POST", "/v1/readers/pos-1/charges", body).body
        pos.wait_show("idle", charge["label"])
        feedback = pos.tap(DEMO_BANDS[name])
        if feedback.pattern == "pin" and keys:
            feedback = pos.press(keys)
        done = till.call("GET", f"/v1/charges/{charge['id']}?wait=5").body
        print(
            f"pos-1   {name:7} {charge['label']:24} {feedback.pattern:6} {done['reason']:18} "
            f"{feedback.text}"
        )
    token_file = workdir / "till.token"
    write_private(token_file, secrets["till"] + "\n")
    print(
        f"try it: BANDLINK_API={url} BANDLINK_TOKEN=$(cat {token_file}) "
        "bandlink till charge --reader pos-1 --amount 4.50"
    )
    print(
        f"        ({WAITING_GUEST} waits at pos-1 and taps any sale it shows; the API: {url}/docs)"
    )
    threading.Thread(target=_waiting_guest, args=(rig,), name="guest", daemon=True).start()


def _waiting_guest(rig: Rig) -> None:
    pos = rig.readers["pos-1"]
    while True:
        try:
            shown = pos.wait_show("idle", timeout=3600)
            if not shown.text:
                continue  # back to idle after a sale: nothing to pay
            time.sleep(1.0)  # a person reads the amount before tapping
            feedback = pos.tap(DEMO_BANDS[WAITING_GUEST])
            print(f"pos-1   {WAITING_GUEST:7} {shown.text:24} {feedback.pattern:6} {feedback.text}")
        except (ReaderError, OSError):
            return
