# The PIN block a pos reader sends in a Tap's `pin` field (SPEC, "PIN block"): ISO 9564-1
# format 4, with AES-128 under the reader's own key K (config.json's "pin_key").
#
#   P: nibble 0 the format (4), nibble 1 the PIN length n (4..12), the n digits, fill 0xA up to
#      nibble 15; bytes 8..15 random
#   A: the 16-byte charge id (binds the block to one charge)
#   block = AES_K(AES_K(P) XOR A)
#
# Every buffer is made once, and the key scheduled once: sealing a PIN allocates only its 8
# random bytes. The digits are zeroed as soon as the block is sealed (or the guest starts
# again), and the plain field right after, so no PIN lingers in RAM.
#
# Offline a till checks the PIN instead of sealing it (SPEC, "Offline PIN check"): the first 2
# bytes of HMAC-SHA256 (hmac256.py) under the venue's offline PIN key of the entry's 2-byte salt
# and the PIN's ASCII digits, compared with the band list's entry. The digits are zeroed as
# soon as the check is made.
#
# Few names on purpose: on the unix port every attribute and method name is an interned string
# in the heap, and the tests run the reader at its heap limit.
import os

import cryptolib
from micropython import const

_BLOCK = const(16)
PIN_MIN = const(4)  # the shortest PIN (pos.py's prompt asks again below it)
_PIN_MAX = const(12)
_FORMAT = const(4)
_FILL = const(0xA)
_ECB = const(1)
_ZERO = const(48)  # ord("0")


class PinBlock:
    def __init__(self, key):
        if len(key) != _BLOCK:
            raise ValueError("pin key must be 16 bytes")
        self.aes = cryptolib.aes(key, _ECB)  # ECB keeps no state between blocks: reusable
        self.digits = bytearray(_PIN_MAX)  # the PIN being typed, ASCII digits
        self.length = 0
        self._field = bytearray(_BLOCK)

    def clear(self):
        digits = self.digits
        for i in range(_PIN_MAX):
            digits[i] = 0
        self.length = 0

    def add(self, key):
        """One key from the keypad: a digit appended (up to 12), "*" clears."""
        code = ord(key)
        if _ZERO <= code <= _ZERO + 9:
            if self.length < _PIN_MAX:
                self.digits[self.length] = code
                self.length += 1
        else:
            self.clear()  # "*": the guest starts again

    def seal(self, charge, out):
        """Seal the PIN typed for the 16-byte charge id into out (16 bytes) and return it; None
        when 4 to 12 digits were not typed. The digits are zeroed either way."""
        n = self.length
        if not PIN_MIN <= n <= _PIN_MAX:
            self.clear()
            return None
        field = self._field
        field[0] = _FORMAT << 4 | n
        for i in range(1, 8):
            field[i] = _FILL << 4 | _FILL
        for i in range(n):
            digit = self.digits[i] - _ZERO
            at = (i + 2) >> 1  # nibbles 2.. hold the digits, two to a byte
            if i & 1:
                field[at] = (field[at] & 0xF0) | digit
            else:
                field[at] = digit << 4 | (field[at] & 0x0F)
        self.clear()
        field[8:] = os.urandom(8)
        aes = self.aes
        aes.encrypt(field, out)
        for i in range(_BLOCK):
            out[i] ^= charge[i]
        aes.encrypt(out, field)
        out[:] = field
        for i in range(_BLOCK):
            field[i] = 0
        return out

    def check(self, mac, salt, expected):
        """Whether the PIN typed has the offline check ``expected`` (2 bytes) under ``salt`` (2
        bytes), mac being the offline PIN key's HmacSha256; False when 4 to 12 digits were not
        typed. The digits are zeroed either way."""
        n = self.length
        if not PIN_MIN <= n <= _PIN_MAX:
            self.clear()
            return False
        digest = mac.digest(salt, memoryview(self.digits)[:n])
        self.clear()
        return digest[0] == expected[0] and digest[1] == expected[1]
