"""Board support: the only package that touches ``machine`` and ``network``.

``open_board(config)`` returns the board named by ``config["board"]``; each board module is
imported only when chosen, so the unix port (``sim``) never imports ``machine``.

A board is duck-typed; ``Board`` below states the contract for mypy only (MicroPython has no
``typing``, and annotations are not evaluated there):

- ``start()``: bring up the hardware and the network; returns once the link is usable, or raises
  OSError.
- ``network_ok()``: the network link is still up (Wi-Fi associated).
- ``wait_tag(uid)``: wait for the next band entering the field, write its UID into ``uid``
  (capacity >= 10) and return its length (4, 7 or 10). A band staying in the field is reported
  once. Yields to the asyncio loop between polls.
- ``read_ndef(buf)``: read the NDEF message of the band ``wait_tag`` reported last into ``buf``
  (the NDEF file's content after its 2-byte NLEN; a SUN band mirrors a fresh SUN message into it
  on every read) and return its length; 0 when the band has none (no ISO-DEP, no NDEF
  application or file, a status word other than 9000, or more than ``len(buf)`` bytes); -1 when
  the read broke off (the band left the field mid-read: the role asks for another tap). Called
  once per reported band, at once, while the band is still in the field.
- ``wait_key(timeout_ms)``: the next key pressed on the keypad, as one of "0".."9", "#" (enter)
  and "*" (clear); None when none came within timeout_ms, or at once on a board without a
  keypad. A board may keep a few keys pressed while nobody waited (the simulated one does).
- ``show(pattern, text)``: guest feedback, ``pattern`` from ``feedback`` (IDLE, GREEN, RED,
  RETRY, PIN); lights, beeps (never blocking the caller) and display text, whichever the site has.
- ``link(up)``: link status indication, or nothing.
- ``heap(allocated, free)``: the reader's heap after it collected garbage, once per tap; a board
  reports it where it can (the simulated one to its controller) or ignores it.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class Board(Protocol):
        async def start(self) -> None: ...
        def network_ok(self) -> bool: ...
        async def wait_tag(self, uid: bytearray) -> int: ...
        async def read_ndef(self, buf: bytearray) -> int: ...
        async def wait_key(self, timeout_ms: int) -> str | None: ...
        def show(self, pattern: int, text: str) -> None: ...
        def link(self, up: bool) -> None: ...
        def heap(self, allocated: int, free: int) -> None: ...


def open_board(config: dict) -> "Board":
    kind = config.get("board")
    if kind == "sim":
        from board import sim

        return sim.Board(config)
    if kind == "esp32":
        from board import esp32

        return esp32.Board(config)
    raise ValueError("unknown board %r" % (kind,))
