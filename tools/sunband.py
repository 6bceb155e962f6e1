"""An emulated NTAG 424 DNA band, the far side of a simulated reader's antenna: personalised
with keys diversified from a venue's master key, it makes a real SUN message (AES or LRP mode)
with a fresh counter every time it is read, as the chip does. The demo's bands, the tests'
bands and the load generator's bands are these."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from bandlink.gateway.core.bands import sun
from bandlink.gateway.core.bands.keys import DEVELOPMENT_MASTER_KEY, BandKeys

# NFC Forum URI record: header (MB, ME, SR, TNF 1 "well known"), type "U", prefix 04 "https://".
_NDEF_HEADER = 0xD1
_URI_TYPE = b"U"
_HTTPS = 0x04


@dataclass
class SunBand:
    uid: bytes
    keys: BandKeys
    counter: int = 0  # the last read's; the next read has counter + 1
    mode: str = sun.AES
    file_data: bytes | None = None
    base_url: str = "https://bandlink.example/b"

    def read(self) -> tuple[bytes, bytes | None, bytes]:
        """One read of the band: (picc, enc, cmac), with the counter stepped."""
        self.counter += 1
        file_key = self.keys.file_read(self.uid)
        meta_key = self.keys.meta_read
        return sun.seal(
            self.mode, meta_key, file_key, self.uid, self.counter, file_data=self.file_data
        )

    def url(self) -> str:
        """The URL a phone opens when the band touches it (one read)."""
        picc, enc, mac = self.read()
        query = f"picc_data={picc.hex().upper()}"
        if enc is not None:
            query += f"&enc={enc.hex().upper()}"
        return f"{self.base_url}?{query}&cmac={mac.hex().upper()}"

    def ndef(self) -> bytes:
        """The band's NDEF file as a reader reads it (one read): one short URI record."""
        return uri_record(self.url())


def uri_record(url: str) -> bytes:
    """One NFC Forum URI record (short record, "https://" abbreviated to its prefix code)."""
    if not url.startswith("https://"):
        raise ValueError("bandlink bands carry https URLs")
    payload = bytes([_HTTPS]) + url[len("https://") :].encode()
    if len(payload) > 255:
        raise ValueError("a short record holds 255 bytes")
    return bytes([_NDEF_HEADER, len(_URI_TYPE), len(payload)]) + _URI_TYPE + payload


class SunBands:
    """A venue's bands by UID, each keeping its own counter, as physical bands would."""

    def __init__(self, master: bytes, *, mode: str = sun.AES) -> None:
        self.keys = BandKeys(master)
        self.mode = mode
        self._bands: dict[bytes, SunBand] = {}

    def band(self, uid: bytes) -> SunBand:
        if uid not in self._bands:
            self._bands[uid] = SunBand(uid, self.keys, mode=self.mode)
        return self._bands[uid]

    def read(self, uid: bytes) -> dict[str, bytes]:
        """A Tap's SUN fields for one read of the band: picc, cmac (and file, if any)."""
        picc, enc, mac = self.band(uid).read()
        fields = {"picc": picc, "cmac": mac}
        if enc is not None:
            fields["file"] = enc
        return fields


@lru_cache(maxsize=1)
def development_bands() -> SunBands:
    """The bands of a development venue (the development master key). One set per process, so
    each band's counter only grows, as a real band's does."""
    return SunBands(DEVELOPMENT_MASTER_KEY)
