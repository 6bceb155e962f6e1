# Runs on MicroPython: the reader's side of `bandlink bench list` (tools/bench.py). Kept under
# tests/ so it is never shipped to a board.
#
# argv: <folder> <records per chunk>. The folder holds, written by the CPython side:
#   snapshot.bin  the snapshot's records, sorted
#   adds.bin      the delta's records to add or replace, sorted; removes.bin: 16-byte records
#                 whose key (bytes 0..10) is a uid to remove, sorted
#   queries.bin   16-byte records: a uid's key, the flags expected (byte 11), 1 if listed (12)
# The list itself goes to <folder>/list. Only the BandList calls are timed (time.ticks_us); the
# chunks are read and the uids built outside the timed parts, as the MQTT decoder would.
# stdout: "heap module N", "build_ms X", "L <1 listed|0 not> <µs>" per look-up, "heap list N",
# "delta_ms X", "delta_chunks N", "size N", "count N", "wrong N" (results not as expected).
import gc
import os
import sys
import time

gc.collect()
_before = gc.mem_alloc()
from bandlist import BandList  # noqa: E402 - imported after the heap count on purpose

gc.collect()
print("heap module", gc.mem_alloc() - _before)

FOLDER = sys.argv[1]
PER_CHUNK = int(sys.argv[2])
wrong = 0


def size(path):
    return os.stat(path)[6]


def build(bl):
    path = FOLDER + "/snapshot.bin"
    n = size(path) // 16
    chunks = (n + PER_CHUNK - 1) // PER_CHUNK
    buf = bytearray(16 * PER_CHUNK)
    view = memoryview(buf)
    spent = 0
    with open(path, "rb") as f:
        for c in range(chunks):
            got = f.readinto(buf)
            began = time.ticks_us()
            ok = bl.snapshot(1, c, chunks, view[:got], 1_795_100_000)
            spent += time.ticks_diff(time.ticks_us(), began)
            if not ok:
                raise RuntimeError("snapshot chunk %d refused" % c)
    print("build_ms %.1f" % (spent / 1000))


def uid_of(rec):
    return bytes(rec[1 : 1 + rec[0]])


def look_up(bl):
    global wrong
    rec = bytearray(16)
    with open(FOLDER + "/queries.bin", "rb") as f:
        while f.readinto(rec) == 16:
            uid = uid_of(rec)
            expected = rec[11] if rec[12] else -1
            began = time.ticks_us()
            flags = bl.find(uid)
            spent = time.ticks_diff(time.ticks_us(), began)
            wrong += flags != expected
            print("L", rec[12], spent)


def removes_of(f, n):
    rec = bytearray(16)
    uids = []
    for _ in range(n):
        f.readinto(rec)
        uids.append(uid_of(rec))
    return uids


def apply_delta(bl):
    adds_n = size(FOLDER + "/adds.bin") // 16
    removes_n = size(FOLDER + "/removes.bin") // 16
    total = adds_n + removes_n
    chunks = max(1, (total + PER_CHUNK - 1) // PER_CHUNK)
    buf = bytearray(16 * PER_CHUNK)
    view = memoryview(buf)
    spent = 0
    with open(FOLDER + "/adds.bin", "rb") as adds, open(FOLDER + "/removes.bin", "rb") as rems:
        for c in range(chunks):
            # Each chunk carries its share of the adds and of the removes, both in order.
            a = adds_n * (c + 1) // chunks - adds_n * c // chunks
            r = removes_n * (c + 1) // chunks - removes_n * c // chunks
            got = adds.readinto(view[: 16 * a]) if a else 0
            removes = removes_of(rems, r)
            began = time.ticks_us()
            ok = bl.delta(2, 1, c, chunks, view[:got], removes)
            spent += time.ticks_diff(time.ticks_us(), began)
            if not ok:
                raise RuntimeError("delta chunk %d refused" % c)
    print("delta_ms %.1f" % (spent / 1000))
    print("delta_chunks", chunks)


def check_delta(bl):
    global wrong
    rec = bytearray(16)
    with open(FOLDER + "/adds.bin", "rb") as f:
        while f.readinto(rec) == 16:
            wrong += bl.find(uid_of(rec)) != rec[11]
    with open(FOLDER + "/removes.bin", "rb") as f:
        while f.readinto(rec) == 16:
            wrong += bl.find(uid_of(rec)) != -1


def main():
    path = FOLDER + "/list"
    build(BandList(path))
    gc.collect()
    before = gc.mem_alloc()
    bl = BandList(path)  # the list as a reader holds it after a boot: the file open
    gc.collect()
    print("heap list", gc.mem_alloc() - before)
    print("size", size(path))
    look_up(bl)
    apply_delta(bl)
    print("count", bl.count)
    check_delta(bl)
    bl.close()
    print("wrong", wrong)


main()
