# The RC522 driver against a fake MFRC522 on its SPI bus: the chip's register file, FIFO and
# Command register (NXP MFRC522 datasheet), with a script of the frames a band expects on air
# and its answers. Kept compact (tables, few helpers): compiled from source under the 64k heap.
import gc

import mptest
from rc522 import RC522, RC522Error

H = bytes.fromhex
COMMAND, COM_IRQ, ERROR, FIFO_DATA, FIFO_LEVEL, CONTROL, BIT_FRAMING = 1, 4, 6, 9, 10, 12, 13
MODE, TX_MODE, TX_CONTROL, TX_ASK, T_MODE, RELOAD_H, RELOAD_L, VERSION = (
    0x11, 0x12, 0x14, 0x15, 0x2A, 0x2C, 0x2D, 0x37)  # fmt: skip


def crc(data):  # CRC_A (ISO 14443-3 annex B), least significant byte first
    c = 0x6363
    for byte in data:
        b = (byte ^ c) & 0xFF
        b = (b ^ (b << 4)) & 0xFF
        c = (c >> 8) ^ (b << 8) ^ (b << 3) ^ (b >> 4)
    return bytes((c & 0xFF, c >> 8))


def C(hex_data):  # a frame and its CRC_A
    data = H(hex_data)
    return data + crc(data)


class Chip:
    # An MFRC522 as its SPI bus and CS pin see it. On StartSend during Transceive the frame on
    # air (the FIFO, with CRC_A appended under TxCRCEn) must be the next scripted one; its answer
    # fills the FIFO (RxIRq, ErrorReg as scripted), or none comes and the timer runs out (TimerIRq,
    # only if the driver started it: TAuto and a reload value).

    def __init__(self, version=0x92):
        self.version = version
        self.regs = bytearray(64)
        self.script, self.sent = [], []
        self.resets = self.booting = self.field_cuts = 0
        self.addr = -1
        self.reset()

    def reset(self):
        r = self.regs
        r[:] = bytes(64)
        r[COMMAND], r[MODE], r[TX_CONTROL], r[VERSION] = 0x20, 0x3F, 0x80, self.version
        self.fifo = []

    def expect(self, frame, answer=None, error=0):
        self.script.append((frame, answer, error))

    def value(self, level):  # CS: each edge ends a transaction; the next byte is an address
        self.addr = -1

    def write(self, data):
        for b in data:
            if self.addr < 0:
                assert b & 0x81 == 0, b  # a write address: bit 7 and bit 0 clear
                self.addr = b >> 1
            else:
                self.put(self.addr, b)  # a burst writes one register (the FIFO) again and again

    def write_readinto(self, tx, rx):
        assert len(tx) == len(rx) and tx[-1] == 0 and self.addr < 0
        rx[0] = 0
        for i in range(len(tx) - 1):  # each byte's data comes back with the next address
            assert tx[i] & 0x81 == 0x80, tx[i]
            rx[i + 1] = self.get(tx[i] >> 1 & 0x3F)

    def get(self, reg):
        if reg == FIFO_DATA:
            return self.fifo.pop(0)
        if reg == FIFO_LEVEL:
            return len(self.fifo)
        if reg == COMMAND and self.booting:  # PowerDown while the oscillator restarts
            self.booting -= 1
            return 0x30
        return self.regs[reg]

    def put(self, reg, v):
        r = self.regs
        if reg == FIFO_DATA:
            self.fifo.append(v)
            assert len(self.fifo) <= 64, "FIFO overflow"
        elif reg == FIFO_LEVEL:
            if v & 0x80:
                self.fifo = []
        elif reg == COM_IRQ:  # Set1: bit 7 says whether the marked bits are set or cleared
            r[reg] = r[reg] | v & 0x7F if v & 0x80 else r[reg] & ~v
        elif reg == COMMAND and v & 0x0F == 0x0F:
            self.resets += 1
            self.reset()
            self.booting = 2
        else:
            self.field_cuts += reg == TX_CONTROL and r[reg] & 3 == 3 and not v & 3
            r[reg] = v
            if reg == BIT_FRAMING and v & 0x80 and r[COMMAND] == 0x0C:  # receiver on, too
                self.air(v & 7)

    def air(self, bits):
        r = self.regs
        frame = bytes(self.fifo)
        self.fifo = []
        assert r[TX_CONTROL] & 3 == 3 and r[TX_ASK] & 0x40, "antenna off, or not 100 % ASK"
        assert bits == (7 if frame in (b"\x26", b"\x52") else 0), bits  # short frames only
        if r[TX_MODE] & 0x80:
            assert r[MODE] & 3 == 1, "CRC preset is not 6363"
            frame += crc(frame)
        reload = r[RELOAD_H] << 8 | r[RELOAD_L]
        self.sent.append((frame, reload))
        expected, answer, error = self.script.pop(0)
        assert frame == expected, frame.hex()
        r[ERROR], r[CONTROL] = error, 0
        if answer is None:
            if r[T_MODE] & 0x80 and reload:
                r[COM_IRQ] |= 0x01
        else:
            self.fifo = list(answer)
            r[COM_IRQ] |= 0x22 if error else 0x20


def bcc(hex_data):
    data = H(hex_data)
    return data + bytes((data[0] ^ data[1] ^ data[2] ^ data[3],))


# NTAG 424 DNA: ATQA 44 03 on air, 7-byte UID 041e6f72a15290 over two cascade levels.
WUPA, ATQA, CL1, CL2 = b"\x52", H("4403"), bcc("88041e6f"), bcc("72a15290")
HLTA, DESELECT = C("5000"), C("c2")
RATS = C("e050"), C("067777710280")  # ATS: FSCI 7, TB(1) 71: FWI 7 (FWT 38.7 ms), SFGI 1
FWT = 1547  # timer ticks of 25 us
NDEF = bytes(range(150))  # the NDEF message of mp_pn532's test


def started(chip=None):
    chip = chip or Chip()
    nfc = RC522(chip, chip)
    nfc.start()
    return chip, nfc


def select(chip, sak="20"):
    chip.expect(WUPA, ATQA)
    chip.expect(H("9320"), CL1)
    chip.expect(C("9370" + CL1.hex()), C("04"))  # SAK: UID not complete
    chip.expect(H("9520"), CL2)
    chip.expect(C("9570" + CL2.hex()), C(sak))


def iso_dep(*pairs):  # RATS, then (I-block on air, answer) pairs
    chip, nfc = started()
    nfc.sak = 0x20  # as the poll left it for an NTAG 424 DNA
    chip.expect(*RATS)
    for frame, answer in pairs:
        chip.expect(C(frame), answer if answer is None else C(answer))
    return chip, nfc


SELECTS = ("02 00a4040007d276000085010100", "02 9000"), ("03 00a4000c02e104", "03 9000")
NLEN = ("02 00b0000002", "02 0096 9000")


def test_start_up_resets_the_chip_and_turns_the_antenna_on():
    assert C("e050")[2:] == H("bca5") and HLTA[2:] == H("57cd")  # the fake's CRC_A is right
    chip, nfc = started()
    assert nfc.version() == b"\x92" and chip.resets == 1 and not chip.booting
    r = chip.regs
    assert r[TX_CONTROL] & 3 == 3 and r[T_MODE] & 0x80 and r[MODE] & 3 == 1
    for dead in (0x00, 0xFF):  # no chip on the bus
        mptest.raises(RC522Error, RC522(Chip(dead), Chip()).version)


async def test_reads_a_7_byte_uid_through_two_cascade_levels():
    chip, nfc = started()
    select(chip)
    uid = bytearray(10)
    assert await nfc.poll_uid(uid) == 7 and uid[:7] == H("041e6f72a15290")
    assert nfc.sak == 0x20 and nfc.atqa == 0x0344 and not chip.script
    chip.expect(HLTA)  # the next poll halts the band first, so WUPA finds it while held
    select(chip, "00")
    assert await nfc.poll_uid(uid) == 7 and nfc.sak == 0 and not chip.script
    chip.expect(HLTA)  # then a 4-byte UID (MIFARE Classic): one cascade level
    chip.expect(WUPA, H("0400"))
    chip.expect(H("9320"), bcc("deadbeef"))
    chip.expect(C("9370" + bcc("deadbeef").hex()), C("08"))
    assert await nfc.poll_uid(uid) == 4 and uid[:4] == H("deadbeef") and nfc.sak == 8


async def test_a_bad_bcc_a_collision_or_no_cascade_tag_is_refused():
    bad = bcc("041e6f72")  # the SAK will say "more follows", but no cascade tag came first
    for script in (
        ((H("9320"), CL1[:4] + b"\x00", 0),),  # BCC
        ((H("9320"), CL1, 0x08),),  # CollErr: two bands
        ((H("9320"), bad, 0), (C("9370" + bad.hex()), C("04"), 0)),
    ):
        chip, nfc = started()
        chip.expect(WUPA, ATQA)
        for step in script:
            chip.expect(*step)
        try:
            await nfc.poll_uid(bytearray(10))
            raise AssertionError("accepted")
        except RC522Error:
            pass
        assert not chip.script and len(chip.sent) == 1 + len(script)  # nothing sent after


async def test_no_band_is_0_within_the_timer():
    chip, nfc = started()
    chip.expect(WUPA)  # silence
    assert await nfc.poll_uid(bytearray(10)) == 0
    assert chip.sent == [(WUPA, 40)]  # 1 ms of the chip's timer, not the 20 ms fallback


async def test_reads_the_ndef_file_in_chunks_with_block_numbers_toggling():
    chip, nfc = iso_dep(
        *SELECTS,
        NLEN,
        ("03 00b0000230", "03" + NDEF[:48].hex() + "9000"),
        ("02 00b0003230", "12" + NDEF[48:68].hex()),  # chained: the rest after R(ACK)
        ("a3", "03" + NDEF[68:96].hex() + "9000"),
        ("02 00b0006230", "02" + NDEF[96:144].hex() + "9000"),
        ("03 00b0009206", "03" + NDEF[144:].hex() + "9000"),
    )
    buf = bytearray(256)
    assert await nfc.read_ndef(buf) == 150 and buf[:150] == NDEF and not chip.script
    pcbs = [f[0] for f, _ in chip.sent[1:]]
    assert pcbs == [2, 3, 2, 3, 2, 0xA3, 2, 3], pcbs
    assert {t for _, t in chip.sent[1:]} == {FWT}  # FWT from the ATS bounds every block
    chip.expect(DESELECT, DESELECT)  # the next poll deselects the band, then wakes it
    chip.expect(WUPA)
    assert await nfc.poll_uid(bytearray(10)) == 0 and not chip.script and not chip.field_cuts


async def test_a_band_gone_mid_read_is_a_torn_read():
    chunk = "03 00b0000230"
    for answer in (None, "03" + NDEF[:48].hex()):  # silence; the status word cut off
        chip, nfc = iso_dep(*SELECTS, NLEN, (chunk, answer))
        assert await nfc.read_ndef(bytearray(256)) == -1 and not chip.script
    chip, nfc = iso_dep(*SELECTS, NLEN)
    chip.expect(C(chunk), C("03" + NDEF[:48].hex() + "9000")[:-1] + b"\x00")  # bad CRC
    assert await nfc.read_ndef(bytearray(256)) == -1 and not chip.script
    chip.expect(DESELECT)  # unanswered: the band may be stuck in ISO-DEP, deaf to WUPA
    select(chip)  # after the field was cut, the held band answers again
    assert await nfc.poll_uid(bytearray(10)) == 7 and chip.field_cuts == 1 and not chip.script


async def test_no_ndef_application_is_0():
    chip, nfc = iso_dep((SELECTS[0][0], "02 6a82"))  # application not found
    assert await nfc.read_ndef(bytearray(256)) == 0 and not chip.script
    chip, nfc = started()
    nfc.sak = 0x00  # an NTAG21x: nothing is sent
    assert await nfc.read_ndef(bytearray(256)) == 0 and not chip.sent


async def test_a_wtx_request_is_answered():
    chip, nfc = iso_dep(
        (SELECTS[0][0], "f2 03"),  # S(WTX), WTXM 3: the band needs more time
        ("f2 03", "02 9000"),  # our S(WTX) answer, then the band's I-block
        (SELECTS[1][0], "03 6a82"),
    )
    assert await nfc.read_ndef(bytearray(256)) == 0 and not chip.script
    assert [t for _, t in chip.sent[1:]] == [FWT, 3 * FWT, FWT]


async def test_an_empty_field_costs_little_heap_per_poll():
    class Quiet:  # the chip's timer always runs out first: no band
        def value(self, level):
            pass

        def write(self, data):
            pass

        def write_readinto(self, tx, rx):
            rx[1] = 0x01  # ComIrqReg: TimerIRq

    quiet = Quiet()
    nfc, uid = RC522(quiet, quiet), bytearray(10)
    gc.collect()
    before = gc.mem_alloc()
    for _ in range(50):
        assert await nfc.poll_uid(uid) == 0
    # 224 B a poll here: the poll's own coroutine and one FIFO slice. A coroutine per frame
    # (~290 B each) or a buffer per poll breaks this.
    assert (gc.mem_alloc() - before) // 50 <= 256


mptest.main(globals())
