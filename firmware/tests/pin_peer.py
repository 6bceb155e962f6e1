# Runs on MicroPython: the reader's side of the PIN block tests (test_pin_block.py). Each stdin
# line is "seal <key hex> <charge id hex> <PIN>" or "aes <key hex> <block hex>"; each output
# line is the sealed block, or the AES encryption, in hex ("crash ..." must never appear).
import sys
from binascii import hexlify, unhexlify

import cryptolib
import pinblock

_blocks = {}  # one PinBlock per key, as a reader keeps one for its life


def answer(line):
    words = line.split()
    try:
        if words[0] == "aes":
            # The board's own AES (cryptolib, ECB), as PinBlock uses it.
            aes = cryptolib.aes(unhexlify(words[1]), 1)
            return hexlify(aes.encrypt(unhexlify(words[2]))).decode()
        key = unhexlify(words[1])
        sealer = _blocks.get(key)
        if sealer is None:
            sealer = _blocks[key] = pinblock.PinBlock(key)
        for digit in words[3]:
            sealer.add(digit)
        block = hexlify(sealer.seal(unhexlify(words[2]), bytearray(16))).decode()
        if sealer.length or any(sealer.digits):
            return "crash digits left after sealing"
        return block
    except Exception as exc:  # noqa: BLE001 - reported, and the test fails on it
        return "crash %s %s" % (type(exc).__name__, exc)


while True:
    line = sys.stdin.readline()
    if not line:
        break
    print(answer(line.strip()))
