# Every message of protocol version 1, one validated class each (SPEC.md is their reference).
#
#   type  class    topic              direction          what it says
#   1     Tap      bl/1/<r>/evt       reader -> gateway  a band entered the field
#   2     Result   bl/1/<r>/res       gateway -> reader  the decision on one tap
#   3     Birth    bl/1/<r>/birth     reader -> gateway  online, with its session bdSeq
#   4     Death    bl/1/<r>/death     broker (will)      offline; ignored unless bdSeq matches
#   5     Status   bl/1/<r>/evt       reader -> gateway  heartbeat
#   6     Config   bl/1/<r>/cfg       gateway -> reader  retained configuration
#   7     Command  bl/1/<r>/cmd       gateway -> reader  rebirth, reboot, charge, lists, time
#   8     Journal  bl/1/<r>/evt       reader -> gateway  offline decisions, uploaded on reconnect
#   9     GatewayState  bl/1/$gw/<g>/state  gateway (retained, its will)  online or offline
#
# Constructors take keywords only; body keys are small integers, listed in each class's BODY.

from . import fields
from .cbor import dump_into, dumps, loads
from .envelope import VERSION, Message
from .errors import BAD_FIELD, BAD_VERSION, UNKNOWN_TYPE, ProtocolError

TAP, RESULT, BIRTH, DEATH, STATUS, CONFIG, COMMAND, JOURNAL, GATEWAY_STATE = range(1, 10)

# Roles of a reader.
GATE, POS, PHOTO = 0, 1, 2
# Gate directions.
IN, OUT = 0, 1
# Feedback patterns a result may ask for (the reader picks one from `granted` otherwise).
IDLE, GREEN, RED, RETRY, PIN = 0, 1, 2, 3, 4
# Command operations.
REBIRTH, REBOOT, CHARGE, CANCEL, LIST_SNAPSHOT, LIST_DELTA, TIME_SYNC = range(7)

# Upper bounds; a sender also keeps each frame within its peer's buffer.
JOURNAL_MAX = 8  # taps in one upload; a reader sends as many as fit its buffer
# Bands in one list chunk, entries and removals together: the largest such chunk, to a reader with
# a 32-character id, fits the reference reader's receive buffer (firmware/tests/test_buffers.py).
LIST_CHUNK_MAX = 16
LIST_ENTRY_SIZE = 16  # bytes in one band list entry (SPEC, "The band list")

_role = fields.one_of(GATE, POS, PHOTO)
_name = fields.text(24)
_display = fields.text(32)
_minor_units = fields.s64  # money in integer minor units (cents); may be negative (refunds)


class Tap(Message):
    """A band entered a reader's field. ``mid`` is the operation id: made and stored by the
    reader before sending, the same on every resend. The body depends on the role."""

    TYPE = TAP
    BODY = (
        ("uid", 0, fields.uid, True),
        ("role", 1, _role, True),
        ("direction", 2, fields.one_of(IN, OUT), False),  # gate
        ("gate", 3, _name, False),  # gate
        ("charge", 4, fields.mid, False),  # pos: the charge request this tap answers
        ("pin", 5, fields.byte_string(8, 16), False),  # pos: ISO 9564 PIN block, when entered
        ("ride", 6, _name, False),  # photo
        ("seat", 7, fields.text(16), False),  # photo: vehicle/seat
        ("point", 8, _name, False),  # photo: the photo point
        ("picc", 9, fields.byte_string(16, 24), False),  # SUN: encrypted PICC data (AES 16, LRP 24)
        ("file", 10, fields.byte_string(16, 48), False),  # SUN: encrypted file data
        ("cmac", 11, fields.byte_string(8, 8), False),  # SUN: truncated CMAC
        ("offline", 12, fields.flag, False),  # decided by the reader alone, replayed later
        ("local_granted", 13, fields.flag, False),  # offline: what the guest was shown
        ("local_reason", 14, fields.u32, False),
    )
    reader: str
    mid: bytes
    uid: bytes
    role: int
    direction: int | None
    gate: str | None
    charge: bytes | None
    pin: bytes | None
    ride: str | None
    seat: str | None
    point: str | None
    picc: bytes | None
    file: bytes | None
    cmac: bytes | None
    offline: bool | None
    local_granted: bool | None
    local_reason: int | None

    def check(self) -> None:
        if self.role == GATE and self.direction is None:
            raise fields.bad("direction", "is required on a gate tap")
        if self.role == POS and self.charge is None:
            raise fields.bad("charge", "is required on a pos tap")
        if self.role == PHOTO and self.point is None:
            raise fields.bad("point", "is required on a photo tap")
        if (self.picc is None) != (self.cmac is None) or (self.file and self.picc is None):
            raise fields.bad("picc, cmac", "come together (file only with them)")
        if self.picc is not None and len(self.picc) not in (16, 24):
            raise fields.bad("picc", "is 16 bytes (AES mode) or 24 (LRP mode)")
        if self.file is not None and len(self.file) % 16:
            raise fields.bad("file", "is whole 16-byte blocks")
        if bool(self.offline) != (self.local_granted is not None):
            raise fields.bad("local_granted", "is required exactly on offline taps")
        if self.local_reason is not None and not self.offline:
            raise fields.bad("local_reason", "is only for offline taps")


class Result(Message):
    """The gateway's decision on one tap; ``corr`` is the tap's mid."""

    TYPE = RESULT
    NEEDS = ("reader", "corr")
    BODY = (
        ("granted", 0, fields.flag, True),
        ("reason", 1, fields.u32, True),  # protocol/reasons.py
        ("text", 2, _display, False),  # for the reader's display
        ("name", 3, _name, False),  # guest's first name, only with their consent
        ("balance", 4, _minor_units, False),  # after a charge
        ("pattern", 5, fields.u8, False),  # IDLE..PIN; a reader maps unknown ones by `granted`
    )
    granted: bool
    reason: int
    text: str | None
    name: str | None
    balance: int | None
    pattern: int | None


class Birth(Message):
    """The reader is online. ``bdseq`` counts its sessions (Sparkplug B): the death it leaves
    as its will carries the same number, so a late death of an older session is ignored."""

    TYPE = BIRTH
    NEEDS = ("reader", "bdseq")
    BODY = (
        ("firmware", 0, fields.text(32), True),
        ("role", 1, _role, True),
        ("config_version", 2, fields.u32, False),
        ("list_version", 3, fields.u32, False),
    )
    firmware: str
    role: int
    config_version: int | None
    list_version: int | None


class Death(Message):
    """The reader is gone: published by the broker as the reader's will (or by the reader on a
    clean shutdown). Applies only if ``bdseq`` matches the reader's current birth."""

    TYPE = DEATH
    NEEDS = ("reader", "bdseq")


class Status(Message):
    """Heartbeat, every config interval."""

    TYPE = STATUS
    NEEDS = ("reader",)
    BODY = (
        ("uptime_s", 0, fields.u32, True),
        ("heap_free", 1, fields.u32, True),
        ("rssi", 2, fields.sint(16), False),  # dBm
        ("journal", 3, fields.u16, False),  # offline decisions not yet uploaded
        ("list_version", 4, fields.u32, False),
        ("clock_offset_ms", 5, fields.s64, False),  # reader clock minus gateway clock
    )
    uptime_s: int
    heap_free: int
    rssi: int | None
    journal: int | None
    list_version: int | None
    clock_offset_ms: int | None


class Config(Message):
    """A reader's configuration, retained on its cfg topic; ``version`` increases with every
    change so a reader (and its birth) can say which one it runs."""

    TYPE = CONFIG
    NEEDS = ("reader",)
    BODY = (
        ("version", 0, fields.u32, True),
        ("role", 1, _role, True),
        ("gate", 2, _name, False),
        ("direction", 3, fields.one_of(IN, OUT), False),
        ("ride", 4, _name, False),
        ("point", 5, _name, False),
        ("deadline_ms", 6, fields.u32, False),  # how long a guest waits for the gateway
        ("hold_ms", 7, fields.u32, False),  # how long a light stays on
        ("offline_floor", 8, _minor_units, False),  # pos: largest sale decided offline
        ("offline_cap", 9, _minor_units, False),  # pos: offline total per band
        ("list_version", 10, fields.u32, False),  # the band list the reader should hold
        ("currency", 11, fields.text(3), False),  # ISO 4217
        ("status_s", 12, fields.u32, False),  # heartbeat interval
    )
    version: int
    role: int
    gate: str | None
    direction: int | None
    ride: str | None
    point: str | None
    deadline_ms: int | None
    hold_ms: int | None
    offline_floor: int | None
    offline_cap: int | None
    list_version: int | None
    currency: str | None
    status_s: int | None


class Command(Message):
    """An order to one reader. A reader ignores (and counts) an ``op`` it does not know."""

    TYPE = COMMAND
    BODY = (
        ("op", 0, fields.u8, True),
        ("charge", 1, fields.mid, False),  # CHARGE, CANCEL: the charge request's id
        ("amount", 2, fields.u64, False),  # CHARGE: minor units
        ("currency", 3, fields.text(3), False),  # CHARGE
        ("pin_required", 4, fields.flag, False),  # CHARGE: above the PIN threshold
        ("label", 5, _display, False),  # CHARGE: what the display shows
        ("list_version", 6, fields.u32, False),  # LIST_*: the version these chunks build
        ("base_version", 7, fields.u32, False),  # LIST_DELTA: the version it applies to
        ("chunk", 8, fields.u16, False),  # LIST_*: this chunk's index
        ("chunks", 9, fields.u16, False),  # LIST_*: how many chunks make the list
        # 10: reserved (a draft's list of UIDs to add, superseded by `entries`)
        ("remove", 11, fields.list_of(fields.uid, LIST_CHUNK_MAX), False),  # LIST_DELTA
        ("time_ms", 12, fields.u63, False),  # TIME_SYNC: the gateway's clock
        # LIST_*: band list entries, LIST_ENTRY_SIZE bytes each, in the list's order
        ("entries", 13, fields.byte_string(0, LIST_CHUNK_MAX * LIST_ENTRY_SIZE), False),
    )
    op: int
    charge: bytes | None
    amount: int | None
    currency: str | None
    pin_required: bool | None
    label: str | None
    list_version: int | None
    base_version: int | None
    chunk: int | None
    chunks: int | None
    remove: list | None
    time_ms: int | None
    entries: bytes | None

    def check(self) -> None:
        for name in _COMMAND_NEEDS.get(self.op, ()):
            if getattr(self, name) is None:
                raise fields.bad(name, "is required by command op %d" % self.op)
        if self.chunk is not None and self.chunks is not None and self.chunk >= self.chunks:
            raise fields.bad("chunk", "must be below chunks")
        entries = len(self.entries) if self.entries is not None else 0
        if entries % LIST_ENTRY_SIZE:
            raise fields.bad("entries", "must be whole %d-byte entries" % LIST_ENTRY_SIZE)
        if entries // LIST_ENTRY_SIZE + len(self.remove or ()) > LIST_CHUNK_MAX:
            raise fields.bad("entries, remove", "hold at most %d bands" % LIST_CHUNK_MAX)


_COMMAND_NEEDS = {
    CHARGE: ("charge", "amount", "currency"),
    CANCEL: ("charge",),
    LIST_SNAPSHOT: ("list_version", "chunk", "chunks"),
    LIST_DELTA: ("list_version", "base_version", "chunk", "chunks"),
    TIME_SYNC: ("time_ms",),
}


def _journal_taps(name, value):
    taps = fields.list_of(_journal_tap, JOURNAL_MAX)(name, value)
    if not taps:
        raise fields.bad(name, "must hold at least one tap")
    return taps


def _journal_tap(name, value):
    tap = value if isinstance(value, Tap) else _from_map(Tap, value)
    if not isinstance(tap, Tap) or not tap.offline:
        raise fields.bad(name, "must be offline taps")
    return tap


class Journal(Message):
    """Offline decisions, uploaded on reconnect, oldest first. Each tap keeps its own mid, so a
    journal sent twice takes effect once; the journal's own mid identifies the upload."""

    TYPE = JOURNAL
    BODY = (("taps", 0, _journal_taps, True),)
    taps: list

    def check(self) -> None:
        # The broker vouches only for the journal's reader (its topic); a tap inside claiming
        # another reader would let one reader write into another's record.
        for tap in self.taps:
            if tap.reader != self.reader:
                raise fields.bad("taps", "must all come from the journal's reader")


class GatewayState(Message):
    """Whether the gateway is online: retained, and its MQTT will says offline."""

    TYPE = GATEWAY_STATE
    NEEDS = ()
    BODY = (("online", 0, fields.flag, True),)
    online: bool


CLASSES = (Tap, Result, Birth, Death, Status, Config, Command, Journal, GatewayState)
_BY_TYPE = {cls.TYPE: cls for cls in CLASSES}


def _from_map(cls, wire) -> Message:
    if not isinstance(wire, dict):
        raise ProtocolError(BAD_FIELD, "a message is a map")
    version = wire.get(0)
    # `True == 1` in Python: a boolean must not pass for version 1 or message type 1.
    if version != VERSION or isinstance(version, bool):
        raise ProtocolError(BAD_VERSION, "version %r, this side speaks %d" % (version, VERSION))
    if cls is None:
        kind = wire.get(1)
        cls = _BY_TYPE.get(kind) if isinstance(kind, int) and not isinstance(kind, bool) else None
        if cls is None:
            raise ProtocolError(UNKNOWN_TYPE, "message type %r" % (kind,))
    elif wire.get(1) != cls.TYPE or isinstance(wire.get(1), bool):
        raise ProtocolError(BAD_FIELD, "expected a %s" % cls.__name__)
    message: Message = cls.from_wire(wire)
    return message


def encode(message: Message) -> bytes:
    return dumps(message.to_wire())


def encode_into(buf, message: Message) -> int:
    """Encode into a preallocated buffer (the reader's habit); return the length."""
    return dump_into(buf, message.to_wire())


def decode(data) -> Message:
    """The single receive entry point: bytes in, a valid message out, or ProtocolError."""
    return _from_map(None, loads(data))


def peek_tap(data) -> "tuple | None":
    """(reader, mid, seq) of a frame whose envelope is readable as a v1 Tap's (a CBOR map with
    version 1, type 1, a valid reader id and a 16-byte mid), whatever else it holds; else None.

    For a tap that ``decode`` refused with bad_field: its sender can still be answered (a
    Result with ``corr`` = the mid) instead of waiting for a reply that never comes. A frame
    that is not CBOR, or not a v1 Tap, gets None: what cannot be decoded is never answered."""
    try:
        wire = loads(data)
    except ProtocolError:
        return None
    if not isinstance(wire, dict):
        return None
    version, kind = wire.get(0), wire.get(1)
    if isinstance(version, bool) or version != VERSION or isinstance(kind, bool) or kind != TAP:
        return None
    try:
        reader = fields.reader_id("reader", wire.get(2))
        mid = fields.mid("mid", wire.get(5))
    except ProtocolError:
        return None
    seq = wire.get(4)
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 256:
        seq = 0
    return reader, mid, seq
