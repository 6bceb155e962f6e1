"""The gateway's encoder for what it publishes: cbor2's C encoder on the message's wire map.

The portable codec (protocol/cbor.py) must run on the reader, and costs the gateway about a
third of its time per tap under load (``bench store`` under cProfile). cbor2's ``canonical``
mode sorts map keys length-first (RFC 7049) where bandlink's rule is bytewise (RFC 8949): the two
agree for the integer keys 0..23 every bandlink map uses, and gateway/tests/test_wire.py proves
the bytes identical for every message type. Decoding stays with the portable codec: it is the
single receive entry point and refuses what cbor2 would accept (floats, tags, ...).
"""

from __future__ import annotations

import cbor2

from bandlink.protocol import Message


def encode(message: Message) -> bytes:
    encoded: bytes = cbor2.dumps(message.to_wire(), canonical=True)
    return encoded
