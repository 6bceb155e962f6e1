# The band list on flash: the bands a reader may admit alone while the gateway is out of reach,
# with what each may do (flags), looked up by uid without allocating.
#
# Theory of operation
# - A list file is a 16-byte header (b"BL", format 1, reserved 0, version u32, count u32,
#   valid_until_s u32, big-endian) and `count` 16-byte records sorted strictly by key, the first
#   11 bytes (uid length, uid zero-padded to 10) compared as unsigned bytes. A record is a list
#   entry as the gateway sent it (protocol/lists.py): key, flags (byte 11), PIN check (12..13),
#   PIN salt (14..15). A till reads the check and the salt of the band it found (found()).
# - A look-up is a binary search on the open file: seek and readinto one preallocated 16-byte
#   buffer, ~17 reads for 100,000 bands; the file stays open between look-ups (reopened after
#   each switch), the key is built in a preallocated buffer and compared byte by byte, so
#   find() allocates nothing.
# - The list in use changes only by a rename of a complete `<path>.new` over `<path>`: a power
#   cut leaves the old list or the new, never a mix. littlefs renames atomically; MicroPython's
#   FAT rename removes the old file first, so a list missing beside a complete `.new` (header
#   valid, size 16 + 16 * count) is the FAT cut, and the `.new` is taken.
# - A snapshot comes in chunks 0..chunks-1 of one version, each appended to `.new` after a
#   check (whole records, uid length 4/7/10, zero padding, keys increasing across the
#   chunks); the last one writes the header at the front and switches. A delta's chunks (records
#   to add or replace, uids to remove, each sorted across the chunks) go to `<path>.add` and
#   `<path>.del` on flash, not RAM; its last chunk merges them with the list into `.new`,
#   copying unchanged runs of records in _BLOCK-sized reads and writes found by binary search,
#   a replaced record taking the delta's entry whole (its PIN check and salt too), and
#   switches. Any refused chunk discards its build; the list in use stays throughout. One
#   build at a time: a good chunk 0 of either kind discards the other's; a refused chunk of the
#   other kind does not.
# - QoS 1 may deliver a chunk twice: the chunk just taken again, or a chunk of the version
#   already held, returns True and changes nothing. A reboot loses a build in progress (its
#   state is in RAM): its next chunk is refused, and the caller asks for the list again; the
#   build's files are removed when the list is opened. One BandList per path.
# - A snapshot's header is written last, at the front (seek 0), so an unfinished `.new` never
#   passes for a list; on littlefs that seek costs one more copy of the file at close, once per
#   snapshot. A delta counts its result first (binary searches only) and writes straight through.
#
# RAM kept (measured by `bandlink bench list` on the 64-bit unix port; less on the 32-bit ESP32):
# an open BandList about 1 KB: the object and its ~20 attributes, four path strings, three
# 16-byte and two 11-byte buffers, one open file (on a board, plus littlefs's per-file cache);
# the module's bytecode ~7 KB unless frozen. While a build runs, one or two more open files;
# while a delta merges, two more and a _BLOCK buffer. Never a chunk's worth.
import os
import struct

from micropython import const

TYPE_CHECKING = False  # mypy reads it as true; the reader has no typing module
if TYPE_CHECKING:
    from typing import Any

ENTRY = const(1)  # has a ticket valid today at this reader's site
PAY = const(2)  # may pay offline
PIN = const(4)  # an offline till asks for the PIN for every sale

_HEADER = const(16)
_RECORD = const(16)
_KEY = const(11)  # bytes 0..10: uid length, then the uid zero-padded to 10 bytes
_UID_MAX = const(10)
_FLAGS = const(11)
_FORMAT = const(1)
_HEADER_LAYOUT = ">2sBBIII"
_BLOCK = const(256)  # 16 records per read and write when a merge copies unchanged records

_IDLE = const(0)
_SNAPSHOT = const(1)
_DELTA = const(2)


class BandList:
    def __init__(self, path, buf=None):
        """buf: a caller's bytearray (16 bytes or more) to read records into, else our own."""
        self.path = path
        self._new = path + ".new"
        self._adds = path + ".add"
        self._dels = path + ".del"
        self._rec = bytearray(_RECORD) if buf is None else memoryview(buf)[:_RECORD]
        self._key = bytearray(_RECORD)  # a look-up's key; padded to a record for a remove
        self._head = bytearray(_HEADER)
        self._last = bytearray(_KEY)  # the last key a build took: order across chunks
        self._last_removed = bytearray(_KEY)
        self._f: Any = None  # the list file, open while a list is held
        self._out: Any = None  # the file a build appends to: .new, or a delta's .add
        self._out_removes: Any = None  # a delta's .del
        self._begin(_IDLE, 0, 0, 0)
        self._open()
        for stale in (self._new, self._adds, self._dels):
            _remove(stale)  # a build's files from before a reboot: its state went with the RAM

    # -- look-ups -------------------------------------------------------------------------------

    def find(self, uid):
        """The band's flags (0..255), or -1 if it is not listed."""
        if self._index(uid) < 0:
            return -1
        return self._rec[_FLAGS]

    def found(self):
        """The entry the last successful find() read (16 bytes: flags at 11, PIN check at
        12..13, PIN salt at 14..15), without a copy: the next look-up, or a list chunk taken,
        overwrites it, so read what you need from it at once."""
        return self._rec

    def close(self):
        self._abort()
        if self._f is not None:
            self._f.close()
            self._f = None

    def _index(self, uid):
        """The band's record number, its record in self._rec; -1 if not listed."""
        key = self._key
        if not _set_key(key, uid):
            return -1
        f, rec = self._f, self._rec
        lo, hi = 0, self.count
        while lo < hi:
            mid = (lo + hi) >> 1
            f.seek(_HEADER + mid * _RECORD)
            f.readinto(rec)
            c = _cmp(rec, 0, key, 0)
            if c == 0:
                return mid
            if c < 0:
                lo = mid + 1
            else:
                hi = mid
        return -1

    def _lower(self, key, lo):
        """The first record number >= lo whose key is not below key (count if none)."""
        f, rec = self._f, self._rec
        hi = self.count
        while lo < hi:
            mid = (lo + hi) >> 1
            f.seek(_HEADER + mid * _RECORD)
            f.readinto(rec)
            if _cmp(rec, 0, key, 0) < 0:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _holds(self, at, key):
        """Record number at (< count or not) has this key; the record is left in self._rec."""
        if at >= self.count:
            return False
        self._f.seek(_HEADER + at * _RECORD)
        self._f.readinto(self._rec)
        return _cmp(self._rec, 0, key, 0) == 0

    # -- opening and switching ------------------------------------------------------------------

    def _open(self):
        self.version = self.count = self.valid_until_s = 0
        f = _valid(self.path, self._head)
        if f is None and not _exists(self.path):
            f = _valid(self._new, self._head)
            if f is not None:  # the FAT cut: the complete .new stands in for the list
                f.close()
                os.rename(self._new, self.path)
                f = _valid(self.path, self._head)
        self._f = f
        if f is not None:
            _, _, _, self.version, self.count, self.valid_until_s = struct.unpack_from(
                _HEADER_LAYOUT, self._head
            )

    def _switch(self):
        """The complete .new becomes the list (the only switch); reopen it."""
        if self._f is not None:
            self._f.close()
            self._f = None
        os.rename(self._new, self.path)
        self._open()

    def _header(self, version, count, valid_until_s):
        head = self._head
        struct.pack_into(_HEADER_LAYOUT, head, 0, b"BL", _FORMAT, 0, version, count, valid_until_s)
        return head

    # -- builds ---------------------------------------------------------------------------------

    def snapshot(self, version, chunk, chunks, entries, valid_until_s=0):
        """Take chunk of a snapshot (whole 16-byte records, sorted, continuing the previous
        chunk); the last chunk switches to the new list. False: refused, the build discarded."""
        try:
            return self._snapshot(version, chunk, chunks, entries, valid_until_s)
        except OSError:  # flash full or failing: the build goes, the list in use stays
            self._abort()
            return False

    def _snapshot(self, version, chunk, chunks, entries, valid_until_s):
        if self._duplicate(_SNAPSHOT, version, chunk):
            return True
        if chunk == 0:
            if chunks < 1:
                return self._refuse(_SNAPSHOT)
            self._abort()
            self._begin(_SNAPSHOT, version, 0, chunks)
            self._out = open(self._new, "wb")  # noqa: SIM115 - open across the chunks
            self._out.write(self._header(0, 0, 0))  # a placeholder no reader takes for a list
        elif not self._continues(_SNAPSHOT, version, 0, chunk, chunks):
            return self._refuse(_SNAPSHOT)
        if not self._take(entries):
            return self._refuse(_SNAPSHOT)
        self._out.write(entries)
        self._added += len(entries) // _RECORD
        self._next += 1
        if self._next == chunks:
            self._finish_snapshot(valid_until_s)
        return True

    def delta(  # noqa: PLR0917 - a field of the list chunk each
        self, version, base_version, chunk, chunks, entries, removes, valid_until_s=None
    ):
        """Take chunk of a delta from base_version: entries (16-byte records to add or replace)
        and removes (uids), each sorted across the chunks; the last chunk merges and switches.
        valid_until_s None keeps the list's. False: refused, the delta discarded."""
        try:
            return self._delta(
                version, base_version, chunk, chunks, entries, removes, valid_until_s
            )
        except OSError:
            self._abort()
            return False

    def _delta(  # noqa: PLR0917
        self, version, base_version, chunk, chunks, entries, removes, valid_until_s
    ):
        if self._duplicate(_DELTA, version, chunk):
            return True
        if chunk == 0:
            if chunks < 1 or base_version != self.version or version == base_version:
                return self._refuse(_DELTA)
            self._abort()
            self._begin(_DELTA, version, base_version, chunks)
            self._out = open(self._adds, "wb")  # noqa: SIM115 - open across the chunks
            self._out_removes = open(self._dels, "wb")  # noqa: SIM115
        elif not self._continues(_DELTA, version, base_version, chunk, chunks):
            return self._refuse(_DELTA)
        if not (self._take(entries) and self._take_removes(removes)):
            return self._refuse(_DELTA)
        self._out.write(entries)
        self._added += len(entries) // _RECORD
        self._next += 1
        if self._next < chunks:
            return True
        if valid_until_s is None:
            valid_until_s = self.valid_until_s
        return self._finish_delta(valid_until_s)

    def _begin(self, kind, version, base_version, chunks):
        self._build, self._version, self._base = kind, version, base_version
        self._chunks, self._next, self._added, self._removed = chunks, 0, 0, 0

    def _continues(self, kind, version, base_version, chunk, chunks):
        return (
            self._build == kind
            and version == self._version
            and base_version == self._base
            and chunks == self._chunks
            and chunk == self._next
        )

    def _duplicate(self, kind, version, chunk):
        """A chunk QoS 1 delivered again: the one just taken, or one of the version held."""
        if self._build == kind and version == self._version:
            return chunk == self._next - 1
        if self._build == _IDLE and version == self.version:
            return kind == _DELTA or chunk > 0  # a snapshot's chunk 0 always starts anew
        return False

    def _refuse(self, kind):
        """Refuse a chunk: its own kind's build goes; a build of the other kind stays (a stray
        delta chunk does not cost a snapshot in progress)."""
        if self._build == kind:
            self._abort()
        return False

    def _abort(self):
        """Discard any build in progress and its files."""
        for f in (self._out, self._out_removes):
            if f is not None:
                f.close()
        self._out = self._out_removes = None
        if self._build != _IDLE:
            for path in (self._new, self._adds, self._dels):
                _remove(path)
        self._build = _IDLE

    def _take(self, entries):
        """entries are whole well-formed records, keys increasing from the build's last."""
        n = len(entries)
        if n % _RECORD:
            return False
        prev, at_prev, have = self._last, 0, self._added > 0
        for at in range(0, n, _RECORD):
            if not _well_formed(entries, at):
                return False
            if have and _cmp(prev, at_prev, entries, at) >= 0:
                return False
            prev, at_prev, have = entries, at, True
        if n:
            _copy_key(self._last, entries, n - _RECORD)
        return True

    def _take_removes(self, removes):
        key, last = self._key, self._last_removed
        for uid in removes:
            if not _set_key(key, uid):
                return False
            if self._removed and _cmp(last, 0, key, 0) >= 0:
                return False
            _copy_key(last, key, 0)
            self._out_removes.write(key)  # a key padded to a record: reads back in steps of 16
            self._removed += 1
        return True

    def _finish_snapshot(self, valid_until_s):
        out = self._out
        out.seek(0)
        out.write(self._header(self._version, self._added, valid_until_s))
        out.close()
        self._out = None
        self._build = _IDLE
        self._switch()

    # -- merging a delta ------------------------------------------------------------------------

    def _finish_delta(self, valid_until_s):
        self._out.close()
        self._out_removes.close()
        self._out = self._out_removes = None
        count = self._merge(None)  # a dry run: the new count, for a header written first
        if count < 0:
            return self._refuse(_DELTA)  # a band both added and removed: malformed
        with open(self._new, "wb") as out:
            out.write(self._header(self._version, count, valid_until_s))
            self._merge(out)
        for path in (self._adds, self._dels):
            _remove(path)
        self._build = _IDLE
        self._switch()
        return True

    def _merge(self, out):
        """Walk the delta's adds and removes in key order against the list; write the merged
        list to out (None: only count). The new count, or -1 if a band is added and removed."""
        with open(self._adds, "rb") as adds, open(self._dels, "rb") as removes:
            return self._walk(adds, removes, out, bytearray(_BLOCK) if out else None)

    def _walk(self, adds, removes, out, block):
        add, rem = bytearray(_RECORD), bytearray(_RECORD)
        has_add = adds.readinto(add) == _RECORD
        has_rem = removes.readinto(rem) == _RECORD
        at, count = 0, self.count  # at: the next list record not yet copied or passed over
        while has_add or has_rem:
            c = _cmp(add, 0, rem, 0) if has_add and has_rem else (-1 if has_add else 1)
            if c == 0:
                return -1
            key = add if c < 0 else rem
            found = self._lower(key, at)
            held = self._holds(found, key)
            if out is not None:
                self._copy(out, block, at, found)
            at = found + 1 if held else found
            if c < 0:
                if out is not None:
                    out.write(add)
                count += 0 if held else 1
                has_add = adds.readinto(add) == _RECORD
            else:
                count -= 1 if held else 0
                has_rem = removes.readinto(rem) == _RECORD
        if out is not None:
            self._copy(out, block, at, self.count)
        return count

    def _copy(self, out, block, start, end):
        """Copy list records start..end-1 to out, a block at a time."""
        if start >= end:
            return
        f = self._f
        f.seek(_HEADER + start * _RECORD)
        left = (end - start) * _RECORD
        view = memoryview(block)
        while left >= _BLOCK:
            f.readinto(block)
            out.write(block)
            left -= _BLOCK
        if left:
            f.readinto(view[:left])
            out.write(view[:left])


def _valid(path, head):
    """The list file at path opened (r+b) if its header and size hold, else None."""
    try:
        f = open(path, "r+b")  # noqa: SIM115 - open while the list is in use
    except OSError:
        return None
    ok = f.readinto(head) == _HEADER and head[0] == 0x42 and head[1] == 0x4C  # b"BL"
    if ok and head[2] == _FORMAT:
        count = struct.unpack_from(">I", head, 8)[0]
        if os.stat(path)[6] == _HEADER + count * _RECORD:
            return f
    f.close()
    return None


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _set_key(key, uid):
    """Build the sort key of uid in key; False for a uid no band has."""
    n = len(uid)
    if n != 4 and n != 7 and n != 10:  # noqa: PLR1714 - `in {...}` builds a set each call
        return False
    key[0] = n
    for i in range(_UID_MAX):  # a loop, not a slice: a slice object is an allocation
        key[1 + i] = uid[i] if i < n else 0
    return True


def _well_formed(rec, at):
    n = rec[at]
    if n != 4 and n != 7 and n != 10:  # noqa: PLR1714 - `in {...}` builds a set each call
        return False
    for i in range(at + 1 + n, at + _KEY):  # noqa: SIM110 - all(<generator>) allocates
        if rec[i]:
            return False  # padding that is not zero would sort the band where no search looks
    return True  # bytes 11..15 are the gateway's: flags, PIN check and salt, any values


def _copy_key(dest, src, at):
    for i in range(_KEY):
        dest[i] = src[at + i]


def _cmp(a, at_a, b, at_b):
    """Compare the keys at a[at_a:] and b[at_b:]: -1, 0 or 1."""
    for i in range(_KEY):
        x, y = a[at_a + i], b[at_b + i]
        if x != y:
            return -1 if x < y else 1
    return 0
