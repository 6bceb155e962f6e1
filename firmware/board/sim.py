# The simulated board for the unix port: the same interface as board/esp32.py, with a virtual
# antenna instead of an NFC front end and text lines instead of LEDs.
#
# The board connects to a controller (a test, the demo) at config["antenna"] = "host:port" and
# speaks lines over TCP:
#   controller -> reader   "place <uid hex>"    a band enters the field
#                          "remove"             it leaves
#   reader -> controller   "hello <reader id>"  once, on start
#                          "show <pattern> <text>"  green | red | retry | idle, and display text
#                          "link up" / "link down"
#                          "mem <allocated> <free>"  live heap after each tap, collected
# A band that stays in the field is reported once; a different band is reported at once.
import asyncio
import socket

import feedback
from micropython import const

_IPPROTO_TCP = const(6)
_TCP_NODELAY = const(1)

_PATTERN_NAMES = {
    feedback.IDLE: "idle",
    feedback.GREEN: "green",
    feedback.RED: "red",
    feedback.RETRY: "retry",
}


class Board:
    def __init__(self, config):
        host, port = config["antenna"].rsplit(":", 1)
        self._address = socket.getaddrinfo(host, int(port))[0][-1]
        self._reader_id = config["reader"]
        self._sock = socket.socket()
        self._lines = asyncio.StreamReader(self._sock)
        self._present = None  # the UID in the field, or None

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
        while True:
            line = await self._lines.readline()
            if not line:
                return 0
            words = line.split()
            if not words:
                continue
            if words[0] == b"remove":
                self._present = None
            elif words[0] == b"place" and len(words) == 2:
                band = bytes.fromhex(words[1].decode())
                # As presence.TagPresence on a real board: the band already in the field is not
                # news, another band placed over it is.
                if band != self._present and 4 <= len(band) <= len(uid):
                    self._present = band
                    uid[: len(band)] = band
                    return len(band)

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
