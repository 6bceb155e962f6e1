# The reader's journal of operations, on flash: every tap decision a guest sees is appended here
# before the light shows, and the outbox uploads, oldest first, the ones the gateway has not yet
# acknowledged. A power cut at any moment leaves every committed operation in the journal.
#
# File format (one append-only file)
# - A 4-byte header: b"BJ", format 1, reserved 0. A file with another header is from another
#   layout or is not ours: it is treated as empty (rewritten) and flagged (`foreign_header`).
# - Then records: len (u16 BE: bytes of kind + payload) | crc (u32 BE: binascii.crc32 of kind +
#   payload) | kind (u8) | payload.
#   kind OP (1): the caller's opaque bytes (an encoded Tap), at most 256.
#   kind END (2): the ordinal (u16 BE) of the OP it ends: the n-th OP record in the file, from 0.
#
# Theory of operation
# - An append is one write of the whole record, inside one open('ab') ... close: on littlefs the
#   close is the commit, so a cut leaves the file without the record or with all of it. On a file
#   system that does tear it (FAT, or a cut inside a sector), the record fails its length or CRC
#   check at the next boot.
# - Opening recovers: records are checked in order, and the first one that runs past the end of
#   the file, fails its CRC or makes no sense (an unknown kind, an END of an OP not before it)
#   ends the valid prefix. Everything after it is dropped (counted in `torn_bytes`): anything
#   appended after torn bytes would be lost at the next boot, so the file is cut back at once.
#   MicroPython files have no truncate(): the valid prefix is copied to `<path>.tmp`, which is
#   renamed over the file (the flash.Stored pattern; the rename is atomic on littlefs). If only
#   the temporary file exists (a FAT rename cut between remove and rename), it is adopted.
# - RAM state, rebuilt at each open: OP records in the file, a bitmap (capacity bits) of the
#   ended ordinals, and the pending count (OPs not ended). Nothing else: the payloads stay on
#   flash, and iteration reads them back one at a time into the shared buffer.
# - Ids. A file ordinal is not stable: a compaction renumbers the pending OPs from 0 and a clear
#   starts again at 0. The caller gets an id instead, `base + ordinal`, and `base` moves up by
#   `capacity` at every compaction or clear, so an id is never issued twice in one boot. An id
#   from before a clear is of an operation that was ended (a clear needs pending == 0): end()
#   says True. An id from before a compaction names an OP whose new ordinal the journal no longer
#   knows: end() says False and ends nothing, and the operation stays pending; uploaded again,
#   the gateway answers it by its mid (SPEC, Idempotency). Ending the wrong record would lose
#   one. Ids are RAM-only: after a reboot the caller finds its operations by iterating. (They
#   stay small ints on a board until base passes 2**30: a million clears in one boot.)
# - Full: append() returns -1 and writes nothing when `capacity` OPs are pending; the caller's
#   role decides what that means (a sale is refused, a photo tap may be dropped). When the file
#   holds `capacity` OPs but fewer are pending, append() first compacts: the pending OPs alone,
#   byte for byte and in order, go to a new file (temporary file, then rename).
# - Clear: an online reader ends every OP moments after appending it (two appends a tap). When
#   pending reaches 0 and the file is over `clear_above` bytes, it is rewritten to its header,
#   so the file stays a few KiB.
# - Heap: append() and end() build records in the caller's preallocated buffer (pack_into, one
#   slice copy, crc32 of the payload continuing from the kind byte's CRC), so they allocate only
#   what MicroPython's file I/O does (the file object) and, on a 32-bit board, the CRC's integer
#   (over 2**30). Reads (open, iteration, read()) allocate a small memoryview per record checked.
import binascii
import os
import struct

from micropython import const

HEADER = b"BJ\x01\x00"
_HEADER_SIZE = const(4)
_RECORD_HEAD = const(7)  # len u16, crc u32, kind u8
_LEN_AND_CRC = const(6)  # `len` counts from the kind byte on
PAYLOAD_AT = const(7)  # where a payload sits in the buffer after first()/next()
PAYLOAD_MAX = const(256)
BUF_MIN = const(263)  # _RECORD_HEAD + PAYLOAD_MAX
_OP = const(1)
_END = const(2)
_END_LEN = const(3)  # kind + u16 ordinal
_CLEAR_ABOVE = const(4096)
_CRC_OP = binascii.crc32(b"\x01")  # an OP's CRC continues from its kind byte's


class Cursor:
    """A position in the journal for first()/next(): made once, moved without allocating."""

    def __init__(self):
        self.id = -1  # the pending OP it is on, -1 past the last
        self.offset = -1  # that record's offset in the file (for read())
        self.length = 0  # its payload's length
        self._base = -1  # the journal's base when the cursor was moved: offsets hold within one
        self._next = 0  # offset of the record after this one
        self._ordinal = 0  # file ordinal of the next OP record


class Journal:
    def __init__(self, path, capacity=1024, buf=None, clear_above=_CLEAR_ABOVE):
        if not 0 < capacity <= 0x10000:
            raise ValueError("journal capacity is 1..65536 (an END holds a u16 ordinal)")
        if buf is None:
            buf = bytearray(BUF_MIN)
        elif len(buf) < BUF_MIN:
            raise ValueError("journal buffer under 263 bytes")
        self.path = path
        self._tmp = path + ".tmp"
        self.capacity = capacity
        self.clear_above = clear_above
        self.buf = buf
        self._after_head = memoryview(buf)[_RECORD_HEAD:]  # readinto target for a record's body
        self._end_body = memoryview(buf)[_LEN_AND_CRC : _LEN_AND_CRC + _END_LEN]
        self._ended = bytearray((capacity + 7) // 8)
        self._ops = 0  # OP records in the file
        self.pending = 0
        self._size = 0  # the unix port's open(p, "ab").tell() is 0: the size is tracked here
        self._base = 0  # id of file ordinal 0
        self._compacted_base = 0  # ids below this were issued before the last compaction
        self.last_offset = -1  # offset of the record the last append() wrote
        self.compactions = 0
        self.clears = 0
        self.torn_bytes = 0  # dropped at open: a torn tail (or a whole foreign file)
        self.foreign_header = False
        self._recover()

    def __len__(self):
        return self.pending

    # Writing

    def append(self, payload):
        """Append an OP record; its id, or -1 (nothing written) when `capacity` are pending.
        The id is the caller's to end() or read(); see "Ids" above for how long it holds."""
        n = len(payload)
        if n > PAYLOAD_MAX:
            raise ValueError("journal payload over 256 bytes")
        if self.pending >= self.capacity:
            return -1
        if self._ops >= self.capacity:
            self._compact()
        buf = self.buf
        struct.pack_into(">HIB", buf, 0, n + 1, binascii.crc32(payload, _CRC_OP), _OP)
        buf[PAYLOAD_AT : PAYLOAD_AT + n] = payload
        at = self._size
        self._write(_RECORD_HEAD + n)
        self.last_offset = at
        self._ops += 1
        self.pending += 1
        return self._base + self._ops - 1

    def end(self, op_id):
        """The operation `op_id` is done with (answered, uploaded): True once it is ended (now
        or before); False if the id is from before a compaction: nothing is ended then."""
        ordinal = op_id - self._base
        if op_id < 0 or ordinal >= self._ops:
            raise ValueError("no such journal id")
        if ordinal < 0:
            return op_id >= self._compacted_base  # only clears since: it was ended
        if self._is_ended(ordinal):
            return True
        buf = self.buf
        struct.pack_into(">HIBH", buf, 0, _END_LEN, 0, _END, ordinal)
        struct.pack_into(">I", buf, 2, binascii.crc32(self._end_body))
        self._write(_RECORD_HEAD + 2)
        self._mark_ended(ordinal)
        if self.pending == 0 and self._size > self.clear_above:
            self._clear()
            self.clears += 1
        return True

    # Reading

    def first(self, cursor):
        """Move cursor to the oldest pending OP, its payload into buf[PAYLOAD_AT:]; False if
        none is pending."""
        cursor._base = self._base
        cursor._next = _HEADER_SIZE
        cursor._ordinal = 0
        return self.next(cursor)

    def next(self, cursor):
        """Move cursor to the next pending OP, oldest first, its payload into buf[PAYLOAD_AT:];
        False past the last. After a compaction or clear it starts again from the oldest."""
        if cursor._base != self._base:
            return self.first(cursor)
        at, ordinal, end = cursor._next, cursor._ordinal, self._size
        with open(self.path, "rb") as f:
            f.seek(at)
            while at < end:
                length = self._read_head(f, at, end)
                if length < 0:
                    raise OSError("journal changed on flash since it was opened")
                if self.buf[_LEN_AND_CRC] == _OP:
                    if not self._is_ended(ordinal):
                        if not self._read_body(f, length):
                            raise OSError("journal record damaged since it was opened")
                        cursor.id, cursor.offset, cursor.length = (
                            self._base + ordinal,
                            at,
                            length - 1,
                        )
                        cursor._next, cursor._ordinal = at + _LEN_AND_CRC + length, ordinal + 1
                        return True
                    ordinal += 1
                at += _LEN_AND_CRC + length
                f.seek(at)
        cursor.id, cursor.offset, cursor.length = -1, -1, 0
        cursor._next, cursor._ordinal = at, ordinal
        return False

    def read(self, op_id, offset, into):
        """Re-read the payload of OP `op_id`, written at `offset` (last_offset after its
        append, or cursor.offset), into `into`; its length, or -1 if it was ended. Uses buf
        for the record's head, so a payload left there by first()/next() is overwritten."""
        ordinal = op_id - self._base
        if op_id < 0 or not 0 <= ordinal < self._ops:
            raise ValueError("journal id from before a compaction or clear")
        if self._is_ended(ordinal):
            return -1
        with open(self.path, "rb") as f:
            f.seek(offset)
            length = self._read_head(f, offset, self._size)
            buf = self.buf
            if length < 0 or buf[_LEN_AND_CRC] != _OP:
                raise ValueError("no OP record at that offset")
            n = length - 1
            if len(into) < n:
                raise ValueError("buffer too small for the payload")
            stored = _crc_at(buf)  # before `into`, which may be buf, is overwritten
            if f.readinto(into, n) != n or binascii.crc32(memoryview(into)[:n], _CRC_OP) != stored:
                raise OSError("journal record damaged since it was opened")
        return n

    # Recovery and rewrites

    def _recover(self):
        size = self._file_size()
        if size < 0 and self._adopt_tmp():
            size = self._file_size()
        if size < 0 or not self._header_ok():
            if size > 0:
                self.foreign_header = True
                self.torn_bytes = size
            self._clear()
            return
        valid = self._scan(size)
        if valid < size:
            self.torn_bytes = size - valid
            self._replace(self._copy_prefix, valid)
        self._size = valid
        if self.pending == 0 and valid > self.clear_above:
            self._clear()

    def _scan(self, size):
        """Rebuild the RAM state from the records; the end of the valid prefix."""
        buf, at = self.buf, _HEADER_SIZE
        with open(self.path, "rb") as f:
            f.seek(at)
            while at < size:
                length = self._read_head(f, at, size)
                if length < 0 or not self._read_body(f, length):
                    break
                kind = buf[_LEN_AND_CRC]
                if kind == _OP and self._ops < self.capacity:
                    self._ops += 1
                    self.pending += 1
                elif kind == _END and length == _END_LEN:
                    ordinal = buf[PAYLOAD_AT] << 8 | buf[PAYLOAD_AT + 1]
                    if ordinal >= self._ops:
                        break
                    if not self._is_ended(ordinal):
                        self._mark_ended(ordinal)
                else:
                    # An unknown kind with a good CRC, or more OPs than this capacity holds
                    # (a build with a larger one wrote it): nothing after it can be read.
                    break
                at += _LEN_AND_CRC + length
        return at

    def _compact(self):
        self._size = self._replace(self._copy_pending, 0)
        self._ops = self.pending
        self._new_generation()
        self._compacted_base = self._base
        self.compactions += 1

    def _clear(self):
        self._size = self._replace(self._write_header, 0)
        self._ops = self.pending = 0
        self._new_generation()

    def _new_generation(self):
        """Ordinals and offsets were renumbered: no id or cursor from before may match."""
        self._base += self.capacity
        ended = self._ended
        for i in range(len(ended)):
            ended[i] = 0

    def _replace(self, fill, arg):
        """Write the new file through fill(out, arg) -> its size, then rename it into place."""
        with open(self._tmp, "wb") as out:
            size = fill(out, arg)
        os.rename(self._tmp, self.path)
        return size

    def _write_header(self, out, _):
        out.write(HEADER)
        return _HEADER_SIZE

    def _copy_prefix(self, out, keep):
        buf, left = self.buf, keep
        with open(self.path, "rb") as f:
            while left > 0:
                n = f.readinto(buf, min(left, len(buf)))
                if not n:
                    break
                out.write(buf, n)
                left -= n
        return keep - left

    def _copy_pending(self, out, _):
        out.write(HEADER)
        buf, at, ordinal, size, end = self.buf, _HEADER_SIZE, 0, _HEADER_SIZE, self._size
        with open(self.path, "rb") as f:
            f.seek(at)
            while at < end:
                length = self._read_head(f, at, end)
                if length < 0 or not self._read_body(f, length):
                    raise OSError("journal record damaged since it was opened")
                record = _LEN_AND_CRC + length
                if buf[_LEN_AND_CRC] == _OP:
                    if not self._is_ended(ordinal):
                        out.write(buf, record)  # as it was: same length, CRC and payload
                        size += record
                    ordinal += 1
                at += record
        return size

    def _write(self, n):
        """Append buf[:n] as one record: one write, and the close commits it."""
        try:
            with open(self.path, "ab") as f:
                written = f.write(self.buf, n)
        except OSError:
            written = -1
        if written != n:
            # A short write (flash full) leaves a torn record, and the next boot would drop
            # every record after it: cut the file back to the last good one before going on.
            self._replace(self._copy_prefix, self._size)
            raise OSError("journal write failed")
        self._size += n

    def _read_head(self, f, at, end):
        """Read a record's first 7 bytes into buf; its `len`, or -1 if it cannot be whole."""
        buf = self.buf
        if at + _RECORD_HEAD > end or f.readinto(buf, _RECORD_HEAD) != _RECORD_HEAD:
            return -1
        length = buf[0] << 8 | buf[1]
        if not 1 <= length <= PAYLOAD_MAX + 1 or at + _LEN_AND_CRC + length > end:
            return -1
        return length

    def _read_body(self, f, length):
        """Read the payload after the head into buf[PAYLOAD_AT:]; whether the CRC matches."""
        n = length - 1
        if f.readinto(self._after_head, n) != n:
            return False
        view = memoryview(self.buf)[_LEN_AND_CRC : _LEN_AND_CRC + length]
        return binascii.crc32(view) == _crc_at(self.buf)

    def _header_ok(self):
        buf = self.buf
        with open(self.path, "rb") as f:
            if f.readinto(buf, _HEADER_SIZE) != _HEADER_SIZE:
                return False
        for i in range(_HEADER_SIZE):  # noqa: SIM110 - all(<generator>) allocates
            if buf[i] != HEADER[i]:
                return False
        return True

    def _file_size(self):
        try:
            return os.stat(self.path)[6]
        except OSError:
            return -1

    def _adopt_tmp(self):
        try:
            os.rename(self._tmp, self.path)
        except OSError:
            return False
        return True

    def _is_ended(self, ordinal):
        return self._ended[ordinal >> 3] & (1 << (ordinal & 7))

    def _mark_ended(self, ordinal):
        self._ended[ordinal >> 3] |= 1 << (ordinal & 7)
        self.pending -= 1


def _crc_at(buf):
    return buf[2] << 24 | buf[3] << 16 | buf[4] << 8 | buf[5]
