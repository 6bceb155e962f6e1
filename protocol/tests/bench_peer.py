# Runs on MicroPython: the reader's side of `bandlink bench codec` (tools/bench.py).
#
# stdin: "<seconds> <index of the gate tap> <rounds>", then one encoded example per line in hex.
# stdout: "version <MicroPython's>", then "rate <case> <set> <round trips per second>" for case
# "messages" (protocol.decode of a frame, then protocol.encode of the message) and "wire"
# (loads, then dumps of the wire map), set "all" (every example once per pass) and "tap" (the
# gate tap alone); each the median of <rounds> runs of <seconds>/<rounds>, timed with
# time.ticks_us, garbage collection included.
#
# Only the frames stay alive between round trips, as on a reader (one message at a time):
# holding every example decoded at once shreds a 112 KB heap into pieces too small for the
# 96-band list chunk's 1 KB lists.
import gc
import sys
import time
from binascii import unhexlify

import protocol


def rate(work, items, seconds, rounds):
    rates = []
    for _ in range(rounds):
        done = 0
        start = time.ticks_us()
        elapsed = 0
        while elapsed < seconds * 1e6 / rounds:
            for item in items:
                work(item)
            done += len(items)
            elapsed = time.ticks_diff(time.ticks_us(), start)
        rates.append(done * 1e6 / elapsed)
    rates.sort()
    return rates[len(rates) // 2]


def round_trip_message(frame):
    return protocol.encode(protocol.decode(frame))


def round_trip_wire(frame):
    return protocol.dumps(protocol.loads(frame))


def main():
    lines = sys.stdin.read().split()
    seconds, tap, rounds = float(lines[0]), int(lines[1]), int(lines[2])
    frames = [unhexlify(line) for line in lines[3:]]
    lines = None
    print("version %d.%d.%d" % sys.implementation.version[:3])
    for case, work in (("messages", round_trip_message), ("wire", round_trip_wire)):
        for subset, chosen in (("all", frames), ("tap", [frames[tap]])):
            gc.collect()
            print("rate %s %s %.1f" % (case, subset, rate(work, chosen, seconds, rounds)))


main()
