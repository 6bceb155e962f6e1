# HMAC-SHA256 (RFC 2104, FIPS 198-1) for the reader: MicroPython has hashlib.sha256 but no hmac
# module. A till computes the offline PIN check with it (SPEC, "Offline PIN check"; pinblock.py).
#
#   HMAC(K, m) = H((K' ^ opad) || H((K' ^ ipad) || m)), K' = K (or H(K) when longer than a
#   64-byte block) zero-padded to 64 bytes, ipad = 0x36 and opad = 0x5C repeated.
#
# The key's two padded blocks are made once, for the object's life. Each digest allocates what
# hashlib does (two hash objects and their 32-byte digests): no buffer of ours avoids that, and a
# till computes one per PIN typed offline, not per tap.
import hashlib

from micropython import const

_BLOCK = const(64)  # SHA-256's block size, bytes
_IPAD = const(0x36)
_OPAD = const(0x5C)


class HmacSha256:
    def __init__(self, key):
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        self._inner = bytearray(_BLOCK)
        self._outer = bytearray(_BLOCK)
        for i in range(_BLOCK):
            k = key[i] if i < len(key) else 0
            self._inner[i] = k ^ _IPAD
            self._outer[i] = k ^ _OPAD

    def digest(self, message, more=b""):
        """The 32-byte HMAC of message followed by more (two parts, so a caller hashes a salt
        and a secret without first copying them into one buffer)."""
        inner = hashlib.sha256(self._inner)
        inner.update(message)
        inner.update(more)
        outer = hashlib.sha256(self._outer)
        outer.update(inner.digest())
        return outer.digest()
