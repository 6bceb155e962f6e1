# Runs on MicroPython: the reader's side of test_bandlist.py, many scenarios in one run.
#
# argv: a file of operations, one a line (hex for bytes, "-" for none); one line out for each:
#   open <path>                                  -> "<version> <count> <valid_until_s>"
#   snap <version> <chunk> <chunks> <valid> <records>            -> 1 or 0
#   delta <version> <base> <chunk> <chunks> <records> <uid,uid>  -> 1 or 0
#   find <uid> -> flags or -1;  entry <uid> -> "<flags> <PIN check hex> <PIN salt hex>" or -1
#   copy <dest>        -> the list file copied to dest, "copied"
#   close              -> the list closed and its files removed, "closed"
import os
import sys
from binascii import hexlify, unhexlify

from bandlist import BandList


def data(word):
    return b"" if word == "-" else unhexlify(word)


def uids(word):
    return [] if word == "-" else [unhexlify(u) for u in word.split(",")]


def copy(src, dest):
    buf = bytearray(256)
    with open(src, "rb") as f, open(dest, "wb") as out:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            out.write(memoryview(buf)[:n])


def run(bl, w):
    op = w[0]
    if op == "snap":
        return int(bl.snapshot(int(w[1]), int(w[2]), int(w[3]), data(w[5]), int(w[4])))
    if op == "delta":
        args = (int(w[1]), int(w[2]), int(w[3]), int(w[4]), data(w[5]), uids(w[6]))
        return int(bl.delta(*args))
    if op == "find":
        return bl.find(unhexlify(w[1]))
    if op == "entry":
        flags = bl.find(unhexlify(w[1]))
        if flags < 0:
            return -1
        found = bl.found()
        return "%d %s %s" % (flags, hexlify(found[12:14]).decode(), hexlify(found[14:16]).decode())
    if op == "copy":
        copy(bl.path, w[1])
        return "copied"
    raise ValueError(op)


def close(bl):
    bl.close()
    for suffix in ("", ".new", ".add", ".del"):
        try:
            os.remove(bl.path + suffix)
        except OSError:
            pass
    return "closed"


def main():
    bl = None
    with open(sys.argv[1]) as f:
        for line in f:
            w = line.split()
            if w[0] == "open":
                bl = BandList(w[1])
                print(bl.version, bl.count, bl.valid_until_s)
            elif w[0] == "close":
                print(close(bl))
            else:
                print(run(bl, w))


main()
