# The wire subset of CBOR (RFC 8949), small enough for the reader and strict enough for a gateway.
#
# Subset: unsigned and negative integers (64-bit), byte strings, text strings, arrays, maps with
# integer or text keys, false, true, null. Everything else that is well-formed (floats, tags,
# undefined, other simple values, indefinite lengths) is refused as UNSUPPORTED; everything that is
# not well-formed is refused as MALFORMED. No other exception ever leaves `loads`.
#
# Encoding is deterministic (RFC 8949 section 4.2.1): shortest heads, definite lengths, map keys in
# the bytewise order of their encodings. That makes a message's bytes a function of its content,
# which the tests check against cbor2.
#
# Portable: this file runs unchanged on CPython and MicroPython (no struct formats beyond bytes, no
# typing at run time, no dataclasses).

from .errors import (
    INVALID,
    MALFORMED,
    TOO_DEEP,
    TOO_LARGE,
    TRAILING,
    UNSUPPORTED,
    ProtocolError,
)

MAX_SIZE = 4096  # bytes in one message; a gate tap is 75 (103 with SUN fields)
MAX_DEPTH = 8  # nested arrays/maps; our deepest message (a journal) nests 5
# Items in one array or map. The largest in any message is a list chunk's 80 bands. A bound
# matters on the reader: a 1 KiB frame can claim a 1,000-item array, and growing a list that
# long needs one contiguous block that a fragmented 100 KB heap may not have (MemoryError).
MAX_ITEMS = 128

_UINT, _NINT, _BYTES, _TEXT, _ARRAY, _MAP, _TAG, _SIMPLE = 0, 1, 2, 3, 4, 5, 6, 7
_FALSE, _TRUE, _NULL = 20, 21, 22
_U64_LIMIT = 1 << 64


# -- encoding ---------------------------------------------------------------------------------


class _Writer:
    # Writes into a caller's fixed buffer (a reader encodes every tap into one preallocated
    # bytearray), or into one that grows as needed up to the limit (`dumps`): allocating the
    # whole limit for every message would fragment a small heap.
    def __init__(self, buf, limit: int, grow: bool) -> None:
        self.buf = buf
        self.pos = 0
        self.limit = limit
        self.grow = grow

    def _room(self, n: int) -> None:
        if self.pos + n > self.limit:
            raise ProtocolError(TOO_LARGE, "encoded message exceeds %d bytes" % self.limit)

    def byte(self, value: int) -> None:
        self._room(1)
        if self.grow:
            self.buf.append(value)
        else:
            self.buf[self.pos] = value
        self.pos += 1

    def raw(self, data) -> None:
        n = len(data)
        self._room(n)
        if self.grow:
            self.buf.extend(data)
        else:
            self.buf[self.pos : self.pos + n] = data
        self.pos += n

    def head(self, major: int, n: int) -> None:
        if n < 24:
            self.byte(major << 5 | n)
            return
        if n < 0x100:
            ai, size = 24, 1
        elif n < 0x10000:
            ai, size = 25, 2
        elif n < 0x100000000:
            ai, size = 26, 4
        else:
            ai, size = 27, 8
        self.byte(major << 5 | ai)
        for shift in range(8 * (size - 1), -1, -8):
            self.byte(n >> shift & 0xFF)


def _key_order(key):
    # The bytewise order of encoded keys, without encoding them: the major type decides first,
    # then the head (value for integers, length for strings), then the string's bytes.
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise ProtocolError(UNSUPPORTED, "map keys must be int or str, not %s" % type(key).__name__)
    if isinstance(key, int):
        return (_UINT, key, b"") if key >= 0 else (_NINT, -1 - key, b"")
    data = key.encode()
    return (_TEXT, len(data), data)


def _encode(w: _Writer, obj, depth: int) -> None:
    if obj is False or obj is True or obj is None:
        w.byte(0xE0 | (_NULL if obj is None else _TRUE if obj else _FALSE))
    elif isinstance(obj, int):
        if not -_U64_LIMIT <= obj < _U64_LIMIT:
            raise ProtocolError(UNSUPPORTED, "integer outside 64 bits")
        w.head(*((_UINT, obj) if obj >= 0 else (_NINT, -1 - obj)))
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        w.head(_BYTES, len(obj))
        w.raw(obj)
    elif isinstance(obj, str):
        data = obj.encode()
        w.head(_TEXT, len(data))
        w.raw(data)
    elif isinstance(obj, (list, tuple)):
        _check_depth(depth)
        _check_items(len(obj))
        w.head(_ARRAY, len(obj))
        for item in obj:
            _encode(w, item, depth + 1)
    elif isinstance(obj, dict):
        _check_depth(depth)
        _check_items(len(obj))
        w.head(_MAP, len(obj))
        for key in sorted(obj, key=_key_order):
            _encode(w, key, depth + 1)
            _encode(w, obj[key], depth + 1)
    else:
        raise ProtocolError(UNSUPPORTED, "cannot encode %s" % type(obj).__name__)


def _check_items(n: int) -> None:
    if n > MAX_ITEMS:
        raise ProtocolError(TOO_LARGE, "%d items, limit %d" % (n, MAX_ITEMS))


def _check_depth(depth: int) -> None:
    if depth >= MAX_DEPTH:
        raise ProtocolError(TOO_DEEP, "nesting deeper than %d" % MAX_DEPTH)


def dump_into(buf, obj) -> int:
    """Encode obj into the start of buf (a bytearray); return the number of bytes written."""
    w = _Writer(buf, len(buf), False)
    _encode(w, obj, 0)
    return w.pos


def dumps(obj, max_size: int = MAX_SIZE) -> bytes:
    """Encode obj deterministically; ProtocolError if it is outside the subset or too large."""
    w = _Writer(bytearray(), max_size, True)
    _encode(w, obj, 0)
    return bytes(w.buf)


# -- decoding ---------------------------------------------------------------------------------


class _Reader:
    def __init__(self, data) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def take(self, n: int):
        end = self.pos + n
        if end > len(self.data):
            raise ProtocolError(MALFORMED, "truncated at byte %d" % self.pos)
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def head(self):
        initial = self.take(1)[0]
        major, ai = initial >> 5, initial & 0x1F
        if ai < 24:
            return major, ai
        if ai < 28:
            n = 0
            for b in self.take(1 << (ai - 24)):
                n = n << 8 | b
            return major, n
        if ai < 31:
            raise ProtocolError(MALFORMED, "reserved additional information %d" % ai)
        if major == _SIMPLE:
            raise ProtocolError(MALFORMED, "break outside an indefinite-length item")
        if major in (_UINT, _NINT, _TAG):
            raise ProtocolError(MALFORMED, "indefinite length on major type %d" % major)
        raise ProtocolError(UNSUPPORTED, "indefinite-length items are not in the wire subset")


def _decode(r: _Reader, depth: int):
    start = r.pos
    major, n = r.head()
    if major == _UINT:
        return n
    if major == _NINT:
        return -1 - n
    if major == _BYTES:
        return bytes(r.take(n))
    if major == _TEXT:
        return _text(r.take(n))
    if major in (_ARRAY, _MAP):
        if depth >= MAX_DEPTH:
            raise ProtocolError(TOO_DEEP, "nesting deeper than %d" % MAX_DEPTH)
        # Every item takes at least one byte: refuse impossible counts before allocating.
        if n > len(r.data) - r.pos:
            raise ProtocolError(MALFORMED, "count %d exceeds the bytes left" % n)
        if n > MAX_ITEMS:
            raise ProtocolError(TOO_LARGE, "%d items, limit %d" % (n, MAX_ITEMS))
        if major == _ARRAY:
            return [_decode(r, depth + 1) for _ in range(n)]
        return _decode_map(r, n, depth)
    if major == _TAG:
        raise ProtocolError(UNSUPPORTED, "tag %d is not in the wire subset" % n)
    return _simple(r, start, n)


def _decode_map(r: _Reader, n: int, depth: int) -> dict:
    result = {}
    for _ in range(n):
        key = _decode(r, depth + 1)
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise ProtocolError(UNSUPPORTED, "map key of type %s" % type(key).__name__)
        if key in result:
            raise ProtocolError(INVALID, "map key %r repeated" % (key,))
        result[key] = _decode(r, depth + 1)
    return result


def _text(chunk) -> str:
    if _LAX_UTF8 and not _utf8_well_formed(chunk):
        raise ProtocolError(MALFORMED, "text string is not valid UTF-8")
    try:
        return str(chunk, "utf-8")
    except Exception:  # noqa: BLE001 - UnicodeError on CPython
        raise ProtocolError(MALFORMED, "text string is not valid UTF-8") from None


def _lax_utf8() -> bool:
    # MicroPython's str() checks UTF-8's structure but takes overlong forms, surrogates and code
    # points above U+10FFFF; CPython's refuses them. Both sides must refuse the same frames, so
    # where str() is lax the decoder checks by itself.
    try:
        str(b"\xc0\x80", "utf-8")  # an overlong NUL
    except Exception:  # noqa: BLE001 - any refusal means str() checks
        return False
    return True


_LAX_UTF8 = _lax_utf8()

# Well-formed UTF-8 (RFC 3629, table 3-7 of Unicode): for each range of lead bytes, how many
# continuation bytes follow and the range the first of them must fall in.
_UTF8_LEADS = (
    (0xC2, 0xDF, 1, 0x80, 0xBF),
    (0xE0, 0xE0, 2, 0xA0, 0xBF),  # no overlong 3-byte forms
    (0xE1, 0xEC, 2, 0x80, 0xBF),
    (0xED, 0xED, 2, 0x80, 0x9F),  # no surrogates
    (0xEE, 0xEF, 2, 0x80, 0xBF),
    (0xF0, 0xF0, 3, 0x90, 0xBF),  # no overlong 4-byte forms
    (0xF1, 0xF3, 3, 0x80, 0xBF),
    (0xF4, 0xF4, 3, 0x80, 0x8F),  # nothing above U+10FFFF
)


def _utf8_lead(lead: int):
    for row in _UTF8_LEADS:
        if row[0] <= lead <= row[1]:
            return row
    return None


def _utf8_well_formed(data) -> bool:
    i, n = 0, len(data)
    while i < n:
        lead = data[i]
        if lead < 0x80:
            i += 1
            continue
        row = _utf8_lead(lead)
        if row is None:
            return False
        more, low, high = row[2], row[3], row[4]
        if i + more >= n or not low <= data[i + 1] <= high:
            return False  # truncated, or a bad first continuation byte
        for k in range(i + 2, i + 1 + more):
            if not 0x80 <= data[k] <= 0xBF:
                return False
        i += 1 + more
    return True


def _simple(r: _Reader, start: int, n: int):
    ai = r.data[start] & 0x1F
    if ai == 24 and n < 32:
        raise ProtocolError(MALFORMED, "two-byte simple value %d below 32" % n)
    if ai < 24 and n == _FALSE:
        return False
    if ai < 24 and n == _TRUE:
        return True
    if ai < 24 and n == _NULL:
        return None
    if ai > 24:
        raise ProtocolError(UNSUPPORTED, "floating-point values are not in the wire subset")
    raise ProtocolError(UNSUPPORTED, "simple value %d is not in the wire subset" % n)


def loads(data, max_size: int = MAX_SIZE):
    """Decode exactly one item from data; ProtocolError (with a stable code) on anything else."""
    if len(data) > max_size:
        raise ProtocolError(TOO_LARGE, "%d bytes, limit %d" % (len(data), max_size))
    if not len(data):
        raise ProtocolError(MALFORMED, "empty message")
    r = _Reader(data)
    obj = _decode(r, 0)
    if r.pos != len(r.data):
        raise ProtocolError(TRAILING, "%d bytes after the item" % (len(r.data) - r.pos))
    return obj
