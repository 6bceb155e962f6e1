"""AES-128 the way NXP's application notes use it, on ``cryptography``: single blocks, CBC
with an explicit IV, NIST CMAC (SP 800-38B), and the subkey doubling that AN10922 and LRP reuse.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

BLOCK = 16
ZERO_BLOCK = bytes(BLOCK)
_RB = 0x87  # SP 800-38B's constant for 128-bit blocks


def encrypt_block(key: bytes, block: bytes) -> bytes:
    # ECB over exactly one block: each call sees one independent block, nothing chains.
    return Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(block)


def decrypt_block(key: bytes, block: bytes) -> bytes:
    return Cipher(algorithms.AES(key), modes.ECB()).decryptor().update(block)


def cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """CBC without padding: ``data`` is whole blocks (the chips pad themselves)."""
    return Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor().update(data)


def cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    return Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor().update(data)


def cmac(key: bytes, data: bytes) -> bytes:
    mac = CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def double(block: bytes) -> bytes:
    """Multiply by x in GF(2^128): how CMAC makes its subkeys K1 = 2L and K2 = 4L."""
    value = int.from_bytes(block, "big") << 1
    if value >> 128:
        value = (value ^ _RB) & ((1 << 128) - 1)
    return value.to_bytes(BLOCK, "big")


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def pad_block(data: bytes, size: int = BLOCK) -> bytes:
    """ISO/IEC 9797-1 method 2: 0x80, then zeros up to ``size``."""
    return data + b"\x80" + bytes(size - len(data) - 1)
