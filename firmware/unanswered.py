# The taps that got no answer, per band, on flash: the operations a reader may still resend.
#
# A RETRY may hide a decision the gateway did make (its result was lost, or came after the
# deadline). When the same band taps again within the resend window, the reader resends that
# operation, same mid and ts, so the gateway answers with the decision it stored instead of
# deciding anew (SPEC, Idempotency). The table remembers one operation per band, for up to
# _SLOTS bands at once, so a queue of guests tapping in turn during a gateway hiccup each get
# their own operation back; a reboot keeps them, because a mid is on flash before it is sent.
#
# Theory of operation
# - An entry is (uid, mid, ts, direction): the band and its operation. A resend is the same
#   operation, so it goes out with the direction it was made with, even if a Config changed the
#   reader's since (the gateway takes a known mid with another direction for a misuse). `ts` is
#   on the wall clock
#   (reader.wall_ms(), ms since 1970, the gateway's time as far as the reader knows it), not on
#   ticks_ms, which start again at a reboot.
# - An entry is live while 0 <= now - ts < WINDOW_MS: the window counts from the operation's
#   first send, not from its last resend (SPEC, Resending), so it never outlasts 30 s, however
#   often the band is tapped. A clock that went back (a time sync, a reboot before the next
#   sync) makes an entry's age unknowable: it counts as expired, and the band gets a fresh mid.
#   Resending by mistake could replay another guest's decision; a fresh mid by mistake at worst
#   refuses a lost green as "already inside".
# - A new operation takes a free or expired slot, else the one with the oldest ts. An answer
#   (any result but RETRY) removes the band's entry; no answer, or RETRY, leaves it as it is.
# - Flash is written only when the table changes: a new operation (before it is sent) and an
#   answer (the entry goes); a resend writes nothing. The whole table is one preallocated
#   buffer, written whole through flash.Stored (temporary file, then rename), so a torn write
#   never loses it.
import struct

from flash import Stored
from micropython import const

WINDOW_MS = const(30_000)
_SLOTS = const(8)
_UID_MAX = const(10)  # ISO 14443-A: 4, 7 or 10 bytes
_MID_SIZE = const(16)
# One entry: uid length (0: free), uid, mid, ts (u64, big-endian), direction.
_AT_UID = const(1)
_AT_MID = const(1 + _UID_MAX)
_AT_TS = const(_AT_MID + _MID_SIZE)
_AT_DIRECTION = const(_AT_TS + 8)
_ENTRY = const(_AT_DIRECTION + 1)
_FORMAT = const(1)  # first byte of the file: its layout; a file of another layout is ignored


class Unanswered:
    def __init__(self, path, slots=_SLOTS):
        self._file = Stored(path)
        self._slots = slots
        self._buf = bytearray(1 + slots * _ENTRY)
        stored = self._file.read()
        if stored is not None and len(stored) == len(self._buf) and stored[0] == _FORMAT:
            self._buf[:] = stored
        else:
            self._buf[0] = _FORMAT  # first boot, another layout, or a torn first write: empty

    def find(self, uid, now_ms):
        """The slot of this band's live entry, or -1."""
        for slot in range(self._slots):
            at = 1 + slot * _ENTRY
            if self._same(at, uid) and self._live(at, now_ms):
                return slot
        return -1

    def mid(self, slot):
        at = 1 + slot * _ENTRY + _AT_MID
        return bytes(self._buf[at : at + _MID_SIZE])

    def ts(self, slot):
        return struct.unpack_from(">Q", self._buf, 1 + slot * _ENTRY + _AT_TS)[0]

    def direction(self, slot):
        return self._buf[1 + slot * _ENTRY + _AT_DIRECTION]

    def add(self, uid, mid, ts, direction=0):
        """Record a new operation (ts: now) for this band and store the table; its slot."""
        slot = self._free(ts)
        at = 1 + slot * _ENTRY
        buf = self._buf
        buf[at] = len(uid)
        buf[at + _AT_UID : at + _AT_UID + len(uid)] = uid
        buf[at + _AT_MID : at + _AT_MID + _MID_SIZE] = mid
        struct.pack_into(">Q", buf, at + _AT_TS, ts)
        buf[at + _AT_DIRECTION] = direction
        self._file.write(buf)
        return slot

    def answered(self, slot):
        """The operation in slot got its answer: the band's next tap is a new operation."""
        buf, at = self._buf, 1 + slot * _ENTRY
        for i in range(at, at + _ENTRY):  # all of it: no band's uid stays on flash for nothing
            buf[i] = 0
        self._file.write(buf)

    def __len__(self):
        """Entries held, live or not (for tests and the heartbeat)."""
        return sum(1 for slot in range(self._slots) if self._buf[1 + slot * _ENTRY])

    def _free(self, now_ms):
        oldest, oldest_ts = 0, -1
        for slot in range(self._slots):
            at = 1 + slot * _ENTRY
            if not self._live(at, now_ms):
                return slot
            ts = struct.unpack_from(">Q", self._buf, at + _AT_TS)[0]
            if oldest_ts < 0 or ts < oldest_ts:
                oldest, oldest_ts = slot, ts
        return oldest

    def _live(self, at, now_ms):
        if not self._buf[at]:
            return False
        age = now_ms - struct.unpack_from(">Q", self._buf, at + _AT_TS)[0]
        return 0 <= age < WINDOW_MS

    def _same(self, at, uid):
        buf, n = self._buf, len(uid)
        if buf[at] != n:
            return False
        at += _AT_UID
        for i in range(n):  # noqa: SIM110 - all(<generator>) allocates on every tap
            if buf[at + i] != uid[i]:
                return False
        return True
