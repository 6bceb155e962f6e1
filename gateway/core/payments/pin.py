"""PIN blocks (SPEC, PIN block): placeholder until the reader's side lands with its tests."""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def reader_pin_key(secret_key: bytes, reader_id: str) -> bytes:
    return hmac.new(
        secret_key, b"bandlink pin key\x00" + reader_id.encode(), hashlib.sha256
    ).digest()[:16]


def _aes(key: bytes, data: bytes, *, decrypt: bool = False) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.ECB())
    op = cipher.decryptor() if decrypt else cipher.encryptor()
    return op.update(data) + op.finalize()


def seal_pin_block(key: bytes, charge_id: bytes, pin: str, random16: bytes) -> bytes:
    nibbles = [4, len(pin), *(int(d) for d in pin)] + [10] * (16 - 2 - len(pin))
    field = bytes(nibbles[i] << 4 | nibbles[i + 1] for i in range(0, 16, 2)) + random16[8:16]
    inner = _aes(key, field)
    return _aes(key, bytes(a ^ b for a, b in zip(inner, charge_id, strict=True)))


def open_pin_block(key: bytes, charge_id: bytes, block: bytes) -> str | None:
    if len(block) != 16 or len(charge_id) != 16:
        return None
    inner = bytes(a ^ b for a, b in zip(_aes(key, block, decrypt=True), charge_id, strict=True))
    field = _aes(key, inner, decrypt=True)
    nibbles = [n for byte in field[:8] for n in (byte >> 4, byte & 15)]
    length = nibbles[1]
    if nibbles[0] != 4 or not 4 <= length <= 12:
        return None
    digits, fill = nibbles[2 : 2 + length], nibbles[2 + length :]
    if any(d > 9 for d in digits) or any(f != 10 for f in fill):
        return None
    return "".join(str(d) for d in digits)
