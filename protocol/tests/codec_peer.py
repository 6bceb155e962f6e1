# Runs on MicroPython: the reader's side of the portable-codec tests. Each stdin line is a frame
# in hex, prefixed "c " (a CBOR item), "m " (a message) or "p " (a tap's envelope, peeked).
# Each output line is "ok <re-encoded hex>" ("ok <reader> <mid> <seq>" for a peek, or "none"),
# "err <ProtocolError code>", or "crash <exception>" — the last must never appear.
import sys
from binascii import hexlify, unhexlify

import protocol


def answer(line):
    kind, frame = line[:1], unhexlify(line[2:])
    try:
        if kind == "p":
            peeked = protocol.peek_tap(frame)
            if peeked is None:
                return "none"
            reader, mid, seq = peeked
            return "ok %s %s %d" % (reader, hexlify(mid).decode(), seq)
        if kind == "m":
            out = protocol.encode(protocol.decode(frame))
        else:
            out = protocol.dumps(protocol.loads(frame))
        return "ok " + hexlify(out).decode()
    except protocol.ProtocolError as err:
        return "err " + err.code
    except Exception as exc:  # noqa: BLE001 - reported, and the test fails on it
        return "crash %s %s" % (type(exc).__name__, exc)


while True:
    line = sys.stdin.readline()
    if not line:
        break
    print(answer(line.strip()))
