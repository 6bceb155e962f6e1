# bandlink's wire protocol, sans-I/O: bytes in, message objects out, and back. No sockets, clocks
# or threads; time and ids are passed in. The same files run on the gateway (CPython, imported as
# bandlink.protocol) and on the reader (MicroPython, copied to the board and imported as protocol),
# so they keep to the subset both share and import each other only relatively. SPEC.md beside
# this file is the reference a third party needs to write a compatible reader.

from .cbor import MAX_DEPTH, MAX_SIZE, dump_into, dumps, loads
from .envelope import VERSION, Message
from .errors import ProtocolError
from .fields import MID_SIZE
from .messages import (
    CLASSES,
    GATE,
    IN,
    OUT,
    PHOTO,
    POS,
    Birth,
    Command,
    Config,
    Death,
    GatewayState,
    Journal,
    Result,
    Status,
    Tap,
    decode,
    encode,
    encode_into,
    peek_tap,
)

__all__ = [
    "CLASSES",
    "GATE",
    "IN",
    "MAX_DEPTH",
    "MAX_SIZE",
    "MID_SIZE",
    "OUT",
    "PHOTO",
    "POS",
    "VERSION",
    "Birth",
    "Command",
    "Config",
    "Death",
    "GatewayState",
    "Journal",
    "Message",
    "ProtocolError",
    "Result",
    "Status",
    "Tap",
    "decode",
    "dump_into",
    "dumps",
    "encode",
    "encode_into",
    "loads",
    "peek_tap",
]
