# Messages: the envelope every message shares, and one validated class per message type.
#
# On the wire a message is a CBOR map with small integer keys (the envelope), whose BODY entry is
# a map with small integer keys of its own. Keys 0..23 encode in one byte and sort the same in
# every deterministic CBOR order. A receiver ignores keys it does not know (a v1 gateway reading a
# v1.x reader's tap), and refuses a major version it does not speak.
#
# Classes validate on construction, so a message object is always legal: building a bad one is a
# bug that fails fast, and decoding a peer's bad one raises ProtocolError(BAD_FIELD) at the single
# receive entry point, `decode`. Do not subclass these outside this module.

from .cbor import dump_into, dumps, loads
from .errors import BAD_FIELD, BAD_VERSION, UNKNOWN_TYPE, ProtocolError

VERSION = 1

# Envelope keys.
V, TYPE, READER, BDSEQ, SEQ, MID, TS, DEADLINE, CORR, BODY = range(10)

# Message types.
TAP = 1
RESULT = 2

# Gate directions.
IN = 0
OUT = 1

MID_SIZE = 16
READER_ID_MAX = 32


# -- field validators: (field name, value) -> value, or ProtocolError(BAD_FIELD) ---------------


def _bad(name: str, why: str):
    return ProtocolError(BAD_FIELD, "%s %s" % (name, why))


def _uint(limit: int):
    def check(name: str, value):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < limit:
            raise _bad(name, "must be an integer in 0..%d" % (limit - 1))
        return value

    return check


def _byte_string(shortest: int, longest: int):
    def check(name: str, value):
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise _bad(name, "must be a byte string")
        if not shortest <= len(value) <= longest:
            raise _bad(name, "must be %d..%d bytes" % (shortest, longest))
        return bytes(value)

    return check


def _text(longest: int):
    def check(name: str, value):
        if not isinstance(value, str) or len(value) > longest:
            raise _bad(name, "must be text of at most %d characters" % longest)
        return value

    return check


def _flag(name: str, value):
    if value is not True and value is not False:
        raise _bad(name, "must be true or false")
    return value


def _reader_id(name: str, value):
    # A reader id is an MQTT topic level and a broker username: no wildcards, separators or '$'.
    if not isinstance(value, str) or not 0 < len(value) <= READER_ID_MAX:
        raise _bad(name, "must be text of 1..%d characters" % READER_ID_MAX)
    for ch in value:
        if not (ch.isalpha() or ch.isdigit() or ch in "-_.") or ord(ch) > 127:
            raise _bad(name, "may hold only ASCII letters, digits, '-', '_' and '.'")
    return value


_u8 = _uint(1 << 8)
_u32 = _uint(1 << 32)
_u64 = _uint(1 << 64)
_mid = _byte_string(MID_SIZE, MID_SIZE)


# -- messages -----------------------------------------------------------------------------------


class Message:
    """Envelope fields shared by every message; subclasses add a BODY table."""

    TYPE = 0
    # (attribute, body key, validator, required)
    BODY: tuple = ()
    MID_REQUIRED = True  # operations carry their idempotency key; replies may omit theirs

    def __init__(self, *, reader, ts, mid=None, seq=0, corr=None, deadline=None, **body) -> None:
        self.reader = _reader_id("reader", reader)
        self.ts = _u64("ts", ts)
        self.seq = _u8("seq", seq)
        self.mid = _optional("mid", mid, _mid, self.MID_REQUIRED)
        self.corr = _optional("corr", corr, _mid, False)
        self.deadline = _optional("deadline", deadline, _u64, False)
        for attr, _key, check, required in self.BODY:
            setattr(self, attr, _optional(attr, body.pop(attr, None), check, required))
        if body:
            raise _bad(", ".join(sorted(body)), "is not a field of %s" % type(self).__name__)

    def to_wire(self) -> dict:
        body = {}
        for attr, key, _check, _required in self.BODY:
            value = getattr(self, attr)
            if value is not None:
                body[key] = value
        wire = {V: VERSION, TYPE: self.TYPE, READER: self.reader, SEQ: self.seq, TS: self.ts}
        for key, value in ((MID, self.mid), (CORR, self.corr), (DEADLINE, self.deadline)):
            if value is not None:
                wire[key] = value
        wire[BODY] = body
        return wire

    @classmethod
    def from_wire(cls, wire: dict, body: dict) -> "Message":
        fields = {
            "reader": wire.get(READER),
            "ts": wire.get(TS),
            "seq": wire.get(SEQ, 0),
            "mid": wire.get(MID),
            "corr": wire.get(CORR),
            "deadline": wire.get(DEADLINE),
        }
        for attr, key, _check, _required in cls.BODY:
            fields[attr] = body.get(key)
        return cls(**fields)

    def fields(self) -> tuple:
        names = ("reader", "ts", "seq", "mid", "corr", "deadline")
        return tuple(getattr(self, n) for n in names) + tuple(
            getattr(self, row[0]) for row in self.BODY
        )

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.fields() == other.fields()

    def __repr__(self) -> str:
        return "%s%r" % (type(self).__name__, self.fields())


def _optional(name: str, value, check, required: bool):
    if value is None:
        if required:
            raise _bad(name, "is required")
        return None
    return check(name, value)


class Tap(Message):
    """A band entered a reader's field (reader -> gateway, on evt). ``mid`` is the operation id:
    made and stored by the reader before sending, the same on every resend."""

    TYPE = TAP
    BODY = (
        ("uid", 0, _byte_string(4, 10), True),  # ISO 14443-A UID: 4, 7 or 10 bytes
        ("direction", 1, _uint(2), True),  # IN or OUT, from the gate's configuration
        ("gate", 2, _text(24), False),
    )
    uid: bytes
    direction: int
    gate: str | None


class Result(Message):
    """The gateway's decision on one tap (gateway -> reader, on res); ``corr`` is the tap's mid."""

    TYPE = RESULT
    MID_REQUIRED = False
    BODY = (
        ("granted", 0, _flag, True),
        ("reason", 1, _u32, True),  # protocol/reasons.py
        ("text", 2, _text(32), False),  # for the reader's display
        ("name", 3, _text(24), False),  # guest's first name, when they consented to it
    )
    granted: bool
    reason: int
    text: str | None
    name: str | None


_CLASSES = {cls.TYPE: cls for cls in (Tap, Result)}


def encode(message: Message) -> bytes:
    return dumps(message.to_wire())


def encode_into(buf, message: Message) -> int:
    """Encode into a preallocated buffer (the reader's habit); return the length."""
    return dump_into(buf, message.to_wire())


def decode(data) -> Message:
    """The single receive entry point: bytes in, a valid message out, or ProtocolError."""
    wire = loads(data)
    if not isinstance(wire, dict):
        raise ProtocolError(BAD_FIELD, "a message is a map")
    version = wire.get(V)
    if version != VERSION:
        raise ProtocolError(BAD_VERSION, "version %r, this side speaks %d" % (version, VERSION))
    kind = wire.get(TYPE)
    cls = _CLASSES.get(kind) if isinstance(kind, int) else None
    if cls is None:
        raise ProtocolError(UNKNOWN_TYPE, "message type %r" % (wire.get(TYPE),))
    body = wire.get(BODY, {})
    if not isinstance(body, dict):
        raise ProtocolError(BAD_FIELD, "body is a map")
    return cls.from_wire(wire, body)
