"""The PIN block a pos reader sends in a Tap's ``pin`` field (SPEC, "PIN block").

Modelled on ISO 9564-1 format 4, with AES-128 under a key of the reader's own:

- the key K: HMAC-SHA256 over the reader id under the gateway's secret key, first 16 bytes
  (``reader_pin_key``). The gateway derives it whenever it needs it, so no table of keys is
  kept; ``bandlink provision reader --role pos`` writes it into the reader's config.json.
- the plain PIN field P: nibble 0 the format (4), nibble 1 the PIN length n (4..12), then the
  n digits, then fill nibbles 0xA up to nibble 15; bytes 8..15 random.
- the account field A: the 16-byte charge id, so a block opens for one charge only.
- block = AES_K(AES_K(P) XOR A).

The firmware's half is firmware/pinblock.py; tests check the two against each other.
"""

from __future__ import annotations

import hashlib
import hmac

from ..aes import decrypt_block, encrypt_block, xor

BLOCK_SIZE = 16
KEY_SIZE = 16
FORMAT = 4
PIN_MIN, PIN_MAX = 4, 12
_FILL = 0xA
_KEY_LABEL = b"bandlink pin key\x00"


def reader_pin_key(secret_key: bytes, reader_id: str) -> bytes:
    """The 16-byte PIN key of one reader, derived from the gateway's secret key."""
    return hmac.new(secret_key, _KEY_LABEL + reader_id.encode(), hashlib.sha256).digest()[:KEY_SIZE]


_OFFLINE_KEY_LABEL = b"bandlink offline pin key\x00"
PIN_CHECK_SIZE = 2
PIN_SALT_SIZE = 2


def offline_pin_key(secret_key: bytes) -> bytes:
    """The venue's 16-byte offline PIN key (SPEC, "Offline PIN check"): every till holds it, to
    check a typed PIN against its band list without the gateway."""
    return hmac.new(secret_key, _OFFLINE_KEY_LABEL, hashlib.sha256).digest()[:KEY_SIZE]


def offline_pin_check(key: bytes, salt: bytes, pin: str) -> bytes:
    """The 2-byte check of ``pin`` under ``salt`` a till's band list carries (SPEC)."""
    if len(salt) != PIN_SALT_SIZE:
        raise ValueError(f"a PIN salt is {PIN_SALT_SIZE} bytes")
    digest = hmac.new(key, bytes(salt) + pin.encode("ascii"), hashlib.sha256).digest()
    return digest[:PIN_CHECK_SIZE]


def seal_pin_block(key: bytes, charge_id: bytes, pin: str, random16: bytes) -> bytes:
    """The block a reader sends for ``pin`` and charge ``charge_id`` (for tools and tests:
    readers seal their own). ``random16``'s last 8 bytes fill the field's random half."""
    if not (PIN_MIN <= len(pin) <= PIN_MAX and pin.isascii() and pin.isdigit()):
        raise ValueError(f"a PIN is {PIN_MIN} to {PIN_MAX} digits")
    _check(key, charge_id)
    if len(random16) != BLOCK_SIZE:
        raise ValueError("random16 must be 16 bytes")
    nibbles = [FORMAT, len(pin), *(int(d) for d in pin)]
    nibbles += [_FILL] * (16 - len(nibbles))
    field = bytes(nibbles[i] << 4 | nibbles[i + 1] for i in range(0, 16, 2)) + random16[8:]
    # ECB on single, independent 16-byte blocks is what format 4 specifies.
    return encrypt_block(key, xor(encrypt_block(key, field), charge_id))


def open_pin_block(key: bytes, charge_id: bytes, block: bytes) -> str | None:
    """The PIN digits in ``block``, or None when it does not decode to a well-formed PIN field
    (another reader's key, another charge, or not a PIN block at all)."""
    _check(key, charge_id)
    if len(block) != BLOCK_SIZE:
        return None
    field = decrypt_block(key, xor(decrypt_block(key, block), charge_id))
    nibbles = [n for byte in field[:8] for n in (byte >> 4, byte & 0xF)]
    length = nibbles[1]
    if nibbles[0] != FORMAT or not PIN_MIN <= length <= PIN_MAX:
        return None
    digits, fill = nibbles[2 : 2 + length], nibbles[2 + length :]
    if any(d > 9 for d in digits) or any(f != _FILL for f in fill):
        return None
    return "".join(str(d) for d in digits)


def _check(key: bytes, charge_id: bytes) -> None:
    if len(key) != KEY_SIZE:
        raise ValueError("a PIN key is 16 bytes")
    if len(charge_id) != BLOCK_SIZE:
        raise ValueError("a charge id is 16 bytes")
