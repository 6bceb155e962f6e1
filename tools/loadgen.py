"""A load generator that speaks protocol/SPEC.md as many gate readers at once, and an echo.

``LoadGenerator`` plays K readers, each as in the field: its own paho client (MQTT 3.1.1, as
readers speak), logged in with its own identity, which the broker's ACL lets publish only on its
own ``bl/1/<reader>/evt`` and read only its own ``bl/1/<reader>/res``. It publishes gate ``Tap``
frames at QoS 1, each with a fresh 16-byte mid, and matches every ``Result`` to its tap by
``corr`` (envelope key 8). Two disciplines:

- closed loop (``run_closed``): ``window`` taps in flight at all times; the number is
  throughput;
- open loop (``run_open``): taps scheduled at fixed intervals whatever happens to the replies;
  a tap's latency runs from its SCHEDULED time, so a stall anywhere (gateway, broker, or this
  generator itself) shows in the percentiles instead of silently delaying the next sends
  (coordinated omission, FIELD-NOTES.md).

Taps still unanswered ``drain_s`` after the last send are ``lost``.

Each band has at most one tap in flight (a free-band queue), and its direction alternates
in/out per tap, so on a fresh venue every decision is "ok" and no reordering between gateway
processes can turn one into "already_inside". The readers are entry and exit gates in turn
(``reader_direction``: the venue configures them so, and the gateway refuses a tap whose
direction disagrees), and each tap goes to the next reader of its direction. Only when the
pool runs dry (the system under test fell far behind) is a busy band reused, and counted.

The echo (``run_echo``, its own process: ``python -m bandlink.tools.loadgen echo``) is the
baseline: the same MQTT path as the gateway's adapter (paho, MQTT 5, a shared subscription,
QoS 1, TCP_NODELAY, paho's default in-flight limit) with no decoding, deciding or storing: each
payload goes back unchanged on the reader's ``res`` topic. Against the echo the generator
matches by the tap's own mid (key 5). The echo logs in as a gateway (``echo@gateway``), from
``BANDLINK_BROKER_USER`` / ``BANDLINK_BROKER_PASSWORD`` as a gateway process does.

The generator runs paho's network loops itself (one ``select`` over the K sockets, no thread):
one thread does all the work, so there is no GIL hand-off per message and no wake-up pipe write
per publish, which paho's threaded loop costs. Its readers' passwords come from a logins file
(``--logins``, JSON ``{user: password}``, readable by its owner only), never its command line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import signal
import socket
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import cbor2
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from bandlink.gateway.settings import parse_broker_url

from .access import Login, write_private
from .processes import ReadyProcess
from .sunband import SunBands, development_bands

DEADLINE_MS = 800  # what a reader waits for a result (firmware's default deadline_ms)
# paho fails a QoS 1 publish with ERR_QUEUE_SIZE past 65,535 un-acknowledged ones (16-bit packet
# ids); stay well below it with our own window, released in on_publish.
MAX_UNACKED = 60_000
DRAIN_S = 5.0
ECHO_READY = "echo ready"
ECHO_ID = "echo"  # the echo's gateway id: it logs in as echo@gateway
# Its own share group: an echo never takes taps from a gateway's group (or the reverse).
ECHO_SUBSCRIPTION = "$share/echo/bl/1/+/evt"
# Answers that decide nothing (protocol/reasons.py): the gateway's queue was full, or it failed.
# Nothing is recorded for them, so they are answered but not decided.
TRY_AGAIN = frozenset({"busy", "internal_error"})
# Envelope keys (protocol/envelope.py) and gate-tap body keys (protocol/messages.py Tap).
_V, _TYPE, _READER, _SEQ, _MID, _TS, _DEADLINE, _CORR, _BODY = 0, 1, 2, 4, 5, 6, 7, 8, 9
_TAP_TYPE, _GATE_ROLE = 1, 0
_RESULT_REASON = 1
_PUMP_MAX_S = 0.05  # longest sleep in select: bounds how late the end of a run is noticed
_MISC_EVERY_S = 1.0  # paho's keepalive bookkeeping (loop_misc) needs no more than this


class LoadError(RuntimeError):
    """The generator lost its broker, or could not reach it."""


def band_uid(index: int, kind: int = 0x10) -> bytes:
    """A 7-byte NXP-style UID (0x04 first) for band ``index``; ``kind`` keeps sets apart."""
    return bytes((0x04, kind)) + index.to_bytes(5, "big")


def reader_ids(count: int) -> list[str]:
    return [f"load-{n:03d}" for n in range(1, count + 1)]


def reader_direction(index: int) -> str:
    """How the venue configures load reader ``index`` (0-based): entries and exits in turn."""
    return "in" if index % 2 == 0 else "out"


def write_logins(path: Path, logins: Sequence[Login]) -> Path:
    """The readers' credentials for ``--logins``: JSON, readable by its owner only."""
    write_private(path, json.dumps({login.user: login.password for login in logins}))
    return path


def read_logins(path: Path) -> list[Login]:
    entries: Mapping[str, str] = json.loads(path.read_text())
    return [Login(user, password) for user, password in entries.items()]


def _nodelay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    # Nagle holds a small publish behind the peer's delayed ACK: up to 40 ms a tap.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# -- frames -------------------------------------------------------------------------------------


def tap_wire(
    *,
    reader: str,
    seq: int,
    mid: bytes,
    ts: int,
    uid: bytes,
    direction: int,
    gate: str,
    sun: Mapping[str, bytes] | None = None,
) -> dict[int, Any]:
    """The wire map of a gate Tap, as ``Tap(...).to_wire()`` builds it; ``sun``: the band's
    reading (picc, cmac, file), as tools.sunband makes it."""
    body = {0: uid, 1: _GATE_ROLE, 2: direction, 3: gate}
    for name, value in (sun or {}).items():
        body[_SUN_KEYS[name]] = value
    return {
        _V: 1,
        _TYPE: _TAP_TYPE,
        _READER: reader,
        _SEQ: seq,
        _MID: mid,
        _TS: ts,
        _DEADLINE: ts + DEADLINE_MS,
        _BODY: body,
    }


_SUN_KEYS = {"picc": 9, "file": 10, "cmac": 11}  # the Tap body's keys (protocol/messages.py)


def tap_frame(wire: dict[int, Any]) -> bytes:
    # cbor2's C encoder, ~8x the portable one. Its canonical order (length first) equals
    # RFC 8949's bytewise order for keys 0..23, all a tap has: check_encoding() proves the bytes.
    frame: bytes = cbor2.dumps(wire, canonical=True)
    return frame


def check_encoding() -> None:
    """Raise unless tap_frame() gives exactly the bytes of ``bandlink.protocol.encode``."""
    from bandlink.protocol import GATE, Tap, encode

    for seq, direction in ((0, 0), (255, 1)):
        mid, uid, ts = os.urandom(16), band_uid(seq), time.time_ns() // 1_000_000
        sun = {"picc": os.urandom(16), "cmac": os.urandom(8)} if direction else {}
        wire = tap_wire(
            reader="load-001",
            seq=seq,
            mid=mid,
            ts=ts,
            uid=uid,
            direction=direction,
            gate="load",
            sun=sun,
        )
        reference = Tap(
            reader="load-001",
            seq=seq,
            mid=mid,
            ts=ts,
            deadline=ts + DEADLINE_MS,
            uid=uid,
            role=GATE,
            direction=direction,
            gate="load",
            **sun,
        )
        if tap_frame(wire) != encode(reference):
            raise RuntimeError("cbor2 and bandlink.protocol.encode disagree on a gate tap")


# -- results ------------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence (None if empty)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class LoadResult:
    mode: str  # "closed" or "open"
    seconds: float
    rate: float | None
    window: int | None
    sent: int
    answered: int
    lost: int
    decided: int  # answered with a decision: not "busy", not "internal_error"
    taps_per_s: float  # answered / (last answer - first send)
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    unmatched: int  # replies for no pending tap: duplicates, or after the tap was written off
    band_reuse: int  # taps sent with a band that already had one in flight
    send_lag_max_ms: float  # how far behind its schedule this generator sent, at worst
    reasons: dict[str, int]
    cpu_s: float  # this process's CPU time during the run

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def _reason_name(wire: Any) -> str:
    from bandlink.protocol.reasons import NAMES

    try:
        code = wire[_BODY][_RESULT_REASON]
    except (KeyError, TypeError, IndexError):
        return "no_reason"
    return NAMES.get(code, f"code_{code}")


# -- the generator ------------------------------------------------------------------------------


class LoadGenerator:
    """K readers, one MQTT connection and identity each. ``connect()``, one ``run_*()``,
    ``close()``."""

    def __init__(
        self,
        broker_url: str,
        readers: Sequence[Login],
        bands: Sequence[bytes],
        *,
        echo: bool = False,
        gate: str = "load",
        on_phase: Callable[[str], object] = lambda _: None,
        sun_bands: SunBands | None = None,
    ) -> None:
        """``sun_bands``: the emulated bands whose readings every tap carries (by default the
        development venue's, the key a gateway under test runs with unless told otherwise)."""
        check_encoding()
        self._sun = sun_bands or development_bands()
        self._host, self._port = parse_broker_url(broker_url)
        self._readers = [login.user for login in readers]
        self._topics = [f"bl/1/{r}/evt" for r in self._readers]
        self._seq = [0] * len(readers)
        self._bands = list(bands)
        self._direction = bytearray(len(bands))  # 0 in, 1 out: the next tap's, per band
        if len(readers) < 2:
            raise ValueError("a load needs two readers at least: an entry and an exit gate")
        # Reader indexes by direction (0 in, 1 out), and the next of each to send from.
        indexes = range(len(readers))
        self._gates = tuple(
            [i for i in indexes if reader_direction(i) == name] for name in ("in", "out")
        )
        self._turn = [0, 0]
        self._echo = echo
        self._gate = gate
        self._on_phase = on_phase
        self._clients = [self._make_client(login) for login in readers]
        self._sockets: dict[Any, mqtt.Client] = {}  # each client's socket, once connected
        self._subscribed = 0
        self._next_misc = 0.0
        self._reset()

    def _make_client(self, login: Login) -> mqtt.Client:
        # The broker makes the client id the user name: the reader's id.
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        client.username_pw_set(login.user, login.password)
        client.user_data_set(login.user)
        client.on_socket_open = _nodelay
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        # No per-connection cap: MAX_UNACKED bounds what is in flight over all of them, and
        # paho's default of 20 would throttle the open loop.
        client.max_inflight_messages_set(0)
        return client

    def _reset(self) -> None:
        self._pending: dict[bytes, tuple[int, int]] = {}  # mid -> (start ns, band)
        # Bands with no tap in flight. Directions carry over: the store remembers presence.
        self._free: deque[int] = deque(range(len(self._bands)))
        self._latencies: list[int] = []
        self.decided_mids: list[bytes] = []  # answered with a decision, so to be recorded
        self._reasons: Counter[str] = Counter()
        self._sent = self._unacked = self._unmatched = self._reuse = 0
        self._lag_max = 0
        self._first_send = self._last_answer = 0
        self._cpu_start = time.process_time()

    # -- connection -----------------------------------------------------------------------------

    def connect(self, timeout: float = 10) -> LoadGenerator:
        for client in self._clients:
            try:
                client.connect(self._host, self._port, keepalive=60)
            except OSError as err:
                raise LoadError(f"cannot reach mqtt://{self._host}:{self._port}: {err}") from err
            self._sockets[client.socket()] = client
        deadline = time.monotonic() + timeout
        while self._subscribed < len(self._clients):
            if time.monotonic() > deadline:
                raise LoadError(
                    f"{self._subscribed} of {len(self._clients)} readers got CONNACK and SUBACK"
                )
            self._pump(0.05)
        return self

    def close(self) -> None:
        for client in self._clients:
            client.disconnect()

    def _on_connect(
        self, client: mqtt.Client, reader: str, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            raise LoadError(f"the broker refused reader {reader}: {reason}")
        # Its own res topic: the ACL lets a reader read no other.
        client.subscribe(f"bl/1/{reader}/res", 1)

    def _on_subscribe(self, client: mqtt.Client, *args: Any) -> None:
        self._subscribed += 1

    def _pump(self, timeout: float) -> None:
        """One turn of the readers' network loops, driven by hand: wait up to ``timeout`` for
        any socket, read what came, write what is queued (PUBACKs, publishes from callbacks)."""
        sockets = self._sockets
        wants = [sock for sock, client in sockets.items() if client.want_write()]
        readable, _, _ = select.select(list(sockets), wants, [], timeout)
        for sock in readable:
            if sockets[sock].loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise LoadError("connection to the broker lost")
        for client in sockets.values():
            if client.want_write():
                client.loop_write()
        now = time.monotonic()
        if now >= self._next_misc:
            for client in sockets.values():
                client.loop_misc()
            self._next_misc = now + _MISC_EVERY_S

    # -- sending and matching ---------------------------------------------------------------------

    def _send(self, scheduled_ns: int) -> None:
        n = self._sent
        band = self._take_band()
        direction = self._direction[band]
        self._direction[band] = direction ^ 1
        gates = self._gates[direction]
        which = gates[self._turn[direction] % len(gates)]
        self._turn[direction] += 1
        mid = os.urandom(16)
        seq = self._seq[which]
        self._seq[which] = (seq + 1) & 0xFF
        wire = tap_wire(
            reader=self._readers[which],
            seq=seq,
            mid=mid,
            ts=time.time_ns() // 1_000_000,
            uid=self._bands[band],
            direction=direction,
            gate=self._gate,
            sun=self._sun.read(self._bands[band]),
        )
        # Pending before publishing: a reply can never arrive before its tap is known.
        self._pending[mid] = (scheduled_ns, band)
        info = self._clients[which].publish(self._topics[which], tap_frame(wire), qos=1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise LoadError(f"publish failed: {mqtt.error_string(info.rc)}")
        self._sent = n + 1
        self._unacked += 1
        self._lag_max = max(self._lag_max, time.perf_counter_ns() - scheduled_ns)

    def _take_band(self) -> int:
        if self._free:
            return self._free.popleft()
        self._reuse += 1
        return self._sent % len(self._bands)

    def _on_publish(self, *args: Any) -> None:
        self._unacked -= 1

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.perf_counter_ns()
        try:
            wire = cbor2.loads(msg.payload)
            key = wire[_MID if self._echo else _CORR]
        except (ValueError, KeyError, TypeError, cbor2.CBORDecodeError):
            self._reasons["undecodable"] += 1
            return
        entry = self._pending.pop(key, None)
        if entry is None:
            self._unmatched += 1
            return
        started, band = entry
        self._latencies.append(now - started)
        self._free.append(band)
        self._last_answer = now
        reason = "echo" if self._echo else _reason_name(wire)
        self._reasons[reason] += 1
        if reason not in TRY_AGAIN:
            self.decided_mids.append(key)

    # -- the two disciplines ----------------------------------------------------------------------

    def run_closed(
        self, window: int, seconds: float, *, limit: int | None = None, drain_s: float = DRAIN_S
    ) -> LoadResult:
        """``window`` taps in flight until ``seconds`` pass (or ``limit`` taps are sent)."""
        self._reset()
        window = min(window, MAX_UNACKED)
        start = self._first_send = time.perf_counter_ns()
        end = start + int(seconds * 1e9)
        self._on_phase("running")
        while (now := time.perf_counter_ns()) < end and (limit is None or self._sent < limit):
            while len(self._pending) < window and (limit is None or self._sent < limit):
                # In a closed loop a tap is due the moment a slot frees: its start is now.
                self._send(time.perf_counter_ns())
            self._pump(min(_PUMP_MAX_S, (end - now) / 1e9))
        return self._finish("closed", seconds, None, window, drain_s)

    def run_open(self, rate: float, seconds: float, *, drain_s: float = DRAIN_S) -> LoadResult:
        """Taps at ``rate`` per second for ``seconds``, on a fixed schedule."""
        self._reset()
        interval = 1e9 / rate
        count = int(rate * seconds)
        start = self._first_send = time.perf_counter_ns()
        # A broker that stops acknowledging would hold sends back for ever: give up then.
        give_up = start + int((seconds + drain_s) * 1e9)
        self._on_phase("running")
        while self._sent < count and (now := time.perf_counter_ns()) < give_up:
            # Every tap whose time has come goes now, however late; its latency still counts
            # from its slot. Only paho's packet-id limit may hold a send back.
            while self._sent < count and self._unacked < MAX_UNACKED:
                due = start + int(self._sent * interval)
                if due > now:
                    break
                self._send(due)
            next_due = start + int(self._sent * interval)
            self._pump(min(_PUMP_MAX_S, max(0.0, (next_due - time.perf_counter_ns()) / 1e9)))
        return self._finish("open", seconds, rate, None, drain_s)

    def _finish(
        self, mode: str, seconds: float, rate: float | None, window: int | None, drain_s: float
    ) -> LoadResult:
        self._on_phase("draining")
        give_up = time.perf_counter_ns() + int(drain_s * 1e9)
        while self._pending and time.perf_counter_ns() < give_up:
            self._pump(_PUMP_MAX_S)
        return self._result(mode, seconds, rate, window)

    def _result(
        self, mode: str, seconds: float, rate: float | None, window: int | None
    ) -> LoadResult:
        ordered = sorted(ns / 1e6 for ns in self._latencies)
        elapsed = (self._last_answer - self._first_send) / 1e9
        answered = len(ordered)
        return LoadResult(
            mode=mode,
            seconds=seconds,
            rate=rate,
            window=window,
            sent=self._sent,
            answered=answered,
            lost=len(self._pending),
            decided=len(self.decided_mids),
            taps_per_s=answered / elapsed if answered and elapsed > 0 else 0.0,
            p50_ms=percentile(ordered, 50),
            p99_ms=percentile(ordered, 99),
            max_ms=ordered[-1] if ordered else None,
            unmatched=self._unmatched,
            band_reuse=self._reuse,
            send_lag_max_ms=self._lag_max / 1e6,
            reasons=dict(self._reasons),
            cpu_s=time.process_time() - self._cpu_start,
        )


# -- the echo -------------------------------------------------------------------------------------


def run_echo(broker_url: str) -> int:
    """Answer every tap with itself, on the reader's res topic, until SIGTERM. Logs in as
    ``BANDLINK_BROKER_USER`` with ``BANDLINK_BROKER_PASSWORD``, as a gateway process does."""
    host, port = parse_broker_url(broker_url)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        protocol=mqtt.MQTTv5,  # as the gateway: MQTT 5 for the shared subscription
    )
    user = os.environ.get("BANDLINK_BROKER_USER")
    if user:
        client.username_pw_set(user, os.environ.get("BANDLINK_BROKER_PASSWORD"))
    client.on_socket_open = _nodelay

    def on_connect(client: mqtt.Client, *args: Any) -> None:
        client.subscribe(ECHO_SUBSCRIPTION, qos=1)

    def on_subscribe(*args: Any) -> None:
        print(ECHO_READY, flush=True)

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # bl/1/<reader>/evt -> bl/1/<reader>/res, the payload untouched.
        client.publish(msg.topic[:-3] + "res", msg.payload, qos=1)

    def on_term(signum: int, frame: FrameType | None) -> None:
        client.disconnect()  # loop_forever returns once the DISCONNECT is out

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    signal.signal(signal.SIGTERM, on_term)
    client.connect(host, port, keepalive=30)
    client.loop_forever()
    return 0


class EchoProcess(ReadyProcess):
    """The echo as its own process, like a gateway: ``with EchoProcess(url, workdir, login)``,
    ``login`` a gateway identity (``broker.gateway_login(ECHO_ID)``)."""

    def __init__(self, broker_url: str, workdir: Path, login: Login) -> None:
        command = [sys.executable, "-m", "bandlink.tools.loadgen", "echo", "--broker", broker_url]
        env = {"BANDLINK_BROKER_USER": login.user, "BANDLINK_BROKER_PASSWORD": login.password}
        super().__init__("echo", command, workdir / "echo.log", ECHO_READY, grace=1, env=env)


# -- command line: the generator as its own process ---------------------------------------------

PHASE_PREFIX = "loadgen "  # "loadgen running", "loadgen draining": progress lines on stdout


def loadgen_command(
    broker_url: str,
    *,
    logins: Path,
    bands: int,
    seconds: float,
    rate: float | None = None,
    window: int | None = None,
    echo: bool = False,
    mids_file: Path | None = None,
) -> list[str]:
    """argv of ``python -m bandlink.tools.loadgen run ...``; its last stdout line is the JSON.
    ``logins``: the readers' credentials file (``write_logins``)."""
    command = [sys.executable, "-m", "bandlink.tools.loadgen", "run", "--broker", broker_url]
    command += ["--logins", str(logins), "--bands", str(bands), "--seconds", str(seconds)]
    command += ["--rate", str(rate)] if rate is not None else ["--window", str(window)]
    command += ["--echo"] if echo else []
    command += ["--mids-file", str(mids_file)] if mids_file else []
    return command


def _run(args: argparse.Namespace) -> int:
    bands = [band_uid(i) for i in range(args.bands)]
    generator = LoadGenerator(
        args.broker,
        read_logins(Path(args.logins)),
        bands,
        echo=args.echo,
        on_phase=lambda name: print(PHASE_PREFIX + name, flush=True),
    ).connect()
    try:
        if args.rate is not None:
            result = generator.run_open(args.rate, args.seconds, drain_s=args.drain)
        else:
            result = generator.run_closed(
                args.window, args.seconds, limit=args.limit, drain_s=args.drain
            )
    finally:
        generator.close()
    if args.mids_file:
        Path(args.mids_file).write_bytes(b"".join(generator.decided_mids))
    print(json.dumps(result.summary()), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bandlink.tools.loadgen")
    commands = parser.add_subparsers(dest="command", required=True)
    echo = commands.add_parser("echo", help="republish every tap unchanged on its res topic")
    echo.add_argument("--broker", required=True)
    run = commands.add_parser("run", help="drive readers' taps; print a JSON summary last")
    run.add_argument("--broker", required=True)
    run.add_argument("--logins", required=True, help="JSON {reader id: password}, one a reader")
    run.add_argument("--bands", type=int, default=1024)
    run.add_argument("--seconds", type=float, required=True)
    load = run.add_mutually_exclusive_group(required=True)
    load.add_argument("--rate", type=float, help="open loop: taps per second")
    load.add_argument("--window", type=int, help="closed loop: taps in flight")
    run.add_argument("--limit", type=int, help="closed loop: stop after this many taps")
    run.add_argument("--drain", type=float, default=DRAIN_S, help="wait for late replies (s)")
    run.add_argument("--echo", action="store_true", help="match replies by mid (an echo)")
    run.add_argument("--mids-file", help="write the decided taps' mids here (16 bytes each)")
    args = parser.parse_args(argv)
    if args.command == "echo":
        return run_echo(args.broker)
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
