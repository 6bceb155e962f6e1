# firmware/operation.py on the real MicroPython: the journal's record of an operation, read back
# at known places, and as the offline Tap a Journal carries. Run by test_unix_port.py.
import gc

import mptest
import operation

from protocol import GATE, POS, Tap, reasons

UID = b"\x04\xa1\xb2\xc3\xd4\xe5\xf6"
CHARGE = bytes(range(16))
MID = b"m" * 16


def pos_tap(picc=None, file=None, cmac=None):
    return Tap(
        reader="till-1",
        ts=1_795_000_000_000,
        mid=MID,
        uid=UID,
        role=POS,
        charge=CHARGE,
        picc=picc,
        file=file,
        cmac=cmac,
    )


def test_a_pos_sale_keeps_its_amount_whatever_its_sun_reading():
    buf = bytearray(300)
    for sun in ((None, None, None), (b"p" * 16, None, b"c" * 8), (b"p" * 24, b"f" * 48, b"c" * 8)):
        n = operation.pack(
            buf, 7, operation.OFFLINE | operation.GRANTED, 21, pos_tap(*sun), amount=1250
        )
        assert operation.amount(buf, 7) == 1250
        assert operation.role(buf, 7) == POS
        assert n <= operation.SIZE_MAX
    assert n == operation.SIZE_MAX, "the largest reading: the largest record"


def test_the_offline_tap_is_the_operation_without_its_amount():
    buf = bytearray(300)
    operation.pack(
        buf,
        0,
        operation.OFFLINE,
        reasons.OFFLINE_LIMIT,
        pos_tap(b"p" * 16, b"f" * 32, b"c" * 8),
        amount=2**40,
    )
    tap = operation.offline_tap(buf, 0, "till-1", 3)
    assert (tap.uid, tap.role, tap.charge, tap.mid) == (UID, POS, CHARGE, MID)
    assert (tap.picc, tap.file, tap.cmac) == (b"p" * 16, b"f" * 32, b"c" * 8)
    assert (tap.offline, tap.local_granted, tap.local_reason) == (
        True,
        False,
        reasons.OFFLINE_LIMIT,
    )
    assert tap.pin is None
    assert operation.amount(buf, 0) == 2**40


def test_a_gate_record_of_the_layout_before_amounts_reads_the_same():
    """The amount comes after the SUN part: a journal written before it (gate operations) is
    read as it was."""
    buf = bytearray(300)
    gate = Tap(
        reader="gate-1",
        ts=5,
        mid=MID,
        uid=UID,
        role=GATE,
        direction=1,
        picc=b"p" * 16,
        cmac=b"c" * 8,
    )
    n = operation.pack(buf, 0, operation.OFFLINE | operation.GRANTED, 0, gate)
    old = bytes(buf[: n - 8])  # what the firmware before amounts wrote
    buf[:] = bytearray(300)
    buf[: len(old)] = old
    tap = operation.offline_tap(buf, 0, "gate-1", 1)
    assert (tap.uid, tap.direction, tap.picc, tap.cmac, tap.local_granted) == (
        UID,
        1,
        b"p" * 16,
        b"c" * 8,
        True,
    )
    assert operation.ts(buf, 0) == 5


def test_reading_the_amount_allocates_nothing():
    buf = bytearray(300)
    operation.pack(buf, 7, operation.OFFLINE, 0, pos_tap(), amount=99_999)
    for _ in range(10):
        operation.amount(buf, 7)
    gc.collect()
    before = gc.mem_alloc()
    for _ in range(100):
        operation.amount(buf, 7)
    assert gc.mem_alloc() - before == 0, gc.mem_alloc() - before


mptest.main(globals())
