"""The key hierarchy of bandlink's bands: one master key per venue, every band key derived
from it with NXP AN10922 (AES-128 key diversification), so the store holds no band keys at all.

A band (NTAG 424 DNA) has five AES keys in its NDEF application; bandlink uses three:

    key 0  application master  per band    AN10922(master, 00 || UID || system)  changes keys
    key 1  SDM meta read       venue-wide  AN10922(master, 01 || system)    decrypts PICC data
    key 2  SDM file read       per band    AN10922(master, 02 || UID || system)  the SUN CMAC

The meta read key cannot be per band: it decrypts the PICC data, which is where the UID is
read from (a phone opening the band's URL tells nothing else). It only hides the UID and
counter; the CMAC, under the per-band file read key, is what proves the band. A reader never
holds any of these keys: SUN is verified on the gateway.
"""

from __future__ import annotations

from functools import lru_cache

from ..aes import BLOCK, ZERO_BLOCK, cbc_encrypt, double, encrypt_block, pad_block, xor

KEY_SIZE = 16
# The master key of development venues (the demo's, the tests'): refused in production.
DEVELOPMENT_MASTER_KEY = b"bandlink-dev-key"
SYSTEM_ID = b"bandlink"  # AN10922's "system identifier": binds the keys to this system
APP_MASTER, SDM_META_READ, SDM_FILE_READ = 0, 1, 2  # key numbers in the band's application
_AES128_DIVERSIFICATION = b"\x01"  # AN10922's constant for an AES-128 output key


def diversify(master: bytes, data: bytes) -> bytes:
    """AN10922 section 2.2: a CMAC of 01 || data under ``master``, except that the input is
    always padded to two blocks (32 bytes), which CMAC itself would not do for short inputs."""
    if len(master) != KEY_SIZE:
        raise ValueError("the master key is 16 bytes (AES-128)")
    if not 1 <= len(data) <= 2 * BLOCK - 1:
        raise ValueError("diversification input is 1 to 31 bytes")
    message = _AES128_DIVERSIFICATION + data
    k1 = double(encrypt_block(master, ZERO_BLOCK))
    if len(message) == 2 * BLOCK:
        last = xor(message[BLOCK:], k1)
    else:
        message = pad_block(message, 2 * BLOCK)
        last = xor(message[BLOCK:], double(k1))
    return cbc_encrypt(master, ZERO_BLOCK, message[:BLOCK] + last)[BLOCK:]


class BandKeys:
    """The keys of every band of one venue, from its master key."""

    def __init__(self, master: bytes, system: bytes = SYSTEM_ID) -> None:
        self._master = master
        self._system = system
        self.meta_read = diversify(master, bytes([SDM_META_READ]) + system)
        # A band taps many times a day: keep the derived keys of the busiest few thousand.
        self.file_read = lru_cache(maxsize=4096)(self._file_read)

    def band_key(self, number: int, uid: bytes) -> bytes:
        """Key ``number`` of the band with this UID."""
        if not 4 <= len(uid) <= 10:
            raise ValueError("a band's UID is 4 to 10 bytes")
        return diversify(self._master, bytes([number]) + uid + self._system)

    def _file_read(self, uid: bytes) -> bytes:
        return self.band_key(SDM_FILE_READ, uid)
