# The PIN block a pos reader sends in a Tap's `pin` field (SPEC, "PIN block"): ISO 9564-1
# format 4, with AES-128 under the reader's own key K (config.json's "pin_key").
#
#   P: nibble 0 the format (4), nibble 1 the PIN length n (4..12), the n digits, fill 0xA up to
#      nibble 15; bytes 8..15 random
#   A: the 16-byte charge id (binds the block to one charge)
#   block = AES_K(AES_K(P) XOR A)
#
# Every buffer is made once: sealing a PIN allocates nothing but the random bytes and the AES
# object (cryptolib keys one per use). The digits are zeroed as soon as the block is sealed,
# and the plain field after each use, so no PIN lingers in RAM.
import os

import cryptolib
from micropython import const

BLOCK_SIZE = const(16)
PIN_MIN = const(4)
PIN_MAX = const(12)
_FORMAT = const(4)
_FILL = const(0xA)
_ECB = const(1)


class PinBlock:
    def __init__(self, key):
        if len(key) != BLOCK_SIZE:
            raise ValueError("pin key must be 16 bytes")
        self._key = bytes(key)
        self.digits = bytearray(PIN_MAX)  # the PIN being typed: ASCII digits
        self.length = 0
        self._field = bytearray(BLOCK_SIZE)
        self.block = bytearray(BLOCK_SIZE)  # the last block sealed

    def clear(self):
        for i in range(PIN_MAX):
            self.digits[i] = 0
        self.length = 0

    def add(self, key):
        """One key from the keypad: a digit appended (up to PIN_MAX), "*" clears."""
        if key == "*":
            self.clear()
        elif len(key) == 1 and "0" <= key <= "9" and self.length < PIN_MAX:
            self.digits[self.length] = ord(key)
            self.length += 1

    def complete(self):
        return PIN_MIN <= self.length <= PIN_MAX

    def seal(self, charge_id):
        """Seal the typed PIN for charge_id into self.block (returned); the digits are zeroed."""
        if len(charge_id) != BLOCK_SIZE or not self.complete():
            raise ValueError("need a 16-byte charge id and 4 to 12 digits")
        field = self._field
        n = self.length
        nibbles_at = 2  # nibble 0 is the format, nibble 1 the length
        field[0] = _FORMAT << 4 | n
        for i in range(1, 8):
            field[i] = _FILL << 4 | _FILL
        for i in range(n):
            at = nibbles_at + i
            digit = self.digits[i] - 48  # ord("0")
            if at & 1:
                field[at >> 1] = (field[at >> 1] & 0xF0) | digit
            else:
                field[at >> 1] = digit << 4 | (field[at >> 1] & 0x0F)
        field[8:] = os.urandom(8)
        self.clear()
        aes = cryptolib.aes(self._key, _ECB)
        block = self.block
        aes.encrypt(field, block)
        for i in range(BLOCK_SIZE):
            block[i] ^= charge_id[i]
            field[i] = 0
        aes.encrypt(block, field)
        block[:] = field
        for i in range(BLOCK_SIZE):
            field[i] = 0
        return block


def aes_block(key, data):
    """One AES-128 block encryption (tests check it against FIPS-197, on the board's cryptolib)."""
    return cryptolib.aes(key, _ECB).encrypt(data)
