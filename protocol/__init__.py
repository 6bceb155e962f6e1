# bandlink's wire protocol, sans-I/O: bytes in, message objects out, and back. No sockets, clocks
# or threads; time and ids are passed in. The same files run on the gateway (CPython, imported as
# bandlink.protocol) and on the reader (MicroPython, copied to the board and imported as protocol),
# so they keep to the subset both share and import each other only relatively.

from .cbor import MAX_DEPTH, MAX_SIZE, dump_into, dumps, loads
from .errors import ProtocolError
from .messages import IN, MID_SIZE, OUT, VERSION, Message, Result, Tap, decode, encode, encode_into

__all__ = [
    "IN",
    "MAX_DEPTH",
    "MAX_SIZE",
    "MID_SIZE",
    "OUT",
    "VERSION",
    "Message",
    "ProtocolError",
    "Result",
    "Tap",
    "decode",
    "dump_into",
    "dumps",
    "encode",
    "encode_into",
    "loads",
]
