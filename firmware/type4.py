"""The NDEF file of an NFC Forum Type 4 Tag (the NTAG 424 DNA) read with ISO 7816-4 APDUs, for
every front end that can carry an APDU to the band (pn532.py, rc522.py).

Four kinds of APDU: SELECT the NDEF application by name (D2760000850101), SELECT its NDEF file
E104, READ BINARY the 2-byte NLEN at offset 0, then NLEN bytes from offset 2 in chunks the front
end can carry in one exchange. Reading the file is what makes a SUN band mirror a fresh SUN
message into its URI.

``Type4`` is the base of a driver: the driver sets ``sak`` when it lists a band and implements
``exchange(apdu, out)`` (one APDU in, its answer with the status word copied into ``out``,
raising ``NfcError`` or OSError when the band or the chip failed). The status words and the
torn-read rule live here once.
"""

from micropython import const

_ISO_DEP = const(0x20)  # SAK bit 6: the band speaks ISO 14443-4 (ISO-DEP)
# ISO 7816-4 SELECT by DF name D2760000850101 (the NDEF application, Le 00), and SELECT of its
# NDEF file E104, first or only occurrence, no answer data (P2 0C). At 13 bytes the longest APDU
# sent: inside the smallest ISO-DEP frame a band may ask for (FSC 16 with PCB and CRC).
_SELECT_NDEF_APP = b"\x00\xa4\x04\x00\x07\xd2\x76\x00\x00\x85\x01\x01\x00"
_SELECT_NDEF_FILE = b"\x00\xa4\x00\x0c\x02\xe1\x04"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class Frontend(Protocol):
        """What board/esp32.py uses of a front end, whichever chip it is."""

        atqa: int
        sak: int

        def version(self) -> bytes: ...
        def start(self) -> None: ...
        async def poll_uid(self, uid: bytearray) -> int: ...
        async def read_ndef(self, buf: bytearray) -> int: ...


class NfcError(Exception):
    """The front end or the band failed: a bad frame, no answer, a refused command."""


class Type4:
    def __init__(self, chunk: int) -> None:
        self.sak = 0  # SEL_RES of the band listed last
        self._chunk = chunk  # READ BINARY bytes per APDU
        self._read_binary = bytearray(b"\x00\xb0\x00\x00\x00")  # offset (2 bytes), Le
        self._answer = bytearray(chunk + 2)  # an APDU's answer: data, then the status word

    async def exchange(self, data: bytes | bytearray | memoryview, out: bytearray) -> int:
        raise NotImplementedError

    async def read_ndef(self, buf: bytearray) -> int:
        """The NDEF message of the band listed last into buf (the NDEF file after its NLEN): its
        length; 0 when the band has none (not ISO-DEP, no NDEF application or file, more than
        buf holds); -1 when the read broke off (no answer, a bad frame, or a read of the file
        that failed once it was selected: a band slipping away, to be tapped again rather than
        sent without its reading and refused as a copy)."""
        if not self.sak & _ISO_DEP:
            return 0  # an NTAG21x (Type 2): its NDEF is in pages, and it has no SUN
        try:
            if await self._apdu(_SELECT_NDEF_APP) < 0 or await self._apdu(_SELECT_NDEF_FILE) < 0:
                return 0
            answer = self._answer
            if not await self._read(0, 2):
                return -1
            size = answer[0] << 8 | answer[1]
            if size > len(buf):
                return 0
            chunk = self._chunk
            for at in range(0, size, chunk):
                n = min(size - at, chunk)
                if not await self._read(2 + at, n):
                    return -1
                for i in range(n):
                    buf[at + i] = answer[i]
            return size
        except (NfcError, OSError):
            return -1

    async def _read(self, offset: int, n: int) -> bool:
        """READ BINARY n bytes at offset into _answer; whether exactly those came, with 9000."""
        apdu = self._read_binary
        apdu[2], apdu[3], apdu[4] = offset >> 8, offset & 0xFF, n
        return await self._apdu(apdu) == n

    async def _apdu(self, apdu: bytes | bytearray) -> int:
        """One APDU to the band: its answer's data length (in _answer), or -1 when the status
        word is not 9000 (no NDEF application, no such file, ...)."""
        answer = self._answer
        n = await self.exchange(apdu, answer)
        if n < 2 or answer[n - 2] != 0x90 or answer[n - 1]:
            return -1
        return n - 2
