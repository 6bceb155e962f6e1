"""PN532 NFC front end as an ISO 14443-A reader (NXP PN532 User Manual UM0701, section 6 and 7).

Theory of operation. Every command is one exchange of frames over the host link:

    host -> PN532   00 00 FF LEN LCS D4 CMD params.. DCS 00   (LEN counts D4..params; LEN+LCS and
                                                              D4+CMD+params+DCS are 0 mod 256)
    PN532 -> host   00 00 FF 00 FF 00                          ACK: "frame received", within ~1 ms
    PN532 -> host   00 00 FF LEN LCS D5 CMD+1 data.. DCS 00    the answer, when the work is done

Between frames the host waits until the chip is ready: the IRQ line (P70_IRQ, low = ready) when
it is wired, else the status byte (bit 0). Popular drivers sleep 10 ms between those polls, which
dominates a tap (FIELD-NOTES, "Real hardware"); here readiness is polled tightly against a
deadline, and the async methods yield to the asyncio loop between polls instead of sleeping.
A host ACK frame aborts the command in progress: that is how a poll past its deadline is dropped.

NDEF of an ISO-DEP band (NFC Forum Type 4 Tag: the NTAG 424 DNA): the APDU sequence of type4.py,
each APDU one InDataExchange (the chip did RATS when it listed the band, and wraps APDUs in
ISO-DEP blocks).

RFConfiguration bounds the retries of InListPassiveTarget (the chip default is to wait forever),
so a poll with no band answers "0 targets" in a few ms and the loop polls again.

Layers: ``PN532`` holds the chip logic and the frame buffers; it talks to a bus object with three
methods (``PN532Bus``): ``PN532SPI`` and ``PN532I2C`` are the real ones, tests use a scripted fake.
Buffers are preallocated; a poll allocates only a few small memoryview slices.
"""

import asyncio
import time

from micropython import const
from type4 import NfcError, Type4

# Annotations are not evaluated by MicroPython; mypy alone reads this block (it treats any name
# TYPE_CHECKING as true), so the driver never imports machine on the unix port.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from machine import I2C, SPI, Pin

_HOST_TFI = const(0xD4)
_CHIP_TFI = const(0xD5)
_ERROR_TFI = const(0x7F)  # "syntax error" frame: the chip could not parse or run the command

_CMD_FIRMWARE = const(0x02)
_CMD_SAM = const(0x14)
_CMD_RFCONFIG = const(0x32)
_CMD_DATA_EXCHANGE = const(0x40)
_CMD_LIST_TARGET = const(0x4A)

_FRAME_MAX = const(262)  # normal frame: LEN <= 255, plus 00 00 FF LEN LCS .. DCS 00
_TFI_AT = const(5)  # TX frame: 00 00 FF LEN LCS | D4 CMD params | DCS 00
_OVERHEAD = const(10)  # frame bytes around an answer's data (9), plus one spare leading zero
_LIST_DATA = const(48)  # NbTg Tg SENS_RES(2) SEL_RES NFCIDLength NFCID1(<=10) ATS(<=32)
_PASSIVE_RETRIES = const(1)  # InListPassiveTarget tries twice, then answers "no target"

_ACK_MS = const(15)  # the ACK follows a command within ~1 ms
_CALL_MS = const(100)  # plain commands
_POLL_MS = const(50)  # InListPassiveTarget with bounded retries; then the poll is aborted
_EXCHANGE_MS = const(200)  # InDataExchange: NTAG 424 DNA SUN reads take 20-30 ms
# READ BINARY bytes per exchange: an answer of 130 bytes with its status word is well inside one
# PN532 frame, and an NTAG 424 DNA's 256-byte file takes two.
_CHUNK = const(128)
_ACK = b"\x00\x00\xff\x00\xff\x00"


class PN532Error(NfcError):
    """The PN532 refused or failed a command (error frame, InDataExchange status)."""


class PN532Timeout(PN532Error):
    """No ACK or no answer before the deadline: chip absent, asleep or wired wrong."""


class PN532FrameError(PN532Error):
    """Not the frame expected (start code, checksums, type): noise, or the wrong bit order."""


class PN532Bus:
    """The host link PN532 needs. ``read`` returns a view of the bus's own buffer, valid until
    the next call; ``ready`` says whether the chip has a frame for the host."""

    def write(self, frame: memoryview | bytes) -> None:
        raise NotImplementedError

    def read(self, n: int) -> memoryview:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError


class PN532(Type4):
    def __init__(self, bus: PN532Bus, *, poll_ms: int = _POLL_MS) -> None:
        super().__init__(_CHUNK)
        self.bus = bus
        self.poll_ms = poll_ms
        self.aborts = 0  # polls dropped past their deadline (heartbeat material)
        self.atqa = 0  # SENS_RES of the last band (its SEL_RES is Type4.sak: 0x20 = ISO-DEP)
        self._tx = bytearray(_FRAME_MAX)
        self._txv = memoryview(self._tx)
        self._tx[2] = 0xFF  # 00 00 FF start code
        self._tx[_TFI_AT] = _HOST_TFI
        self._rx = self._txv  # the last answer (a view of the bus buffer) and its data offset
        self._at = 0

    # --- commands (sync ones are for start-up and the REPL; they block up to their deadline) ---

    def firmware_version(self) -> bytes:
        """IC, Ver, Rev, Support (IC is 0x32 for a PN532)."""
        n = self._must(self._call(self._cmd(_CMD_FIRMWARE), 4, _CALL_MS))
        if n != 4:
            raise PN532FrameError("GetFirmwareVersion answer")
        return bytes(self._rx[self._at : self._at + 4])

    def version(self) -> bytes:
        """The chip's identity, as every front end gives it (board/esp32.py logs it)."""
        return self.firmware_version()

    def start(self) -> None:
        """Ready to poll: after power-up, and again after a run of failed polls."""
        self.sam_configuration()
        self.set_retries()

    def sam_configuration(self) -> None:
        """Normal mode (no SAM), and have the chip drive P70_IRQ; needed once after power-up."""
        self._must(self._call(self._cmd(_CMD_SAM, b"\x01\x14\x01"), 0, _CALL_MS))

    def set_retries(self, passive: int = _PASSIVE_RETRIES) -> None:
        """RFConfiguration item 5: MxRtyATR, MxRtyPSL at their defaults, MxRtyPassiveActivation
        bounded (0xFF would make InListPassiveTarget wait for a band forever)."""
        end = self._cmd(_CMD_RFCONFIG, b"\x05\xff\x01")
        self._tx[end] = passive
        self._must(self._call(end + 1, 0, _CALL_MS))

    def read_uid(self, uid: bytearray) -> int:
        """One blocking poll: the UID length written into ``uid`` (4, 7 or 10), or 0."""
        return self._uid(uid, self._call(self._list_cmd(), _LIST_DATA, self.poll_ms))

    async def poll_uid(self, uid: bytearray) -> int:
        """One poll that yields to the loop while the chip works; same result as read_uid."""
        return self._uid(uid, await self._acall(self._list_cmd(), _LIST_DATA, self.poll_ms))

    async def exchange(
        self,
        data: bytes | bytearray | memoryview,
        out: bytearray,
        tg: int = 1,
        timeout_ms: int = _EXCHANGE_MS,
    ) -> int:
        """InDataExchange with target ``tg``: send ``data`` (a Type 2 command, or an APDU the
        chip wraps for ISO-DEP), copy the answer into ``out``; return its length."""
        end = self._cmd(_CMD_DATA_EXCHANGE)
        self._tx[end] = tg
        end = self._put(end + 1, data)
        n = self._must(await self._acall(end, len(out) + 1, timeout_ms))
        rx, at = self._rx, self._at
        if n < 1:
            raise PN532FrameError("InDataExchange answer")
        if rx[at] & 0x3F:  # bits 0-5: error code (0x01 timeout, 0x02 CRC, ...); bit 6: MI
            raise PN532Error("InDataExchange status 0x%02x" % rx[at])
        n -= 1
        if n > len(out):
            raise PN532FrameError("answer larger than out")
        for i in range(n):
            out[i] = rx[at + 1 + i]
        return n

    def abort(self) -> None:
        """Cancel the command in progress (a host ACK frame); the chip drops its answer."""
        self.aborts += 1
        self.bus.write(_ACK)

    # --- frames ---

    def _cmd(self, code: int, params: bytes = b"") -> int:
        self._tx[_TFI_AT + 1] = code
        return self._put(_TFI_AT + 2, params)

    def _list_cmd(self) -> int:
        return self._cmd(_CMD_LIST_TARGET, b"\x01\x00")  # MaxTg 1, BrTy 0: 106 kbps type A

    def _put(self, end: int, data: bytes | bytearray | memoryview) -> int:
        if end + len(data) - _TFI_AT > 255:
            raise ValueError("PN532 frame too long")
        tx = self._tx
        for b in data:
            tx[end] = b
            end += 1
        return end

    def _send(self, end: int) -> None:
        tx = self._tx
        size = end - _TFI_AT
        tx[3] = size
        tx[4] = -size & 0xFF
        total = 0
        for i in range(_TFI_AT, end):
            total += tx[i]
        tx[end] = -total & 0xFF
        tx[end + 1] = 0
        self.bus.write(self._txv[: end + 2])

    def _read_ack(self) -> None:
        rx = self.bus.read(len(_ACK))
        at = _start(rx)
        if at + 1 >= len(rx) or rx[at] != 0 or rx[at + 1] != 0xFF:
            raise PN532FrameError("expected ACK")

    def _read_answer(self, code: int, data_max: int) -> int:
        """Check the answer to command ``code``; return its data length (after D5 CMD+1)."""
        want = data_max + _OVERHEAD
        rx = self.bus.read(want if want < _FRAME_MAX else _FRAME_MAX)
        at = _start(rx)
        size = rx[at]
        if size == 0:
            raise PN532FrameError("ACK where an answer was due")
        if (size + rx[at + 1]) & 0xFF:
            raise PN532FrameError("bad length checksum")
        tfi = at + 2
        if tfi + size >= len(rx):
            raise PN532FrameError("answer longer than expected")
        total = 0
        for i in range(tfi, tfi + size + 1):  # TFI, data and DCS sum to 0
            total += rx[i]
        if total & 0xFF:
            raise PN532FrameError("bad data checksum")
        if rx[tfi] == _ERROR_TFI:
            raise PN532Error("PN532 error frame for command 0x%02x" % code)
        if rx[tfi] != _CHIP_TFI or size < 2 or rx[tfi + 1] != code + 1:
            raise PN532FrameError("answer to another command")
        self._rx = rx
        self._at = tfi + 2
        return size - 2

    def _uid(self, uid: bytearray, n: int) -> int:
        # Data: NbTg, then Tg SENS_RES(2) SEL_RES NFCIDLength NFCID1 [ATS] for the one target.
        rx, at = self._rx, self._at
        if n < 1 or rx[at] == 0:
            return 0
        size = rx[at + 5] if n >= 6 else 0
        if size not in (4, 7, 10) or n < 6 + size:
            raise PN532FrameError("InListPassiveTarget answer")
        self.atqa = rx[at + 2] << 8 | rx[at + 3]
        self.sak = rx[at + 4]
        for i in range(size):
            uid[i] = rx[at + 6 + i]
        return size

    # --- one command: frame out, ACK in, answer in ---

    def _call(self, end: int, data_max: int, timeout_ms: int) -> int:
        """Blocking; the answer's data length, or -1 if it did not come in time (aborted)."""
        self._send(end)
        if not self._wait(_ACK_MS):
            raise PN532Timeout("no ACK")
        self._read_ack()
        if not self._wait(timeout_ms):
            self.abort()
            return -1
        return self._read_answer(self._tx[_TFI_AT + 1], data_max)

    async def _acall(self, end: int, data_max: int, timeout_ms: int) -> int:
        self._send(end)
        try:
            if not await self._await(_ACK_MS):
                raise PN532Timeout("no ACK")
            self._read_ack()
            answered = await self._await(timeout_ms)
        except asyncio.CancelledError:  # e.g. wait_for_ms around wait_tag: leave the chip idle
            self.abort()
            raise
        if not answered:
            self.abort()
            return -1
        return self._read_answer(self._tx[_TFI_AT + 1], data_max)

    def _wait(self, ms: int) -> bool:
        t0 = time.ticks_ms()
        while not self.bus.ready():  # a bound method kept in a local costs 32 B per wait
            if time.ticks_diff(time.ticks_ms(), t0) >= ms:
                return False
        return True

    async def _await(self, ms: int) -> bool:
        t0 = time.ticks_ms()
        while not self.bus.ready():  # a bound method kept in a local costs 32 B per wait
            if time.ticks_diff(time.ticks_ms(), t0) >= ms:
                return False
            await asyncio.sleep_ms(0)
        return True

    @staticmethod
    def _must(n: int) -> int:
        if n < 0:
            raise PN532Timeout("no answer")
        return n


def _start(rx: memoryview) -> int:
    """Index just past the 00 .. FF start code (chips may send extra leading zeros)."""
    i = 0
    n = len(rx)
    while i < n and rx[i] == 0:
        i += 1
    if i == 0 or i + 2 >= n or rx[i] != 0xFF:
        raise PN532FrameError("no start code")
    return i + 1


# --- host links ---

_SPI_WRITE = b"\x01"  # SPI direction byte before each transfer: data write,
_SPI_STATUS = b"\x02"  # status read,
_SPI_READ = b"\x03"  # data read


class PN532SPI(PN532Bus):
    """SPI mode 0 up to 5 MHz, least significant bit first. The caller builds the bus with
    ``firstbit=SPI.LSB`` (the ESP32's hardware SPI and, since MicroPython 1.24, SoftSPI do it in
    hardware/C; the RP2040 cannot). CS is held low for one direction byte plus its transfer."""

    def __init__(self, spi: "SPI", cs_pin: "Pin", irq_pin: "Pin | None" = None) -> None:
        self._spi = spi
        self._cs = cs_pin
        self._irq = irq_pin
        self._buf = memoryview(bytearray(_FRAME_MAX))
        self._status = bytearray(1)
        cs_pin.value(1)

    def write(self, frame: memoryview | bytes) -> None:
        self._cs.value(0)
        try:
            self._spi.write(_SPI_WRITE)
            self._spi.write(frame)
        finally:
            self._cs.value(1)

    def read(self, n: int) -> memoryview:
        view = self._buf[:n]
        self._transfer(_SPI_READ, view)
        return view

    def ready(self) -> bool:
        if self._irq is not None:
            return self._irq.value() == 0
        self._transfer(_SPI_STATUS, self._status)
        return self._status[0] & 1 == 1

    def _transfer(self, direction: bytes, into: memoryview | bytearray) -> None:
        self._cs.value(0)
        try:
            self._spi.write(direction)
            self._spi.readinto(into)
        finally:
            self._cs.value(1)


class PN532I2C(PN532Bus):
    """I2C up to 400 kHz at 0x24. Every read starts with the status byte (bit 0 = ready), so a
    frame is read with one spare byte in front; a busy chip may NACK its address."""

    def __init__(self, i2c: "I2C", addr: int = 0x24, irq_pin: "Pin | None" = None) -> None:
        self._i2c = i2c
        self._addr = addr
        self._irq = irq_pin
        self._buf = memoryview(bytearray(_FRAME_MAX + 1))
        self._frame = self._buf[1:]
        self._status = bytearray(1)

    def write(self, frame: memoryview | bytes) -> None:
        self._i2c.writeto(self._addr, frame)

    def read(self, n: int) -> memoryview:
        self._i2c.readfrom_into(self._addr, self._buf[: n + 1])
        if not self._buf[0] & 1:
            raise PN532FrameError("read while the chip was busy")
        return self._frame[:n]

    def ready(self) -> bool:
        if self._irq is not None:
            return self._irq.value() == 0
        try:
            self._i2c.readfrom_into(self._addr, self._status)
        except OSError:  # NACK: the chip is busy or waking up
            return False
        return self._status[0] & 1 == 1
