# Runs on MicroPython: the reader's side of test_hmac256.py. Each stdin line is
#   "hmac <key hex> <message hex> <more hex>"         -> the HMAC-SHA256 in hex
#   "check <key hex> <salt hex> <PIN> <check hex>"    -> 1 if the PIN has that offline check, else 0
# ("-" for empty hex); "crash ..." must never appear.
import sys
from binascii import hexlify, unhexlify

from hmac256 import HmacSha256
from pinblock import PinBlock

_pins = PinBlock(bytes(16))  # its PIN key does not matter here: only check() is used


def data(word):
    return b"" if word == "-" else unhexlify(word)


def answer(words):
    if words[0] == "hmac":
        return hexlify(HmacSha256(data(words[1])).digest(data(words[2]), data(words[3]))).decode()
    for digit in words[3]:
        _pins.add(digit)
    matches = _pins.check(HmacSha256(data(words[1])), data(words[2]), data(words[4]))
    if _pins.length or any(_pins.digits):
        return "crash digits left after the check"
    return "1" if matches else "0"


while True:
    line = sys.stdin.readline()
    if not line:
        break
    try:
        print(answer(line.split()))
    except Exception as exc:  # noqa: BLE001 - reported, and the test fails on it
        print("crash %s %s" % (type(exc).__name__, exc))
