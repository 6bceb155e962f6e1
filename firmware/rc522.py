"""MFRC522 (RC522) NFC front end over SPI as an ISO 14443-A reader (NXP MFRC522 datasheet).

Theory of operation. The chip is a register file behind SPI: an address byte ``reg << 1``
(bit 7 set to read), then data; a read of n bytes sends n addresses and a closing 00, the data
coming back one byte late. It has no protocol of its own above the frame: the host builds every
ISO 14443 frame into the 64-byte FIFO and runs Transceive, which sends it (StartSend), starts
the timer when the last bit is out (TAuto) and receives the answer into the FIFO. The host
polls ComIrqReg: RxIRq (an answer; ErrorReg says if it is a good one), ErrIRq, or TimerIRq
(no answer in time). The timer runs at 40 kHz (25 us a tick) and each exchange loads its own
limit, so an empty field costs about 1 ms a poll.

CRC_A: the chip appends it to a frame (TxCRCEn, with ModeReg's 6363 preset) for SELECT, HLTA,
RATS and ISO-DEP blocks. The answer's CRC is left in the FIFO (RxCRCEn off) and checked here (a
CRC over a frame and its own CRC is 0): a dozen operations a byte, and the FIFO's length never
depends on how RxCRCEn treats the received CRC, which this driver has not seen on a real chip.

A poll, per ISO 14443-3: WUPA (7-bit short frame; it also wakes a band we halted), then per
cascade level anticollision (SEL 20: 4 bytes and their BCC, checked) and SELECT (SEL 70 ..: SAK,
bit 0x04 = UID not complete, the first 4 bytes were the cascade tag 88 and 3 UID bytes). A band
stays selected for ``read_ndef``; the next poll first puts it to rest (HLTA, or ISO-DEP
DESELECT after a read; a band that does not answer DESELECT gets the field cut for 6 ms), so
WUPA finds it again while it is held and the presence logic of board/esp32.py sees it on every
poll. ISO 14443-3 frames are answered within 1 ms or never, so they are waited for without
yielding; ISO-DEP blocks (FWT up to the band) yield to the loop. Collisions (two bands) are
refused as errors: this reader serves one band at a time and does not resolve them bit by bit.

ISO-DEP (ISO 14443-4), started on the first APDU: RATS E0 50 (FSD 64: every frame the band sends
fits the FIFO whole; CID 0, so no CID or NAD in any block), the ATS gives FWT (TB(1) FWI) and
the guard time SFGT. I-blocks 02/03 carry APDUs with the block number toggling on every I-block
received; a chained answer (bit 0x10) is acknowledged with R(ACK) A2/A3 until its last part; a
WTX request (S-block F2) is answered in kind and extends the next wait by its multiplier. The APDU
sequence and status words are type4.py's, here with READ BINARY chunks of 48 bytes (an answer of
1 + 48 + 2 + 2 CRC bytes, well inside the FIFO). Not done: retransmission (R(NAK)) after a bad
or missing block; a failed exchange makes the read torn (-1) and the guest taps again.

Buffers are preallocated; a poll allocates its own coroutine and a few small memoryview slices
(224 B for an empty field on the unix port).
"""

import asyncio
import time

from micropython import const
from type4 import NfcError, Type4

TYPE_CHECKING = False
if TYPE_CHECKING:
    from machine import SPI, Pin

# Registers (datasheet section 9).
_COMMAND = const(0x01)
_COM_IRQ = const(0x04)
_ERROR = const(0x06)
_FIFO_DATA = const(0x09)
_FIFO_LEVEL = const(0x0A)
_CONTROL = const(0x0C)
_BIT_FRAMING = const(0x0D)
_MODE = const(0x11)
_TX_MODE = const(0x12)
_TX_CONTROL = const(0x14)
_TX_ASK = const(0x15)
_T_MODE = const(0x2A)
_T_PRESCALER = const(0x2B)
_T_RELOAD_H = const(0x2C)
_T_RELOAD_L = const(0x2D)
_VERSION = const(0x37)
# Commands and bits.
_IDLE = const(0x00)
_TRANSCEIVE = const(0x0C)
_SOFT_RESET = const(0x0F)
_POWER_DOWN = const(0x10)  # CommandReg: still starting up after a soft reset
_RX_DONE = const(0x32)  # ComIrqReg RxIRq | IdleIRq | ErrIRq
_TIMER_IRQ = const(0x01)
_BAD_RX = const(0x1B)  # ErrorReg BufferOvfl | CollErr | ParityErr | ProtocolErr
_TX_CRC = const(0x80)  # TxModeReg TxCRCEn
_START_SEND = const(0x80)
_FIFO_MAX = const(64)
# Timer: 13.56 MHz / (2 * 169 + 1) = 40 kHz, started by the end of each transmission.
_TICK_US = const(25)
_SHORT = const(40)  # 1 ms: ISO 14443-3 answers come within ~0.1 ms; HLTA's silence is success
_ACTIVATION = const(200)  # 5 ms: the ATS follows RATS within 65536/fc (~4.8 ms)
_SLACK_MS = const(20)  # beyond the chip's timer: the chip itself is not answering
_FIELD_RESET_MS = const(6)  # ISO 14443-3: field off >= 5.1 ms resets a band; as long to power up

_WUPA = const(0x52)
_CASCADE_TAG = const(0x88)
_UID_INCOMPLETE = const(0x04)  # SAK bit 3
_CHUNK = const(48)
# Where a band stands after our last exchange with it.
_RESTING = const(0)  # idle, halted or gone
_SELECTED = const(1)  # ISO 14443-3 ACTIVE: HLTA puts it to rest
_PROTOCOL = const(2)  # ISO-DEP after RATS: DESELECT puts it to rest


class RC522Error(NfcError):
    """A bad answer (CRC, BCC, collision, framing), no ISO-DEP answer, or a silent chip."""


class RC522(Type4):
    def __init__(self, spi: "SPI", cs: "Pin") -> None:
        super().__init__(_CHUNK)
        self._spi = spi
        self._cs = cs
        self.atqa = 0  # ATQA of the last band (SENS_RES, as the PN532 reports it)
        self._state = _RESTING
        self._block = 0  # ISO-DEP block number
        self._fwt = _ACTIVATION  # frame waiting time in timer ticks, from the ATS
        self._sent = time.ticks_ms()  # when the last frame went out
        self._reg = bytearray(2)  # one register access: address, data
        self._got = bytearray(2)
        self._tx = bytearray(_FIFO_MAX + 1)  # FIFO write: address, then the frame
        self._tx[0] = _FIFO_DATA << 1
        self._txv = memoryview(self._tx)
        self._reads = bytearray(b"\x92" * (_FIFO_MAX + 1))  # FIFO read addresses (0x80 | 9 << 1)
        self._readsv = memoryview(self._reads)
        self._rx = bytearray(_FIFO_MAX + 1)  # the answer at 1..n (byte 0 arrives with the address)
        self._rxv = memoryview(self._rx)
        cs.value(1)

    # --- start-up (sync: board start and recovery after a run of failed polls) ---

    def version(self) -> bytes:
        """VersionReg: 0x91 or 0x92 for an NXP MFRC522, other values for clones."""
        v = self._get(_VERSION)
        if v in (0x00, 0xFF):  # MISO stuck: no chip, or the wrong wiring
            raise RC522Error("no chip")
        return bytes((v,))

    def start(self) -> None:
        """Soft reset, then the ISO 14443-A set-up the reset clears, and the antenna on."""
        self._set(_COMMAND, _SOFT_RESET)
        t0 = time.ticks_ms()
        while self._get(_COMMAND) & _POWER_DOWN:  # the oscillator restarting: under 1 ms
            if time.ticks_diff(time.ticks_ms(), t0) > _SLACK_MS:
                raise RC522Error("no chip")
        self._set(_T_MODE, 0x80)  # TAuto; prescaler bits 11..8 zero
        self._set(_T_PRESCALER, 0xA9)
        self._set(_TX_ASK, 0x40)  # Force100ASK: the modulation ISO 14443-A needs
        self._set(_MODE, 0x3D)  # CRC preset 6363 (CRC_A)
        self._set(_TX_CONTROL, self._get(_TX_CONTROL) | 0x03)  # TX1 and TX2 drive the antenna
        self._state = _RESTING

    # --- the board's interface ---

    async def poll_uid(self, uid: bytearray) -> int:
        """One poll: the UID length written into ``uid`` (4, 7 or 10), or 0 for no band."""
        tx, rx = self._tx, self._rx
        # Put the band the last poll selected to rest, so WUPA finds it again while it is held.
        if self._state == _PROTOCOL:
            await self._deselect()
        elif self._state == _SELECTED:
            tx[1], tx[2] = 0x50, 0x00  # HLTA: never answered
            self._frame(3, 0, True)
        self._state = _RESTING
        tx[1] = _WUPA
        if self._frame(2, 7, False) != 2:
            return 0
        self.atqa = rx[2] << 8 | rx[1]  # sent least significant byte first
        size = 0
        for level in range(3):
            tx[1] = 0x93 + 2 * level  # SEL of cascade level 1, 2, 3
            tx[2] = 0x20  # NVB: no UID bits known
            n = self._frame(3, 0, False)
            if n < 0:
                return 0  # gone between WUPA and here
            if n != 5 or rx[1] ^ rx[2] ^ rx[3] ^ rx[4] != rx[5]:
                raise RC522Error("BCC")
            tx[2] = 0x70  # NVB: all 40 bits, then CRC
            for i in range(5):
                tx[3 + i] = rx[1 + i]
            n = self._frame(8, 0, True)
            if n < 0:
                return 0
            self._check(n, 3)
            sak = rx[1]
            if not sak & _UID_INCOMPLETE:
                for i in range(4):
                    uid[size + i] = tx[3 + i]
                self.sak = sak
                self._state = _SELECTED
                return size + 4
            if tx[3] != _CASCADE_TAG:
                raise RC522Error("cascade tag")
            for i in range(3):
                uid[size + i] = tx[4 + i]
            size += 3
        raise RC522Error("UID longer than 10 bytes")

    async def exchange(self, data: bytes | bytearray | memoryview, out: bytearray) -> int:
        """One APDU in an ISO-DEP I-block (RATS first if the band is not yet in ISO-DEP); the
        answer, reassembled from its chained blocks, copied into ``out``: its length."""
        if self._state != _PROTOCOL:
            await self._rats()
        tx, rx = self._tx, self._rx
        size = len(data)
        if size > 13:  # FSC is at least 16 bytes: PCB, 13 bytes of APDU, CRC (no chaining out)
            raise ValueError("APDU too long")
        tx[1] = 0x02 | self._block
        for i in range(size):
            tx[2 + i] = data[i]
        size += 2  # FIFO address, PCB
        wait = self._fwt
        got = 0
        while True:
            n = await self._aframe(size, wait)
            if n < 0:
                raise RC522Error("no ISO-DEP answer")
            self._check(n, 3)
            pcb = rx[1]
            wait = self._fwt
            wtxm = rx[2] & 0x3F
            if pcb == 0xF2 and n == 4 and 0 < wtxm < 60:  # S(WTX): WTXM times FWT, this once
                tx[1], tx[2] = 0xF2, wtxm
                size = 3
                wait = min(wait * wtxm, 0xFFFF)
                continue
            if pcb & 0xEE != 0x02 or pcb & 1 != self._block:
                raise RC522Error("ISO-DEP block 0x%02x" % pcb)
            self._block ^= 1
            if got + n - 3 > len(out):
                raise RC522Error("answer larger than out")
            for i in range(2, n - 1):
                out[got] = rx[i]
                got += 1
            if not pcb & 0x10:
                return got
            tx[1] = 0xA2 | self._block  # R(ACK): send the next part
            size = 2

    # --- ISO 14443 steps ---

    async def _deselect(self) -> None:
        """S(DESELECT) to the band we read, so WUPA wakes it again; if no answer comes it is
        gone, or still in ISO-DEP after a torn exchange and deaf to WUPA until it leaves the
        field: the field is cut (>= 5 ms) so a band still held starts again."""
        self._tx[1] = 0xC2
        if await self._aframe(2, self._fwt) < 0:
            tx_control = self._get(_TX_CONTROL)
            self._set(_TX_CONTROL, tx_control & 0xFC)
            await asyncio.sleep_ms(_FIELD_RESET_MS)
            self._set(_TX_CONTROL, tx_control | 0x03)
            await asyncio.sleep_ms(_FIELD_RESET_MS)  # the band's power-up before WUPA

    async def _rats(self) -> None:
        tx, rx = self._tx, self._rx
        tx[1], tx[2] = 0xE0, 0x50  # RATS: FSDI 5 (64 bytes), CID 0
        # From here the band may be in ISO-DEP whatever comes back: the next poll deselects it.
        self._state = _PROTOCOL
        n = await self._aframe(3, _ACTIVATION)
        if n < 0:
            raise RC522Error("no ATS")
        self._check(n, 3)
        if rx[1] != n - 2:  # TL counts the ATS without its CRC
            raise RC522Error("ATS length")
        fwi, sfgi = 4, 0  # ISO 14443-4 defaults when TB(1) is absent: FWI 4, no SFGT
        fmt = rx[2] if n > 3 else 0  # T0: TA(1), TB(1), TC(1) present (bits 4-6), FSCI
        if fmt & 0x20:
            tb = rx[4 if fmt & 0x10 else 3]
            fwi, sfgi = tb >> 4, tb & 0x0F
        if fwi == 15:
            fwi = 4
        # FWT = 256 * 16 / fc * 2^FWI = 302 us * 2^FWI, in timer ticks and within its 16 bits.
        self._fwt = min((302 << fwi) // _TICK_US + 1, 0xFFFF)
        if 0 < sfgi < 15:
            time.sleep_us(302 << sfgi)  # the band's guard time before our first block
        self._block = 0

    def _check(self, n: int, least: int) -> None:
        """The answer at _rx[1..n] is at least ``least`` bytes and ends in its good CRC_A."""
        rx = self._rx
        crc = 0x6363
        for i in range(1, n + 1):
            ch = (rx[i] ^ crc) & 0xFF
            ch = (ch ^ (ch << 4)) & 0xFF
            crc = (crc >> 8) ^ (ch << 8) ^ (ch << 3) ^ (ch >> 4)
        if n < least or crc:
            raise RC522Error("CRC")

    # --- one frame: FIFO, Transceive, the answer ---

    def _frame(self, end: int, bits: int, crc: bool) -> int:
        """An ISO 14443-3 exchange, answered within 1 ms or never: waits without yielding (a
        coroutine per frame would cost more heap than the wait costs time)."""
        self._send(end, bits, crc, _SHORT)
        while True:
            done = self._done(_SHORT)
            if done:
                return self._fetch() if done > 0 else -1

    async def _aframe(self, end: int, ticks: int) -> int:
        """An ISO 14443-4 exchange (CRC_A appended): yields to the loop while the band works."""
        self._send(end, 0, True, ticks)
        while True:
            done = self._done(ticks)
            if done:
                return self._fetch() if done > 0 else -1
            await asyncio.sleep_ms(0)

    def _send(self, end: int, bits: int, crc: bool, ticks: int) -> None:
        """Send _tx[1:end] (``bits`` of its last byte, 0 = all 8; CRC_A appended if ``crc``),
        the timer loaded with ``ticks``."""
        self._set(_COMMAND, _IDLE)  # stop whatever ran
        self._set(_COM_IRQ, 0x7F)  # clear every interrupt request
        self._set(_FIFO_LEVEL, 0x80)  # flush
        self._select(True)
        try:
            self._spi.write(self._txv[:end])
        finally:
            self._select(False)
        self._set(_TX_MODE, _TX_CRC if crc else 0)
        self._set(_T_RELOAD_H, ticks >> 8)
        self._set(_T_RELOAD_L, ticks & 0xFF)
        self._set(_COMMAND, _TRANSCEIVE)
        self._set(_BIT_FRAMING, _START_SEND | bits)
        self._sent = time.ticks_ms()

    def _done(self, ticks: int) -> int:
        """1 when an answer came, -1 when the timer ran out, 0 while neither."""
        irq = self._get(_COM_IRQ)
        if irq & _RX_DONE:
            return 1
        if irq & _TIMER_IRQ:
            return -1
        if time.ticks_diff(time.ticks_ms(), self._sent) > ticks // 40 + _SLACK_MS:
            raise RC522Error("chip silent")
        return 0

    def _fetch(self) -> int:
        """The answer in the FIFO, checked for errors, copied to _rx[1..]: its length."""
        self._set(_BIT_FRAMING, 0)
        if self._get(_ERROR) & _BAD_RX:
            raise RC522Error("RX error 0x%02x" % self._get(_ERROR))
        n = self._get(_FIFO_LEVEL) & 0x7F
        if self._get(_CONTROL) & 0x07 or not n:  # RxLastBits: a partial last byte
            raise RC522Error("frame")
        reads = self._reads
        reads[n] = 0
        self._select(True)
        try:
            self._spi.write_readinto(self._readsv[: n + 1], self._rxv[: n + 1])
        finally:
            self._select(False)
            reads[n] = 0x92
        return n

    # --- registers ---

    def _set(self, reg: int, value: int) -> None:
        b = self._reg
        b[0], b[1] = reg << 1 & 0x7E, value
        self._select(True)
        try:
            self._spi.write(b)
        finally:
            self._select(False)

    def _get(self, reg: int) -> int:
        b = self._reg
        b[0], b[1] = 0x80 | reg << 1, 0
        self._select(True)
        try:
            self._spi.write_readinto(b, self._got)
        finally:
            self._select(False)
        return self._got[1]

    def _select(self, on: bool) -> None:
        self._cs.value(0 if on else 1)
