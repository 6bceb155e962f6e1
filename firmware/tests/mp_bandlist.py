# firmware/bandlist.py on the real MicroPython: snapshots, deltas and look-ups on files.
# Run by test_unix_port.py (micropython firmware/tests/mp_bandlist.py).
import gc
import os

import mptest
from bandlist import ENTRY, PAY, PIN, BandList

_PATHS = []  # every list made here; its .new, .add and .del are removed at the end too


def fresh():
    path = mptest.scratch("bandlist")
    _PATHS.append(path)
    return path


def key(uid):
    return (len(uid), uid)


def band(i, length=7):
    """A uid of length bytes for band number i (0..65535), distinct for distinct i."""
    return bytes([0x04, i >> 8, i & 0xFF] + [0xA0 + (i % 7)] * (length - 3))


def record(uid, flags=ENTRY, pin=b"\0\0", salt=b"\0\0"):
    r = bytearray(16)
    r[0] = len(uid)
    r[1 : 1 + len(uid)] = uid
    r[11] = flags
    r[12:14] = pin
    r[14:16] = salt
    return bytes(r)


def check_and_salt(bl, uid):
    """The PIN check and salt of the band's entry (found() after find()), or None."""
    if bl.find(uid) < 0:
        return None
    found = bl.found()
    return bytes(found[12:14]), bytes(found[14:16])


def records(uids, flags=ENTRY):
    """The records of uids in key order, as one chunk: keep it short (the heap here is shredded
    by compiling this script; the largest free block can be under 1 KB)."""
    return b"".join(record(u, flags) for u in sorted(uids, key=key))


def sent(bl, version, uids, chunks, valid_until_s=0, *, flags=ENTRY):
    """Send uids' records as a snapshot in `chunks` chunks; each chunk's result."""
    ordered = sorted(uids, key=key)
    per = (len(ordered) + chunks - 1) // chunks if ordered else 0
    results = []
    for c in range(chunks):
        part = records(ordered[c * per : (c + 1) * per], flags)
        results.append(bl.snapshot(version, c, chunks, part, valid_until_s))
    return results


UIDS = [band(i, (4, 7, 10)[i % 3]) for i in range(1, 61)]


def listed(path=None, version=5):
    path = path or fresh()
    bl = BandList(path)
    assert sent(bl, version, UIDS, 4, 1_795_100_000) == [True] * 4
    return bl


def test_a_snapshot_in_chunks_lists_every_band_and_no_other():
    bl = listed()
    assert (bl.version, bl.count, bl.valid_until_s) == (5, len(UIDS), 1_795_100_000)
    for uid in UIDS:
        assert bl.find(uid) == ENTRY, uid
    ordered = sorted(UIDS, key=key)
    absent = [
        b"\x00\x00\x00\x00",  # sorts before the first
        b"\xff" * 10,  # after the last
        ordered[0][:-1] + b"\x00",  # just below the first of its length
        band(500),
        band(1, 7)[:4],  # the first bytes of a listed 7-byte uid, as a 4-byte uid
        band(3, 4) + b"\0\0\0",  # a listed 4-byte uid padded to 7: another band
    ]
    for uid in absent:
        assert bl.find(uid) == -1, uid
    for uid in (b"", b"\x01", b"\x01" * 5, b"\x01" * 11):  # no band has such a uid
        assert bl.find(uid) == -1


def test_flags_pin_check_and_salt_come_back_as_sent():
    """A till's entries carry a PIN salt in bytes 14..15: once refused as a "mark" not zero."""
    bl = BandList(fresh())
    uids = sorted((band(1), band(2), band(3)), key=key)
    data = (
        record(uids[0], 0)
        + record(uids[1], PAY | PIN, b"\x12\x34", b"\xab\xcd")
        + record(uids[2], 0xFF, b"\xff\xff", b"\xff\xff")
    )
    assert bl.snapshot(1, 0, 1, data)
    assert [bl.find(u) for u in uids] == [0, PAY | PIN, 0xFF]
    assert check_and_salt(bl, uids[1]) == (b"\x12\x34", b"\xab\xcd")
    assert check_and_salt(bl, uids[2]) == (b"\xff\xff", b"\xff\xff")
    assert check_and_salt(bl, band(4)) is None
    with open(bl.path, "rb") as f:
        assert f.read()[16 + 16 + 12 : 16 + 16 + 16] == b"\x12\x34\xab\xcd"


def test_the_list_survives_a_reopen():
    bl = listed()
    bl.close()
    again = BandList(bl.path)
    assert (again.version, again.count) == (5, len(UIDS))
    assert again.find(UIDS[0]) == ENTRY


def test_an_empty_list():
    bl = BandList(fresh())
    assert (bl.version, bl.count, bl.valid_until_s) == (0, 0, 0)
    assert bl.find(band(1)) == -1
    assert bl.snapshot(2, 0, 1, b"")
    assert (bl.version, bl.count) == (2, 0)
    assert bl.find(band(1)) == -1
    assert BandList(bl.path).version == 2
    assert bl.delta(3, 2, 0, 1, record(band(1)), [])
    assert bl.find(band(1)) == ENTRY


def test_an_interrupted_snapshot_leaves_the_old_list():
    bl = listed()
    new = records([band(1000 + i) for i in range(40)], PAY)

    def check():
        assert (bl.version, bl.count) == (5, len(UIDS))
        assert bl.find(UIDS[0]) == ENTRY
        assert bl.find(band(1000)) == -1

    # A chunk missing: 0 then 2 of 3.
    assert bl.snapshot(6, 0, 3, new[: 16 * 10])
    assert not bl.snapshot(6, 2, 3, new[16 * 20 :])
    check()
    assert not bl.snapshot(6, 1, 3, new[16 * 10 : 16 * 20]), "the build was discarded"
    check()
    # A chunk of another version, or another chunk count, in the middle.
    for bad in ((7, 1, 3), (6, 1, 4)):
        assert bl.snapshot(6, 0, 3, new[: 16 * 10])
        assert not bl.snapshot(bad[0], bad[1], bad[2], new[16 * 10 : 16 * 20])
        check()
    # A record out of order (across chunks and within one), a torn record, a bad record.
    assert bl.snapshot(6, 0, 2, new[16 * 10 : 16 * 20])
    assert not bl.snapshot(6, 1, 2, new[: 16 * 10])
    swapped = new[16:32] + new[:16]
    torn = new[:24]
    padded = bytearray(new[:16])
    padded[10] = 1  # padding after a 7-byte uid
    for chunk in (swapped, new[:16] + new[:16], torn, padded):
        assert not bl.snapshot(6, 0, 1, chunk), chunk
        check()
    # A chunk with no build: refused (as after a reboot mid-build).
    assert not bl.snapshot(6, 1, 2, new[16 * 20 :])
    check()
    assert sent(bl, 6, [band(1000 + i) for i in range(40)], 3, flags=PAY) == [True] * 3
    assert (bl.version, bl.count, bl.find(band(1000)), bl.find(UIDS[0])) == (6, 40, PAY, -1)


def test_only_the_last_chunk_switches_even_across_a_reboot():
    path = fresh()
    bl = listed(path)
    new = records([band(1000 + i) for i in range(40)])
    assert bl.snapshot(6, 0, 2, new[: 16 * 20])
    os.stat(path + ".new")  # the power goes before the last chunk: the build's file is left
    rebooted = BandList(path)
    assert (rebooted.version, rebooted.count, rebooted.find(UIDS[0])) == (5, len(UIDS), ENTRY)
    mptest.raises(OSError, os.stat, path + ".new")  # removed at the reboot: flash not held
    assert not rebooted.snapshot(6, 1, 2, new[16 * 20 :]), "the build did not outlive the reboot"
    assert sent(rebooted, 6, [band(1000 + i) for i in range(40)], 2) == [True, True]
    assert (rebooted.version, rebooted.count, rebooted.find(band(1000))) == (6, 40, ENTRY)


def test_a_fat_rename_cut_takes_the_complete_new_list():
    path = fresh()
    listed(path).close()
    os.rename(path, path + ".new")  # FAT: the old list removed, the rename not done
    bl = BandList(path)
    assert (bl.version, bl.count, bl.find(UIDS[0])) == (5, len(UIDS), ENTRY)
    # An unfinished .new (placeholder header) is never taken for a list.
    new = records([band(1000 + i) for i in range(10)])
    assert bl.snapshot(6, 0, 2, new)
    os.remove(path)  # and the power goes: only the unfinished .new is left
    assert BandList(path).version == 0


def test_a_chunk_delivered_twice_changes_nothing():
    bl = listed()
    new = records([band(1000 + i) for i in range(30)])
    assert bl.snapshot(6, 0, 3, new[: 16 * 10])
    assert bl.snapshot(6, 0, 3, new[: 16 * 10]), "QoS 1 delivered chunk 0 again"
    assert bl.snapshot(6, 1, 3, new[16 * 10 : 16 * 20])
    assert bl.snapshot(6, 1, 3, new[16 * 10 : 16 * 20])
    assert bl.snapshot(6, 2, 3, new[16 * 20 :])
    assert bl.snapshot(6, 2, 3, new[16 * 20 :]), "the last chunk again, after the switch"
    assert (bl.version, bl.count) == (6, 30)
    # Only the chunk just taken counts as delivered twice: an older one is out of order.
    assert bl.snapshot(7, 0, 4, new[: 16 * 10])
    assert bl.snapshot(7, 1, 4, new[16 * 10 : 16 * 20])
    assert bl.snapshot(7, 2, 4, new[16 * 20 : 16 * 25])
    assert not bl.snapshot(7, 1, 4, new[16 * 10 : 16 * 20])
    assert not bl.snapshot(7, 3, 4, new[16 * 25 :]), "the build was discarded"
    assert (bl.version, bl.count) == (6, 30)
    adds = records([band(2000)])
    assert bl.delta(7, 6, 0, 1, adds, [])
    assert bl.delta(7, 6, 0, 1, adds, []), "a delta to the version held"
    assert (bl.version, bl.count) == (7, 31)


def test_a_delta_adds_replaces_and_removes_a_replaced_entry_taking_its_new_pin_check():
    """A replaced entry is the delta's whole: once bytes 14..15 were the old entry's "mark",
    which would have kept the old PIN salt beside a new PIN check (a new PIN never matching)."""
    bl = BandList(fresh())
    ordered = sorted(UIDS, key=key)
    kept, replaced, removed = ordered[10], ordered[20], ordered[30]
    old = [record(u, ENTRY, b"\x01\x01", b"\x02\x02") for u in ordered]
    assert bl.snapshot(5, 0, 2, b"".join(old[:30]), 1_795_100_000)
    assert bl.snapshot(5, 1, 2, b"".join(old[30:]), 1_795_100_000)
    added = [band(3000 + i, (4, 7, 10)[i % 3]) for i in range(12)] + [b"\x00" * 4, b"\xff" * 10]
    entries = [record(u, PAY) for u in added] + [record(replaced, PIN, b"\x77\x88", b"\x99\xaa")]
    entries.sort(key=lambda r: r[:11])
    removes = sorted([removed, ordered[0], ordered[-1], band(9999)], key=key)  # one absent
    half = len(entries) // 2
    assert bl.delta(6, 5, 0, 2, b"".join(entries[:half]), removes[:2])
    assert bl.version == 5, "nothing changes before the last chunk"
    assert bl.find(removed) == ENTRY
    assert bl.delta(6, 5, 1, 2, b"".join(entries[half:]), removes[2:])
    assert (bl.version, bl.count) == (6, len(UIDS) + len(added) - 3)
    assert bl.valid_until_s == 1_795_100_000, "a delta keeps the list's end of day"
    for uid in added:
        assert (bl.find(uid), check_and_salt(bl, uid)) == (PAY, (b"\0\0", b"\0\0")), uid
    assert bl.find(replaced) == PIN
    assert check_and_salt(bl, replaced) == (b"\x77\x88", b"\x99\xaa"), "the new check and salt"
    assert check_and_salt(bl, kept) == (b"\x01\x01", b"\x02\x02"), "kept as it was"
    for uid in (removed, ordered[0], ordered[-1], band(9999)):
        assert bl.find(uid) == -1
    assert bl.delta(7, 6, 0, 1, record(removed), [], 1_795_200_000)
    assert (bl.find(removed), check_and_salt(bl, removed)) == (ENTRY, (b"\0\0", b"\0\0"))
    assert bl.valid_until_s == 1_795_200_000
    with open(bl.path, "rb") as f:
        data = f.read()
    keys = [data[at : at + 11] for at in range(16, len(data), 16)]
    assert keys == sorted(keys) and len(set(keys)) == len(keys) == bl.count


def test_a_delta_from_another_base_or_out_of_order_is_refused():
    bl = listed()
    adds = records([band(3000), band(3001)])
    assert not bl.delta(7, 4, 0, 1, adds, []), "based on a list this reader does not hold"
    assert bl.delta(6, 5, 0, 3, adds[:16], [])
    assert not bl.delta(6, 5, 2, 3, adds[16:], []), "chunk 1 missing"
    assert not bl.delta(6, 5, 1, 3, adds[16:], []), "the delta was discarded"
    assert bl.delta(6, 5, 0, 2, adds[16:], [])
    assert not bl.delta(6, 5, 1, 2, adds[:16], []), "adds out of order across chunks"
    uids = sorted([UIDS[1], UIDS[2]], key=key)
    assert not bl.delta(6, 5, 0, 1, b"", [uids[1], uids[0]]), "removes out of order"
    assert not bl.delta(6, 5, 0, 1, b"", [b"\x01\x02"]), "a uid no band has"
    assert not bl.delta(6, 5, 0, 1, adds[:20], []), "a torn record"
    assert not bl.delta(6, 5, 0, 1, record(UIDS[1]), [UIDS[1]]), "added and removed"
    assert (bl.version, bl.count, bl.find(band(3000))) == (5, len(UIDS), -1)
    for suffix in (".add", ".del", ".new"):
        mptest.raises(OSError, os.stat, bl.path + suffix)  # a refused delta leaves no files


def test_a_stray_chunk_of_the_other_kind_leaves_a_build_alone():
    bl = listed()
    new = [band(1000 + i) for i in range(20)]
    assert bl.snapshot(6, 0, 2, records(new[:10]))
    assert not bl.delta(9, 4, 0, 1, b"", []), "a delta from another base"
    assert not bl.delta(9, 8, 3, 4, b"", []), "a delta's chunk with no delta begun"
    assert bl.snapshot(6, 1, 2, records(new[10:]))
    assert (bl.version, bl.count) == (6, 20)
    adds = records([band(3000), band(3001)])
    assert bl.delta(7, 6, 0, 2, adds[:16], [])
    assert not bl.snapshot(8, 1, 2, records(new)), "a snapshot's chunk with none begun"
    assert bl.delta(7, 6, 1, 2, adds[16:], [])
    assert (bl.version, bl.count) == (7, 22)
    assert bl.delta(8, 7, 0, 2, b"", [band(3000)])
    assert bl.snapshot(9, 0, 1, records(new)), "a good chunk 0 of the other kind takes over"
    assert not bl.delta(8, 7, 1, 2, b"", [band(3001)])
    assert (bl.version, bl.count, bl.find(band(3000))) == (9, 20, -1)


def test_a_delta_before_any_list_builds_one_from_version_0():
    bl = BandList(fresh())
    assert bl.delta(1, 0, 0, 1, records([band(1), band(2)]), [band(3)])
    assert (bl.version, bl.count, bl.find(band(2))) == (1, 2, ENTRY)


def test_a_big_delta_merges_runs_longer_than_a_block():
    bl = BandList(fresh())
    chunk = bytearray(16 * 25)  # bands 0, 2, 4 ... 1998 (in key order), 25 to a chunk
    for c in range(40):
        for n in range(25):
            chunk[n * 16 : n * 16 + 16] = record(band((c * 25 + n) * 2))
        assert bl.snapshot(1, c, 40, chunk)
    chunk = None
    adds = records([band(1), band(1001), band(1999)], PAY)
    assert bl.delta(2, 1, 0, 1, adds, [band(0), band(1998)])
    assert bl.count == 1000 + 3 - 2
    found = [bl.find(band(i)) for i in (0, 1, 2, 1000, 1001, 1998, 1999)]
    assert found == [-1, PAY, ENTRY, ENTRY, PAY, -1, PAY], found
    for i in range(2, 1998, 2):
        assert bl.find(band(i)) == ENTRY, i


def test_a_callers_buffer_is_used_for_records():
    buf = bytearray(64)
    bl = BandList(listed().path, buf)
    assert bl.find(UIDS[4]) == ENTRY
    assert buf[0] == len(UIDS[4]) and buf[16:] == bytearray(48), "only its first 16 bytes"


def looked_up(bl, hit, miss, times):
    for _ in range(times):
        bl.find(hit)
        bl.find(miss)
        bl.found()


def test_find_allocates_nothing():
    bl = listed()
    hit, miss = UIDS[17], band(4321, 10)
    looked_up(bl, hit, miss, 10)  # warm-up
    gc.collect()
    before = gc.mem_alloc()
    looked_up(bl, hit, miss, 1000)
    assert gc.mem_alloc() - before == 0, gc.mem_alloc() - before


def main():
    try:
        mptest.main(globals())
    finally:  # also after mptest's sys.exit on a failure
        for path in _PATHS:
            for suffix in ("", ".new", ".add", ".del"):
                try:
                    os.remove(path + suffix)
                except OSError:
                    pass


main()
