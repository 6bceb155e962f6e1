# The PN532 driver against a scripted bus that replays what a real PN532 sends (NXP UM0701-02,
# section 6.2: ACK 00 00 FF 00 FF 00; answers 00 00 FF LEN LCS D5 CMD+1 data DCS 00), its SPI and
# I2C adapters against fake peripherals, and the presence rule wait_tag uses.
# Kept compact (tables, few helpers): this script is compiled from source under the 64k heap.
import asyncio
import gc
import time

import mptest
from pn532 import PN532, PN532I2C, PN532SPI, PN532Error, PN532FrameError, PN532Timeout
from presence import TagPresence

H = bytes.fromhex
ACK = H("0000ff00ff00")
SAM = H("0000ff05fbd414011401 0200"), H("0000ff02fed5151600")
RETRIES = H("0000ff06fad43205ff0101 f400"), H("0000ff02fed533f800")
LIST = H("0000ff04fcd44a0100 e100")
# NTAG215: ATQA 00 44, SAK 00, 7-byte UID.
NTAG215 = H("0000ff0ff1 d54b 01 01 0044 00 07 045a3c128b6180 7b00")
# NTAG 424 DNA: ATQA 03 44, SAK 20 (ISO-DEP), 7-byte UID, then the ATS (the chip sent RATS).
NTAG424 = H("0000ff15eb d54b 01 01 0344 20 07 041e6f72a15290 067777710280 0300")
# MIFARE Classic 1K: ATQA 00 04, SAK 08, 4-byte UID.
CLASSIC = H("0000ff0cf4 d54b 01 01 0004 08 04 deadbeef 9600")
NONE = H("0000ff03fd d54b 00 e000")
READ = H("0000ff05fbd4400130 04b700")  # InDataExchange: NTAG READ page 4


class ScriptedBus:
    """A PN532 on a wire: each write must be the next scripted command; its replies (ACK, then
    the answer) become readable after ``busy`` not-ready polls each. A host ACK aborts."""

    def __init__(self, busy=2):
        self.busy = busy
        self.script = []
        self.pending = []
        self.written = []
        self.wait = 0
        self.buf = bytearray(160)

    def expect(self, command, *replies):
        self.script.append((command, list(replies)))

    def write(self, frame):
        frame = bytes(frame)
        self.written.append(frame)
        if frame != ACK:
            command, self.pending = self.script.pop(0)
            assert frame == command, frame.hex()
            self.wait = self.busy
        else:
            self.pending = []

    def ready(self):
        if self.pending and self.wait:
            self.wait -= 1
            return False
        return bool(self.pending)

    def read(self, n):
        reply = self.pending.pop(0) + bytes(n)  # past the frame the wire reads as zeros
        self.buf[:n] = reply[:n]
        self.wait = self.busy
        return memoryview(self.buf)[:n]


def started(busy=2, poll_ms=20):
    bus = ScriptedBus(busy)
    bus.expect(SAM[0], ACK, SAM[1])
    bus.expect(RETRIES[0], ACK, RETRIES[1])
    nfc = PN532(bus, poll_ms=poll_ms)
    nfc.sam_configuration()
    nfc.set_retries()
    return bus, nfc


def test_firmware_version_and_start_up():
    bus = ScriptedBus()
    bus.expect(H("0000ff02fed402 2a00"), ACK, H("0000ff06fa d503 32010607 e800"))
    assert PN532(bus).firmware_version() == b"\x32\x01\x06\x07"  # PN532 v1.6
    bus = started()[0]
    assert not bus.script


def test_reads_7_and_4_byte_uids_and_empty_field():
    bus, nfc = started()
    uid = bytearray(10)
    for answer, size, expected, sak in (
        (NTAG215, 7, "045a3c128b6180", 0x00),
        (CLASSIC, 4, "deadbeef", 0x08),
        (b"\x00" + CLASSIC, 4, "deadbeef", 0x08),  # an extra leading zero is tolerated
        (NONE, 0, "", 0x08),
    ):
        bus.expect(LIST, ACK, answer)
        assert nfc.read_uid(uid) == size, answer
        assert uid[:size] == H(expected) and nfc.sak == sak
    assert nfc.atqa == 0x0004


async def test_poll_yields_while_the_chip_works():
    bus, nfc = started(busy=5)
    bus.expect(LIST, ACK, NTAG424)
    ticks = [0]

    async def other():
        while True:
            ticks[0] += 1
            await asyncio.sleep_ms(0)

    task = asyncio.create_task(other())
    uid = bytearray(10)
    n = await nfc.poll_uid(uid)
    task.cancel()
    assert n == 7 and uid[:7] == H("041e6f72a15290") and nfc.sak == 0x20  # NTAG 424 DNA
    assert ticks[0] >= 5, "the poll did not yield while the chip was busy"


async def test_unanswered_poll_is_aborted_quickly():
    bus, nfc = started()
    bus.expect(LIST, ACK)  # ACKed, never answered (retries unbounded, RF busy)
    t0 = time.ticks_ms()
    assert await nfc.poll_uid(bytearray(10)) == 0
    took = time.ticks_diff(time.ticks_ms(), t0)
    assert 20 <= took < 60, took
    assert bus.written[-1] == ACK and nfc.aborts == 1  # a host ACK cancels the command


async def test_cancelled_poll_leaves_the_chip_idle():
    bus, nfc = started()
    bus.expect(LIST, ACK)  # no band answer yet
    try:
        await asyncio.wait_for_ms(nfc.poll_uid(bytearray(10)), 5)
        raise AssertionError("not cancelled")
    except asyncio.TimeoutError:
        assert bus.written[-1] == ACK and nfc.aborts == 1


def test_missing_ack_is_a_timeout():
    bus = ScriptedBus()
    bus.expect(SAM[0])  # nobody home
    t0 = time.ticks_ms()
    assert "ACK" in str(mptest.raises(PN532Timeout, PN532(bus).sam_configuration))
    assert time.ticks_diff(time.ticks_ms(), t0) < 50


def corrupt(frame, at, bits):
    frame = bytearray(frame)
    frame[at] ^= bits
    return bytes(frame)


def test_bad_frames_raise():
    bus, nfc = started()
    for command, answer, error in (
        (LIST, corrupt(NTAG215, -2, 0x01), PN532FrameError),  # DCS
        (LIST, corrupt(NTAG215, 15, 0x40), PN532FrameError),  # one UID bit flipped
        (SAM[0], corrupt(SAM[1], 4, 0x03), PN532FrameError),  # LCS
        (SAM[0], b"\x80" * 9, PN532FrameError),  # what an MSB-first bus reads
        (SAM[0], RETRIES[1], PN532FrameError),  # a valid frame answering another command
        (SAM[0], ACK, PN532FrameError),  # a second ACK where the answer is due
        (SAM[0], H("0000ff01ff7f8100"), PN532Error),  # the chip's syntax error frame
    ):
        bus.expect(command, ACK, answer)
        run = nfc.sam_configuration if command == SAM[0] else (lambda: nfc.read_uid(bytearray(10)))
        exc = mptest.raises(PN532Error, run)
        assert type(exc) is error, (answer, exc)


async def test_exchange_reads_ntag_pages():
    bus, nfc = started()
    bus.expect(READ, ACK, H("0000ff13ed d54100 101112131415161718191a1b1c1d1e1f 7200"))
    out = bytearray(16)
    assert await nfc.exchange(b"\x30\x04", out) == 16 and out == bytes(range(16, 32))
    bus.expect(READ, ACK, H("0000ff03fd d54101 e900"))  # status 0x01: the band did not answer
    try:
        await nfc.exchange(b"\x30\x04", out)
        raise AssertionError("status 0x01 not raised")
    except PN532Error as exc:
        assert "0x01" in str(exc)


def frame(hex_data):
    """A normal frame around TFI and data (D4.. from the host, D5.. from the chip)."""
    data = H(hex_data)
    return bytes((0, 0, 0xFF, len(data), -len(data) & 0xFF)) + data + bytes((-sum(data) & 0xFF, 0))


# APDUs in InDataExchange to target 1, and the band's answers (status 00, data, status word).
SELECT_APP = frame("d44001 00a4040007d276000085010100"), frame("d54100 9000")
SELECT_FILE = frame("d44001 00a4000c02e104"), frame("d54100 9000")
NLEN = frame("d44001 00b0000002"), frame("d54100 0096 9000")  # 150 bytes of NDEF
NDEF = bytes(range(150))
CHUNKS = (
    (frame("d44001 00b0000280"), frame("d54100" + NDEF[:128].hex() + "9000")),
    (frame("d44001 00b0008216"), frame("d54100" + NDEF[128:].hex() + "9000")),
)


def iso_dep(script):
    bus, nfc = started(busy=0)
    nfc.sak = 0x20  # as InListPassiveTarget left it for an NTAG 424 DNA
    for command, answer in script:
        bus.expect(command, ACK, answer)
    return bus, nfc


async def test_reads_the_ndef_file_of_an_iso_dep_band_in_chunks():
    bus, nfc = iso_dep((SELECT_APP, SELECT_FILE, NLEN) + CHUNKS)  # noqa: RUF005 - no *x here
    buf = bytearray(256)
    assert await nfc.read_ndef(buf) == 150 and buf[:150] == NDEF
    assert not bus.script


async def test_no_ndef_and_a_torn_read():
    missing = frame("d54100 6a82")  # file or application not found
    gone = frame("d54101")  # status 0x01: the band did not answer
    for script, buf, expected in (
        (((SELECT_APP[0], missing),), 256, 0),
        ((SELECT_APP, (SELECT_FILE[0], missing)), 256, 0),
        ((SELECT_APP, SELECT_FILE, NLEN), 149, 0),  # larger than the buffer
        ((SELECT_APP, SELECT_FILE, NLEN, CHUNKS[0], (CHUNKS[1][0], gone)), 256, -1),
        # A read of the selected file refused: the band slipping, not a band without NDEF.
        ((SELECT_APP, SELECT_FILE, NLEN, (CHUNKS[0][0], missing)), 256, -1),
        ((SELECT_APP, SELECT_FILE, (NLEN[0], corrupt(NLEN[1], -2, 1))), 256, -1),
    ):
        bus, nfc = iso_dep(script)
        assert await nfc.read_ndef(bytearray(buf)) == expected, script
        assert not bus.script, script
    bus, nfc = iso_dep(())
    nfc.sak = 0x00  # an NTAG21x: nothing is sent
    assert await nfc.read_ndef(bytearray(256)) == 0 and len(bus.written) == 2


def test_polls_allocate_little():
    class Loop:  # the ACK and the empty-field answer forever, allocating nothing itself
        def __init__(self):
            self.buf = bytearray(64)
            self.view = memoryview(self.buf)
            self.next = ACK

        def write(self, frame):
            self.next = ACK

        def ready(self):
            return True

        def read(self, n):
            self.buf[: len(self.next)] = self.next
            self.next = NONE
            return self.view[:n]

    nfc = PN532(Loop())
    uid = bytearray(10)
    gc.collect()
    before = gc.mem_alloc()
    for _ in range(50):
        nfc.read_uid(uid)
    # 96 B a poll, 64 B of it this fake's two view slices: the driver's own share is one small
    # object, no frame copies. A new allocation per poll in the driver breaks this.
    assert (gc.mem_alloc() - before) // 50 <= 96


class Fake:  # a Pin, SPI or I2C peripheral: records what it is told, answers from `source`
    def __init__(self, level=1):
        self.level = level
        self.log = []
        self.source = ACK

    def value(self, *level):
        if level:
            self.level = level[0]
            self.log.append(level[0])
        return self.level

    def write(self, data):
        self.log.append(bytes(data))

    def writeto(self, addr, data):
        self.log.append((addr, bytes(data)))

    def readinto(self, buf):
        source = bytes([self.level]) if self.log[-1] == b"\x02" else self.source
        buf[:] = (source + bytes(len(buf)))[: len(buf)]

    def readfrom_into(self, addr, buf):
        if self.level is None:
            raise OSError(19)  # NACK while the chip is busy
        buf[:] = (bytes([self.level]) + self.source + bytes(len(buf)))[: len(buf)]


def test_spi_adapter():
    spi, cs, irq = Fake(level=1), Fake(), Fake(level=0)
    bus = PN532SPI(spi, cs)
    bus.write(LIST)
    assert spi.log == [b"\x01", LIST]  # data write
    assert bus.ready() and spi.log[-1] == b"\x02"  # status read, bit 0 set
    spi.level = 0
    assert not bus.ready()
    assert bytes(bus.read(6)) == ACK and spi.log[-1] == b"\x03"  # data read
    assert cs.log == [1, 0, 1, 0, 1, 0, 1, 0, 1]  # low around each transaction
    assert PN532SPI(spi, cs, irq).ready()  # IRQ low = ready, no bus traffic
    irq.level = 1
    assert not PN532SPI(spi, cs, irq).ready()


def test_i2c_adapter():
    i2c = Fake(level=1)
    bus = PN532I2C(i2c)
    bus.write(LIST)
    assert i2c.log == [(0x24, LIST)]
    assert bus.ready() and bytes(bus.read(6)) == ACK  # the status byte is stripped
    i2c.level = None
    assert not bus.ready()
    i2c.level = 0
    assert not bus.ready()
    mptest.raises(PN532FrameError, bus.read, 6)


def test_presence_reports_a_band_once_per_visit():
    seen = TagPresence(absent_polls=3)
    a = bytearray(b"\x04\x5a\x3c\x12\x8b\x61\x80\x00\x00\x00")
    b = bytearray(b"\x04\x5a\x3c\x12\x8b\x61\x81\x00\x00\x00")
    # held, one missed poll, held, lifted for 3 polls, back: two arrivals
    polls = (7, 7, 0, 7, 0, 0, 0, 7, 7)
    assert [seen.update(a, n) for n in polls] == [1, 0, 0, 0, 0, 0, 0, 1, 0]
    assert seen.update(b, 7) and not seen.update(b, 7)  # a swapped band is new at once
    seen.forget()
    assert seen.present() is False and seen.update(b, 7)


async def test_poll_loop_with_presence_like_wait_tag():
    bus, nfc = started(busy=0)
    for answer in (NTAG215, NTAG215, NONE, NTAG215, NONE, NONE, NONE, NTAG215):
        bus.expect(LIST, ACK, answer)
    seen = TagPresence(absent_polls=3)
    uid = bytearray(10)
    taps = 0
    while bus.script:
        taps += seen.update(uid, await nfc.poll_uid(uid))
    assert taps == 2, taps


mptest.main(globals())
