# Field validators: (field name, value) -> the value as stored, or ProtocolError(BAD_FIELD).
#
# One validator per kind of field, built once at import (closures over their limits), so a
# message class is a table of (attribute, key, validator, required) rows. They accept what the
# codec produces (ints, bytes, str, bool, list, dict) and what a sender passes (bytearray and
# memoryview become bytes, so a message never aliases a reused buffer).

from .errors import BAD_FIELD, ProtocolError


def bad(name, why):
    return ProtocolError(BAD_FIELD, "%s %s" % (name, why))


def uint(limit):
    def check(name, value):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < limit:
            raise bad(name, "must be an integer in 0..%d" % (limit - 1))
        return value

    return check


def sint(bits):
    low, high = -(1 << (bits - 1)), 1 << (bits - 1)

    def check(name, value):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value < high:
            raise bad(name, "must be an integer in %d..%d" % (low, high - 1))
        return value

    return check


def byte_string(shortest, longest):
    def check(name, value):
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise bad(name, "must be a byte string")
        if not shortest <= len(value) <= longest:
            raise bad(name, "must be %d..%d bytes" % (shortest, longest))
        return bytes(value)

    return check


def text(longest):
    def check(name, value):
        if not isinstance(value, str) or len(value) > longest:
            raise bad(name, "must be text of at most %d characters" % longest)
        return value

    return check


def flag(name, value):
    if value is not True and value is not False:
        raise bad(name, "must be true or false")
    return value


def one_of(*allowed):
    def check(name, value):
        if isinstance(value, bool) or value not in allowed:
            raise bad(name, "must be one of %r" % (allowed,))
        return value

    return check


def list_of(item, longest):
    def check(name, value):
        if not isinstance(value, (list, tuple)) or len(value) > longest:
            raise bad(name, "must be a list of at most %d items" % longest)
        return [item(name + "[]", v) for v in value]

    return check


def reader_id(name, value):
    # A reader id is an MQTT topic level and a broker username: no wildcards, separators or '$'.
    if not isinstance(value, str) or not 0 < len(value) <= READER_ID_MAX:
        raise bad(name, "must be text of 1..%d characters" % READER_ID_MAX)
    for ch in value:
        if not (ch.isalpha() or ch.isdigit() or ch in "-_.") or ord(ch) > 127:
            raise bad(name, "may hold only ASCII letters, digits, '-', '_' and '.'")
    return value


READER_ID_MAX = 32
MID_SIZE = 16

u8 = uint(1 << 8)
u16 = uint(1 << 16)
u32 = uint(1 << 32)
u64 = uint(1 << 64)
# Times and session numbers: below 2^63, so a signed 64-bit column (SQL BIGINT) holds them.
u63 = uint(1 << 63)
s32 = sint(32)
s64 = sint(64)
mid = byte_string(MID_SIZE, MID_SIZE)
uid = byte_string(4, 10)  # ISO 14443-A UID: 4, 7 or 10 bytes
