# The simulated board for the unix port: the same interface as board/esp32.py, with a virtual
# antenna and keypad instead of an NFC front end and keys, and text lines instead of LEDs.
#
# The board connects to a controller (a test, the demo) at config["antenna"] = "host:port" and
# speaks lines over TCP:
#   controller -> reader   "place <uid hex> [<ndef hex> | torn]"
#                                               a band enters the field; with its NDEF message
#                                               (the NDEF file after its 2-byte NLEN: a SUN band's
#                                               URI record, fresh for each read, as the controller
#                                               emulates the NTAG 424 DNA), or "torn": it leaves
#                                               while its NDEF is read. Without either, a band
#                                               with no NDEF (read_ndef answers 0).
#                          "remove"             it leaves
#                          "key <keys>"         keys pressed, in order: 0-9, # (enter), * (clear)
#   reader -> controller   "hello <reader id>"  once, on start
#                          "show <pattern> <text>"  green | red | retry | pin | idle, or
#                                               green-offline | red-offline (decided alone)
#                          "link up" / "link down"
#                          "mem <allocated> <free>"  live heap after each tap, collected
# A band that stays in the field is reported once; a different band is reported at once.
#
# One task reads the socket and hands each line to its side: a band to wait_tag, keys to
# wait_key. So a role can wait for keys while the antenna stays read, and neither waiter can
# swallow the other's lines.
import asyncio
import socket
import time

import feedback
from micropython import const

_IPPROTO_TCP = const(6)
_TCP_NODELAY = const(1)
_UID_MAX = const(10)
_KEYS_MAX = const(32)  # keys typed ahead of the role: more are dropped, as a full keypad buffer

_PATTERN_NAMES = {
    feedback.IDLE: "idle",
    feedback.GREEN: "green",
    feedback.RED: "red",
    feedback.RETRY: "retry",
    feedback.PIN: "pin",
    feedback.OFFLINE_GREEN: "green-offline",
    feedback.OFFLINE_RED: "red-offline",
}
# The keys as constant strings: wait_key hands one out without making a new one.
_KEY_NAMES = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "#", "*")


class Board:
    def __init__(self, config):
        host, port = config["antenna"].rsplit(":", 1)
        self._address = socket.getaddrinfo(host, int(port))[0][-1]
        self._reader_id = config["reader"]
        self._sock = socket.socket()
        self._lines = asyncio.StreamReader(self._sock)
        self._present = None  # the UID in the field, or None
        self._tag = None  # a band placed that wait_tag has not reported yet
        self._ndef: bytes | None = b""  # the NDEF message of the band reported last; None: torn
        self._keys = bytearray(_KEYS_MAX)  # keys typed, oldest first: indexes into _KEY_NAMES
        self._key_count = 0
        self._closed = False  # the controller closed the antenna
        self._due = asyncio.Event()  # a line came: each waiter looks whether it was for them
        self._reader_task = None

    async def start(self):
        self._sock.connect(self._address)  # loopback: connects at once
        # Two small lines per tap (show, mem): with Nagle the next tap's light would wait ~40 ms
        # for the delayed ACK of the last one. The unix port lacks the constants' names.
        self._sock.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
        self._sock.setblocking(False)
        self._send("hello " + self._reader_id)

    def network_ok(self):
        return True

    async def wait_tag(self, uid):
        """The next band placed on the antenna: its UID into uid, its length; 0 when closed."""
        # The antenna is read from the first wait on, not from start(): until then its lines
        # wait in the socket.
        if self._reader_task is None:
            self._reader_task = asyncio.create_task(self._read_lines())
        while self._tag is None:
            if self._closed:
                return 0
            self._due.clear()
            await self._due.wait()
        band = self._tag
        self._tag = None
        uid[: len(band)] = band
        return len(band)

    async def read_ndef(self, buf):
        """The NDEF message of the band wait_tag reported last, into buf: its length; 0 when it
        has none (or none that fits); -1 when the band left mid-read."""
        ndef = self._ndef
        self._ndef = b""  # read once; and not kept across the heap collection after the tap
        if ndef is None:
            return -1
        if len(ndef) > len(buf):
            return 0
        buf[: len(ndef)] = ndef
        return len(ndef)

    async def wait_key(self, timeout_ms):
        """The next key typed on the controller's keypad, or None after timeout_ms."""
        if self._reader_task is None:
            self._reader_task = asyncio.create_task(self._read_lines())
        keys = self._keys
        until = time.ticks_add(time.ticks_ms(), timeout_ms)
        while not self._key_count and not self._closed:
            left = time.ticks_diff(until, time.ticks_ms())
            if left <= 0:
                break
            self._due.clear()  # a line for the antenna wakes us too: then wait out the rest
            try:
                await asyncio.wait_for_ms(self._due.wait(), left)
            except asyncio.TimeoutError:
                break
        if not self._key_count:
            return None
        key = _KEY_NAMES[keys[0]]
        self._key_count -= 1
        for i in range(self._key_count):
            keys[i] = keys[i + 1]
        return key

    async def _read_lines(self):
        while True:
            line = await self._lines.readline()
            if not line:
                self._closed = True
                self._due.set()
                return
            words = line.split()
            if not words:
                continue
            if words[0] == b"remove":
                self._present = None
            elif words[0] == b"place" and 2 <= len(words) <= 3:
                band = bytes.fromhex(words[1].decode())
                # As presence.TagPresence on a real board: the band already in the field is not
                # news, another band placed over it is.
                if band != self._present and 4 <= len(band) <= _UID_MAX:
                    self._present = self._tag = band
                    ndef = words[2] if len(words) == 3 else b""
                    self._ndef = None if ndef == b"torn" else bytes.fromhex(ndef.decode())
                    self._due.set()
            elif words[0] == b"key" and len(words) == 2:
                for code in words[1]:
                    for index in range(len(_KEY_NAMES)):
                        if ord(_KEY_NAMES[index]) == code and self._key_count < _KEYS_MAX:
                            self._keys[self._key_count] = index
                            self._key_count += 1
                self._due.set()
            # Not held while the next line is awaited: the reader collects its heap after a tap,
            # and a line with an NDEF message would stay pinned in the middle of it.
            del line, words

    def show(self, pattern, text):
        self._send("show %s %s" % (_PATTERN_NAMES.get(pattern, "idle"), text))

    def heap(self, allocated, free):
        self._send("mem %d %d" % (allocated, free))

    def link(self, up):
        self._send("link up" if up else "link down")

    def _send(self, line):
        try:
            self._sock.send(line.encode() + b"\n")
        except OSError:
            pass  # the controller went away; the next wait_tag sees the closed antenna
