"""A simulated reader: the real firmware on the MicroPython unix port, with a virtual antenna.

``SimReader`` writes the reader's config.json (with its broker login: ``login``, or that of a
provisioned config.json it starts from, ``config``; the file is readable by its owner only),
starts ``micropython firmware/main.py`` under the reader's heap limit, and plays the controller
of the simulated board (firmware/board/sim.py): it places bands on the antenna, presses keys on
its keypad and reads back what the guest would see. Tests, the demo and ``bandlink sim-reader``
all drive readers through it.
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bandlink.gateway.settings import parse_broker_url

from .access import Login, write_private
from .micropython import DEFAULT_HEAP, micropython_command, micropython_env
from .processes import read_log, stop_process
from .sunband import SunBands, development_bands

SUN_BAND, PLAIN_BAND, TORN = "sun", "plain", "torn"  # what SimReader.tap places


@dataclass(frozen=True)
class Feedback:
    """What the guest saw after a tap, and how long after the band entered the field."""

    pattern: str  # green | red | retry | pin (or idle, from wait_show)
    text: str
    ms: float


class ReaderError(RuntimeError):
    """The simulated reader did not start, or did not answer in time."""


class SimReader:
    def __init__(
        self,
        reader_id: str,
        broker_url: str,
        workdir: Path,
        *,
        direction: str = "in",
        gate: str = "",
        deadline_ms: int = 800,
        heap: str = DEFAULT_HEAP,
        login: Login | None = None,
        config: Path | None = None,
        role: str = "gate",
        pin_key: bytes | None = None,
        offline_pin_key: bytes | None = None,
        hold_ms: int | None = None,
        bands: SunBands | None = None,
    ) -> None:
        """``bands``: the emulated NTAG 424 DNA bands placed on the antenna (by default the
        development venue's, each making a fresh SUN reading per tap)."""
        host, port = parse_broker_url(broker_url)
        self.bands = bands or development_bands()
        self.reader_id = reader_id
        self.heap = heap
        self.workdir = workdir
        self.log_path = workdir / f"{reader_id}.log"
        base = json.loads(config.read_text()) if config is not None else {}
        if base.get("reader", reader_id) != reader_id:
            raise ReaderError(f"{config} is the config of {base['reader']}, not of {reader_id}")
        broker = {**base.get("broker", {}), "host": host, "port": port}
        if login is not None:
            broker |= {"user": login.user, "password": login.password}
        self._settings = base | {
            "reader": reader_id,
            "role": role,
            "board": "sim",
            "broker": broker,
            "deadline_ms": deadline_ms,
            "gate": {"direction": direction, "gate": gate},
            "state_file": f"{reader_id}.state",
        }
        if hold_ms is not None:  # else config.json's own, or the firmware's default
            self._settings["hold_ms"] = hold_ms
        if pin_key is not None:  # a pos reader's PIN key (bandlink provision reader --role pos)
            self._settings["pin_key"] = pin_key.hex()
        if offline_pin_key is not None:  # the venue's (pin.offline_pin_key of its secret)
            self._settings["offline_pin_key"] = offline_pin_key.hex()
        self.link_downs = 0  # times the reader lost its broker connection
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: socket.socket | None = None
        self._lines: queue.Queue[str] = queue.Queue()
        self.link_up = threading.Event()
        self.heap_used_max = 0  # bytes allocated after a tap, the most seen
        self.heap_used: list[int] = []  # after each tap, in order (bench offline reads it)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout: float = 10) -> SimReader:
        with socket.create_server(("127.0.0.1", 0)) as antenna:
            antenna.settimeout(timeout)
            self._settings["antenna"] = f"127.0.0.1:{antenna.getsockname()[1]}"
            config_path = self.workdir / f"{self.reader_id}.json"
            write_private(config_path, json.dumps(self._settings))
            with open(self.log_path, "ab") as log:
                self._process = subprocess.Popen(
                    micropython_command("-m", "main", str(config_path), heap=self.heap),
                    env=micropython_env(),
                    # Not the repository: `-m` puts the working folder first on the path, and
                    # there `import protocol` would find the source instead of the build.
                    cwd=self.workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                self._conn, _ = antenna.accept()
            except TimeoutError:
                self.stop()
                raise ReaderError(f"{self.reader_id} did not start:\n{self.log()}") from None
        self._conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=self._read_lines, daemon=True).start()
        return self

    def wait_online(self, timeout: float = 10) -> None:
        if not self.link_up.wait(timeout):
            raise ReaderError(f"{self.reader_id} did not reach the broker:\n{self.log()}")

    def tap(
        self, uid: bytes, timeout: float = 5, *, band: str = SUN_BAND, ndef: bytes | None = None
    ) -> Feedback:
        """Place a band, wait for the light the guest sees, take the band away. ``band``:
        SUN_BAND (the band's NDEF file, a fresh SUN reading in its URL, or ``ndef``: one read
        earlier, as a copier would replay it), PLAIN_BAND (a tag with a UID alone: a plain
        band, or a copied UID), TORN (taken away mid-read)."""
        self._drain()
        if band == SUN_BAND:
            shown = ndef if ndef is not None else self.bands.band(uid).ndef()
            placed = f"place {uid.hex()} {shown.hex()}"
        else:
            placed = f"place {uid.hex()}" + (" torn" if band == TORN else "")
        started = time.perf_counter()
        self._send(placed)
        try:
            return self._next_show(started, timeout, lambda pattern, _: pattern != "idle")
        finally:
            # The reader may be gone already (Ctrl-C reaches it too): nothing left to remove.
            with contextlib.suppress(OSError):
                self._send("remove")

    def press(self, keys: str, timeout: float = 5) -> Feedback:
        """Press keys on the keypad ("0".."9", "#" enter, "*" clear), in order; the next light
        the guest sees after them."""
        self._drain()
        started = time.perf_counter()
        self._send(f"key {keys}")
        return self._next_show(started, timeout, lambda pattern, _: pattern != "idle")

    def wait_show(self, pattern: str, text: str | None = None, timeout: float = 5) -> Feedback:
        """The next display of ``pattern`` (with ``text``, if given: e.g. "idle" with an armed
        sale's label), from the lines seen since the last tap or press."""
        return self._next_show(
            time.perf_counter(),
            timeout,
            lambda shown, said: shown == pattern and (text is None or said == text),
        )

    def _next_show(
        self, started: float, timeout: float, wanted: Callable[[str, str], bool]
    ) -> Feedback:
        try:
            while True:
                line = self._lines.get(timeout=max(0.0, started + timeout - time.perf_counter()))
                words = line.split(" ", 2)
                said = words[2] if len(words) > 2 else ""
                if words[0] == "show" and wanted(words[1], said):
                    ms = (time.perf_counter() - started) * 1000
                    return Feedback(words[1], said, ms)
        except queue.Empty:
            raise ReaderError(f"{self.reader_id} showed nothing for {timeout} s") from None

    def stop(self) -> None:
        if self._conn is not None:
            # shutdown, not just close: the line-reading thread's file keeps the socket open,
            # and the firmware ends its role loop only when it sees the antenna close.
            with contextlib.suppress(OSError):
                self._conn.shutdown(socket.SHUT_RDWR)
            self._conn.close()
            self._conn = None
        if self._process is not None:
            try:
                self._process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                stop_process(self._process)
            self._process = None

    def band_list(self) -> tuple[int, int]:
        """(version, bands) of the band list on the reader's flash; (0, 0) while it has none."""
        path = self.workdir / f"{self._settings['state_file']}.list"
        head = path.read_bytes()[:16] if path.exists() else b""
        if len(head) < 16 or head[:3] != b"BL\x01":
            return 0, 0
        return int.from_bytes(head[4:8], "big"), int.from_bytes(head[8:12], "big")

    def journal(self) -> bytes:
        """The reader's journal of operations as it is on flash (firmware/journal.py)."""
        path = self.workdir / f"{self._settings['state_file']}.journal"
        return path.read_bytes() if path.exists() else b""

    def pending_operations(self) -> list[bytes]:
        """The operations the reader's journal still holds (OP records no END record ended,
        oldest first), read from firmware/journal.py's file format itself, not through it."""
        data = self.journal()
        if not data:
            return []
        if data[:4] != b"BJ\x01\x00":
            raise ReaderError(f"{self.reader_id}: not a journal: {data[:4]!r}")
        ops: list[bytes] = []
        ended: set[int] = set()
        at = 4
        while at + 7 <= len(data):
            length, _crc, kind = struct.unpack_from(">HIB", data, at)
            payload = data[at + 7 : at + 6 + length]
            if kind == 1:
                ops.append(payload)
            else:
                ended.add(int.from_bytes(payload, "big"))
            at += 6 + length
        return [op for n, op in enumerate(ops) if n not in ended]

    def kill(self) -> None:
        """SIGKILL the reader, wherever it is (a power cut, as far as its flash can tell); start()
        boots it again from what it has on flash."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=5)
            self._process = None
        self.link_up.clear()
        self.stop()

    def log(self) -> str:
        return read_log(self.log_path)

    def _send(self, line: str) -> None:
        if self._conn is None:
            raise ReaderError(f"{self.reader_id} is not running")
        self._conn.sendall(line.encode() + b"\n")

    def _drain(self) -> None:
        while not self._lines.empty():
            self._lines.get_nowait()

    def _read_lines(self) -> None:
        conn = self._conn
        assert conn is not None
        with conn.makefile("r", encoding="utf-8", errors="replace") as stream:
            try:
                for raw in stream:
                    self._on_line(raw.rstrip("\n"))
            except (OSError, ValueError):
                pass  # closed by stop()

    def _on_line(self, line: str) -> None:
        words = line.split()
        if words[:2] == ["link", "up"]:
            self.link_up.set()
        elif words[:2] == ["link", "down"]:
            self.link_downs += 1
            self.link_up.clear()
        elif words and words[0] == "mem":
            self.heap_used_max = max(self.heap_used_max, int(words[1]))
            self.heap_used.append(int(words[1]))
        self._lines.put(line)

    def __enter__(self) -> SimReader:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
