# The envelope every message shares, and the base class of every message.
#
# On the wire a message is a CBOR map with small integer keys (the envelope), whose BODY entry is
# a map with small integer keys of its own. Keys 0..23 encode in one byte and sort the same in
# every deterministic CBOR order. A receiver ignores keys it does not know (a v1 gateway reading
# a v1.x reader's tap) and refuses a major version it does not speak.
#
# Classes validate on construction, so a message object is always legal: building a bad one is a
# bug that fails fast, and decoding a peer's bad one raises ProtocolError(BAD_FIELD) at the single
# receive entry point, `messages.decode`. Do not subclass Message outside protocol/.

from . import fields
from .errors import BAD_FIELD, ProtocolError

VERSION = 1

# Envelope keys.
V, TYPE, READER, BDSEQ, SEQ, MID, TS, DEADLINE, CORR, BODY = range(10)

# (attribute, key, validator) of the envelope fields after version and type.
_ENVELOPE = (
    ("reader", READER, fields.reader_id),
    ("bdseq", BDSEQ, fields.u63),
    ("seq", SEQ, fields.u8),
    ("mid", MID, fields.mid),
    ("ts", TS, fields.u63),
    ("deadline", DEADLINE, fields.u63),
    ("corr", CORR, fields.mid),
)


class Message:
    """Envelope fields shared by every message; a subclass adds its TYPE and BODY table."""

    TYPE = 0
    # (attribute, body key, validator, required)
    BODY: tuple = ()
    # Envelope fields this message must carry; the others are optional. Every message carries ts.
    NEEDS: tuple = ("reader", "mid")
    reader: str | None
    bdseq: int | None
    seq: int
    mid: bytes | None
    ts: int
    deadline: int | None
    corr: bytes | None

    def __init__(
        self,
        *,
        ts,
        reader=None,
        mid=None,
        seq=0,
        corr=None,
        deadline=None,
        bdseq=None,
        **body,
    ) -> None:
        given = {
            "reader": reader,
            "bdseq": bdseq,
            "seq": seq,
            "mid": mid,
            "ts": ts,
            "deadline": deadline,
            "corr": corr,
        }
        for attr, _key, check in _ENVELOPE:
            required = attr == "ts" or attr in self.NEEDS
            setattr(self, attr, _field(attr, given[attr], check, required))
        for attr, _key, check, required in self.BODY:
            setattr(self, attr, _field(attr, body.pop(attr, None), check, required))
        if body:
            raise fields.bad(", ".join(sorted(body)), "is not a field of %s" % type(self).__name__)
        self.check()

    def check(self) -> None:
        """Rules that span fields (a subclass raises fields.bad(...) when one is broken)."""

    def to_wire(self) -> dict:
        wire: dict = {V: VERSION, TYPE: self.TYPE}
        for attr, key, _check in _ENVELOPE:
            value = getattr(self, attr)
            if value is not None:
                wire[key] = value
        body = {}
        for attr, key, _check, _required in self.BODY:
            value = getattr(self, attr)
            if value is not None:
                body[key] = _wire(value)
        wire[BODY] = body
        return wire

    @classmethod
    def from_wire(cls, wire: dict) -> "Message":
        body = wire.get(BODY, {})
        if not isinstance(body, dict):
            raise ProtocolError(BAD_FIELD, "body must be a map")
        given = {attr: wire.get(key) for attr, key, _check in _ENVELOPE}
        if given["seq"] is None:
            given["seq"] = 0
        for attr, key, _check, _required in cls.BODY:
            given[attr] = body.get(key)
        return cls(**given)

    def fields(self) -> tuple:
        names = [row[0] for row in _ENVELOPE] + [row[0] for row in self.BODY]
        return tuple(getattr(self, name) for name in names)

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.fields() == other.fields()

    def __repr__(self) -> str:
        return "%s%r" % (type(self).__name__, self.fields())


def _field(name, value, check, required):
    if value is None:
        if required:
            raise fields.bad(name, "is required")
        return None
    return check(name, value)


def _wire(value):
    # Messages nested in a body (a journal's taps) travel as their own wire maps.
    if isinstance(value, Message):
        return value.to_wire()
    if isinstance(value, list):
        return [_wire(item) for item in value]
    return value
