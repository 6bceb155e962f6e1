# firmware/journal.py on the real MicroPython: appends, ends, iteration, recovery from a torn
# tail, compaction and clears, with a small capacity to keep it quick.
# Run by test_unix_port.py (micropython firmware/tests/mp_journal.py); the kill test and the
# model-based test are in test_journal.py.
import gc
import os

import journal as journal_module
import mptest
from journal import BUF_MIN, HEADER, PAYLOAD_AT, PAYLOAD_MAX, Cursor, Journal

CAPACITY = 8


def payload(i):
    """Distinct, of varying length, every byte value in turn: a copy that slips shows."""
    return bytes((i * 37 + j) & 255 for j in range(1 + (i * 13) % 60))


def pending_payloads(journal):
    found, cursor = [], Cursor()
    more = journal.first(cursor)
    while more:
        found.append(bytes(journal.buf[PAYLOAD_AT : PAYLOAD_AT + cursor.length]))
        more = journal.next(cursor)
    return found


def size(path):
    return os.stat(path)[6]


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)


def test_pending_operations_come_back_oldest_first_without_the_ended_ones():
    journal = Journal(mptest.scratch("journal"), CAPACITY)
    ids = [journal.append(payload(i)) for i in range(5)]
    assert len(set(ids)) == 5
    assert journal.end(ids[1]) and journal.end(ids[3])
    assert len(journal) == journal.pending == 3
    assert pending_payloads(journal) == [payload(0), payload(2), payload(4)]


def test_pending_survives_a_reboot_and_ended_ones_stay_ended():
    path = mptest.scratch("journal")
    journal = Journal(path, CAPACITY)
    ids = [journal.append(payload(i)) for i in range(4)]
    journal.end(ids[0])
    journal.end(ids[2])
    again = Journal(path, CAPACITY)  # a reboot
    assert again.pending == 2
    assert again.torn_bytes == 0
    assert pending_payloads(again) == [payload(1), payload(3)]
    cursor = Cursor()
    again.first(cursor)
    assert again.end(cursor.id)  # an id found by iterating after the reboot
    assert pending_payloads(Journal(path, CAPACITY)) == [payload(3)]


def test_ending_twice_writes_nothing_more():
    path = mptest.scratch("journal")
    journal = Journal(path, CAPACITY)
    op = journal.append(payload(1))
    journal.append(payload(2))
    journal.end(op)
    before = size(path)
    assert journal.end(op)
    assert size(path) == before
    assert journal.pending == 1


def test_read_gives_back_a_payload_by_its_id_and_offset():
    journal = Journal(mptest.scratch("journal"), CAPACITY)
    journal.append(payload(1))
    op = journal.append(payload(2))
    offset = journal.last_offset
    into = bytearray(PAYLOAD_MAX)
    n = journal.read(op, offset, into)
    assert bytes(into[:n]) == payload(2)
    n = journal.read(op, offset, journal.buf)  # the shared buffer itself
    assert bytes(journal.buf[:n]) == payload(2)
    journal.end(op)
    assert journal.read(op, offset, into) == -1
    mptest.raises(ValueError, journal.read, op + 1, offset, into)  # never issued


def test_all_ended_clears_a_large_file_and_a_small_one_is_left():
    path = mptest.scratch("journal")
    journal = Journal(path, CAPACITY, clear_above=200)
    op = journal.append(payload(1))
    journal.end(op)
    assert journal.clears == 0, "under the threshold: no rewrite"
    ids = [journal.append(payload(i)) for i in range(2, 8)]
    for op in ids:
        journal.end(op)
    assert journal.clears == 1
    assert read_file(path) == HEADER
    assert journal.end(ids[0]), "an id from before a clear was ended"
    mptest.raises(ValueError, journal.read, ids[0], 4, bytearray(PAYLOAD_MAX))
    op = journal.append(payload(9))
    assert op not in ids, "ids are not reused after a clear"
    assert pending_payloads(Journal(path, CAPACITY)) == [payload(9)]


def test_a_full_journal_refuses_and_writes_nothing():
    path = mptest.scratch("journal")
    journal = Journal(path, CAPACITY)
    for i in range(CAPACITY):
        assert journal.append(payload(i)) >= 0
    before = size(path)
    assert journal.append(payload(99)) == -1
    assert size(path) == before
    assert journal.compactions == 0
    assert pending_payloads(Journal(path, CAPACITY)) == [payload(i) for i in range(CAPACITY)]


def test_compaction_keeps_every_pending_payload_exact_and_in_order():
    path = mptest.scratch("journal")
    journal = Journal(path, CAPACITY)
    ids = [journal.append(payload(i)) for i in range(CAPACITY)]
    for i in (0, 2, 3, 6):
        journal.end(ids[i])
    assert journal.compactions == 0
    newer = journal.append(payload(100))  # the file's ordinals are used up: compacts first
    assert journal.compactions == 1
    kept = [payload(1), payload(4), payload(5), payload(7), payload(100)]
    assert pending_payloads(journal) == kept
    assert pending_payloads(Journal(path, CAPACITY)) == kept
    # An id from before the compaction no longer says which record it was: nothing is ended.
    assert not journal.end(ids[1])
    assert journal.pending == 5
    assert journal.end(newer)
    assert pending_payloads(Journal(path, CAPACITY)) == kept[:-1]


def test_a_cursor_moved_by_a_compaction_starts_again_from_the_oldest():
    journal = Journal(mptest.scratch("journal"), CAPACITY)
    ids = [journal.append(payload(i)) for i in range(CAPACITY)]
    cursor = Cursor()
    assert journal.first(cursor)
    assert journal.next(cursor)  # on payload(1)
    journal.end(ids[0])
    journal.append(payload(50))  # compacts: offsets change
    assert journal.next(cursor)
    assert bytes(journal.buf[PAYLOAD_AT : PAYLOAD_AT + cursor.length]) == payload(1)


def test_a_torn_tail_recovers_to_exactly_the_records_before_it():
    path = mptest.scratch("journal")
    journal = Journal(path, CAPACITY)
    ops = [journal.append(payload(i)) for i in range(3)]
    journal.end(ops[1])
    before_last = size(path)
    journal.append(payload(3))
    whole = read_file(path)
    last = len(whole) - before_last
    for k in range(1, last + 1):  # every cut inside the last record, down to none of it
        write_file(path, whole[: len(whole) - k])
        again = Journal(path, CAPACITY)
        assert again.torn_bytes == last - k, (k, again.torn_bytes)
        assert pending_payloads(again) == [payload(0), payload(2)], k
        assert size(path) == before_last, "the torn bytes are cut off the file"
        again.append(payload(4))  # appended after the cut, it survives the next boot
        assert pending_payloads(Journal(path, CAPACITY)) == [payload(0), payload(2), payload(4)]
    for at in range(before_last, len(whole)):  # a flipped bit anywhere in the last record
        damaged = bytearray(whole)
        damaged[at] ^= 0x10
        write_file(path, damaged)
        again = Journal(path, CAPACITY)
        assert pending_payloads(again) == [payload(0), payload(2)], at
        assert again.torn_bytes == last


def test_a_torn_end_leaves_its_operation_pending():
    path = mptest.scratch("journal")
    journal = Journal(path, CAPACITY)
    op = journal.append(payload(1))
    with_op = size(path)
    journal.end(op)
    write_file(path, read_file(path)[:-1])
    again = Journal(path, CAPACITY)
    assert again.pending == 1
    assert size(path) == with_op


def test_an_end_of_an_op_not_before_it_ends_the_valid_prefix():
    path = mptest.scratch("journal")
    journal = Journal(path, CAPACITY)
    journal.append(payload(1))
    before = size(path)
    # A well-formed END of ordinal 5 with its CRC, after one OP: nothing made it.
    other = Journal(mptest.scratch("journal"), CAPACITY)
    for i in range(6):
        other.append(payload(i))
    other.end(5)
    end_record = read_file(other.path)[-9:]
    with open(path, "ab") as f:
        f.write(end_record)
    again = Journal(path, CAPACITY)
    assert again.pending == 1
    assert again.torn_bytes == 9
    assert size(path) == before


def test_a_file_with_another_header_is_rewritten_empty():
    path = mptest.scratch("journal")
    write_file(path, b"XX\x01\x00" + b"\x00\x05" + b"junk" * 10)
    journal = Journal(path, CAPACITY)
    assert journal.foreign_header
    assert journal.pending == 0
    assert journal.torn_bytes == 46
    assert read_file(path) == HEADER
    journal = Journal(mptest.scratch("journal"), CAPACITY)
    journal.append(payload(1))
    data = bytearray(read_file(journal.path))
    data[2] = 2  # a format this firmware does not know
    write_file(journal.path, data)
    assert Journal(journal.path, CAPACITY).pending == 0
    fresh = Journal(mptest.scratch("journal"), CAPACITY)
    assert not fresh.foreign_header and fresh.torn_bytes == 0, "no file yet is not foreign"


def test_a_payload_over_256_bytes_is_refused_and_256_is_taken():
    path = mptest.scratch("journal")
    journal = Journal(path, CAPACITY)
    mptest.raises(ValueError, journal.append, bytes(PAYLOAD_MAX + 1))
    assert read_file(path) == HEADER
    big = bytes(range(256))
    journal.append(big)
    assert pending_payloads(Journal(path, CAPACITY)) == [big]
    mptest.raises(ValueError, Journal, mptest.scratch("journal"), CAPACITY, bytearray(BUF_MIN - 1))


def test_the_callers_buffer_is_the_one_used():
    shared = bytearray(BUF_MIN)
    journal = Journal(mptest.scratch("journal"), CAPACITY, shared)
    journal.append(b"\x5a" * 20)
    journal.first(Cursor())
    assert journal.buf is shared
    assert shared[PAYLOAD_AT : PAYLOAD_AT + 20] == b"\x5a" * 20


def test_only_the_temporary_file_left_by_a_fat_rename_cut_is_adopted():
    path = mptest.scratch("journal")
    journal = Journal(path, CAPACITY)
    journal.append(payload(1))
    os.rename(path, path + ".tmp")
    assert pending_payloads(Journal(path, CAPACITY)) == [payload(1)]


class ShortWriter:
    """A file whose writes stop halfway, as on a full flash."""

    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, buf, n):
        return self.f.write(buf, n // 2)


def short_open(path, mode="r"):
    f = _open(path, mode)
    return ShortWriter(f) if mode == "ab" else f


_open = open


def test_a_short_write_is_cut_back_so_later_records_survive_a_reboot():
    path = mptest.scratch("journal")
    journal = Journal(path, CAPACITY)
    journal.append(payload(1))
    before = size(path)
    journal_module.open = short_open  # journal.py's own open(): a module global shadows it
    try:
        mptest.raises(OSError, journal.append, payload(2))
    finally:
        del journal_module.open
    assert size(path) == before, "the half record is gone"
    journal.append(payload(3))
    assert pending_payloads(Journal(path, CAPACITY)) == [payload(1), payload(3)]


def open_append_close(path, buf, n):
    with open(path, "ab") as f:
        f.write(buf, n)


def test_a_tap_allocates_no_more_than_its_two_file_writes():
    path = mptest.scratch("journal")
    journal = Journal(path, 1024, clear_above=1 << 20)
    tap = payload(5)
    scratch = mptest.scratch("journal-io")
    gc.collect()
    gc.disable()
    try:
        start = gc.mem_alloc()
        for _ in range(20):
            open_append_close(scratch, journal.buf, 100)
        file_io = (gc.mem_alloc() - start) / 20
        start = gc.mem_alloc()
        for _ in range(20):
            journal.end(journal.append(tap))
        per_tap = (gc.mem_alloc() - start) / 20
    finally:
        gc.enable()
    print("heap per open+write+close %d B, per append+end %d B" % (file_io, per_tap))
    assert per_tap <= 2 * file_io + 8, (per_tap, file_io)


mptest.main(globals())
