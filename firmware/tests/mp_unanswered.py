# firmware/unanswered.py on the real MicroPython: the table of unanswered taps and its file.
# Run by test_unix_port.py (micropython firmware/tests/mp_unanswered.py).
import os

import flash
import mptest
from flash import Stored
from unanswered import WINDOW_MS, Unanswered

NOW = 1_795_000_000_000
MID = b"m" * 16


def band(i):
    return bytes((4, i, i, i, i, i, i))


class Counting(Stored):
    def __init__(self, path):
        super().__init__(path)
        self.writes = 0

    def write(self, data):
        self.writes += 1
        super().write(data)


def counted(path):
    table = Unanswered(path)
    table._file = Counting(path)
    return table


def test_an_operation_is_found_by_its_band_and_kept_over_a_reboot():
    path = mptest.scratch("unanswered")
    table = Unanswered(path)
    assert table.find(band(1), NOW) < 0
    slot = table.add(band(1), MID, NOW - 5)
    assert table.find(band(1), NOW + 1) == slot
    assert table.find(band(2), NOW + 1) < 0
    assert table.find(band(1)[:4], NOW + 1) < 0, "a 4-byte uid that begins the same is another"
    table.add(band(2), MID, NOW, 1)
    again = Unanswered(path)  # a reboot
    slot = again.find(band(1), NOW + 1000)
    assert slot >= 0
    assert (again.mid(slot), again.ts(slot), again.direction(slot)) == (MID, NOW - 5, 0)
    assert again.direction(again.find(band(2), NOW + 1000)) == 1


def test_the_window_counts_from_the_operations_ts():
    table = Unanswered(mptest.scratch("unanswered"))
    slot = table.add(band(1), MID, NOW)
    assert table.find(band(1), NOW + 20_000) == slot  # resent at +20 s: still the same
    assert table.find(band(1), NOW + WINDOW_MS - 1) == slot
    assert table.find(band(1), NOW + WINDOW_MS) < 0, "30 s after its ts: a fresh operation"


def test_a_clock_that_went_back_expires_every_entry():
    table = Unanswered(mptest.scratch("unanswered"))
    table.add(band(1), MID, NOW)
    assert table.find(band(1), NOW - 1) < 0


def test_an_answer_removes_the_entry_and_a_full_table_drops_its_oldest():
    table = Unanswered(mptest.scratch("unanswered"))
    slot = table.add(band(1), MID, NOW)
    table.answered(slot)
    assert table.find(band(1), NOW) < 0
    assert len(table) == 0
    for i in range(8):
        table.add(band(i), bytes([i]) * 16, NOW + i)
    table.answered(table.find(band(0), NOW + 8))
    table.add(band(8), bytes([8]) * 16, NOW + 8)  # takes the slot band 0 left: the first one
    table.add(band(9), bytes([9]) * 16, NOW + 9)  # full: band 1, the oldest, gives way
    assert len(table) == 8
    assert table.find(band(0), NOW + 10) < 0
    assert table.find(band(1), NOW + 10) < 0
    for i in range(2, 10):
        slot = table.find(band(i), NOW + 10)
        assert slot >= 0, i
        assert table.mid(slot) == bytes([i]) * 16


def test_an_expired_entry_is_reused_before_a_live_one_is_dropped():
    table = Unanswered(mptest.scratch("unanswered"))
    for i in range(8):
        table.add(band(i), MID, NOW + i * WINDOW_MS)
    now = NOW + 7 * WINDOW_MS + 1  # only band 7 is still live
    table.add(band(9), MID, now)
    assert table.find(band(7), now) >= 0
    assert table.find(band(9), now) >= 0


def test_flash_is_written_only_when_the_table_changes():
    table = counted(mptest.scratch("unanswered"))
    slot = table.add(band(1), MID, NOW)
    assert table._file.writes == 1
    for _ in range(3):  # resends: looked up, never written
        assert table.find(band(1), NOW + 5) == slot
        table.mid(slot), table.ts(slot)
    table.find(band(2), NOW + 5)
    assert table._file.writes == 1
    table.answered(slot)
    assert table._file.writes == 2


def test_a_torn_temporary_file_never_loses_the_table():
    path = mptest.scratch("unanswered")
    table = Unanswered(path)
    table.add(band(1), MID, NOW)
    with open(path + ".tmp", "wb") as f:  # power cut in the middle of the next write
        f.write(b"\x01\x07\x04")
    slot = Unanswered(path).find(band(1), NOW + 1)
    assert slot >= 0
    assert Unanswered(path).mid(slot) == MID


def test_a_file_of_another_size_or_layout_is_ignored():
    path = mptest.scratch("unanswered")
    with open(path, "wb") as f:
        f.write(b"\x01" * 100)
    assert len(Unanswered(path)) == 0
    table = Unanswered(path)
    table.add(band(1), MID, NOW)
    with open(path, "rb") as f:
        data = bytearray(f.read())
    data[0] = 99  # a layout this firmware does not know
    with open(path, "wb") as f:
        f.write(data)
    assert len(Unanswered(path)) == 0


def test_the_temporary_file_stands_in_when_a_fat_rename_was_cut():
    # MicroPython's FAT rename removes the old file, then renames: a cut in between leaves the
    # complete temporary file only.
    path = mptest.scratch("unanswered")
    table = Unanswered(path)
    table.add(band(1), MID, NOW)
    os.rename(path, path + ".tmp")
    assert Unanswered(path).find(band(1), NOW + 1) >= 0


def cut_open(path, mode="r"):
    """open() on flash whose power goes right after a file is opened for writing."""
    if "w" in mode:
        with _open(path, mode):
            pass  # truncated, then the power goes
        raise OSError("power cut")
    return _open(path, mode)


_open = open


def test_a_second_cut_after_a_fat_rename_cut_loses_nothing():
    # The reader boots on the temporary file alone (the first cut); its next write is cut as the
    # temporary file is truncated. The operation read at boot must still be there after that.
    path = mptest.scratch("unanswered")
    Unanswered(path).add(band(1), MID, NOW)
    os.rename(path, path + ".tmp")  # the first cut: only the complete temporary file is left
    booted = Unanswered(path)
    assert booted.find(band(1), NOW + 1) >= 0
    flash.open = cut_open  # flash.py's own open(): a module global shadows the builtin
    try:
        mptest.raises(OSError, booted.add, band(2), MID, NOW)
    finally:
        del flash.open
    assert Unanswered(path).find(band(1), NOW + 2) >= 0


mptest.main(globals())
