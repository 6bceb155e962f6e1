# Runs on MicroPython: the reader's side of `bandlink fuzz --micropython` (tools/fuzz.py).
#
# stdin, binary: one byte, the number of seeds + 1; then per frame a 3-byte header (the seed's
# index, then the length, big-endian) and the frame. Each frame is read into one preallocated
# buffer and decoded from a memoryview of it, as a reader decodes from its MQTT receive buffer:
# the heap holds the decoder's objects and little else (a fuzzer that built its frames here
# would be testing its own fragmentation).
#
# stdout: "count <seed index> <outcome> <n>" per seed and outcome (an error code or "ok");
# "crash <frame number> <seed index> <exception> <n> <message>" for anything but ProtocolError
# (printed at once on the first occurrence; at the end, the rest of the count with the number
# of the shortest frame that showed it; crashes are told apart by exception and message start);
# "time_us <time spent in decode>" and "done <frames>".
import gc
import sys
import time

import protocol
from protocol import errors

BUFFER = protocol.MAX_SIZE + 64  # tools/fuzz.py never sends a longer frame


def read_into(stream, view):
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])
        if not n:
            return got
        got += n
    return got


def report_crash(crash, n):
    i, index, kind, _, _, detail = crash
    print("crash %d %d %s %d %s" % (i, index, kind, n, detail))


def main():
    stream = sys.stdin.buffer
    buf = bytearray(BUFFER)
    view = memoryview(buf)
    header = bytearray(3)
    head = memoryview(header)
    if read_into(stream, head[:1]) != 1:
        return
    rows = header[0]
    # Everything long-lived is made before the loop: objects made during it (a dict with tuple
    # keys, kept frames) scatter through the heap and fragment it.
    outcomes = ["ok", "CRASH"] + [
        getattr(errors, name) for name in dir(errors) if name.isupper() and name[0] != "_"
    ]
    slot = {outcome: i for i, outcome in enumerate(outcomes)}
    counts = [[0] * len(outcomes) for _ in range(rows)]
    crashes = {}
    decode = protocol.decode
    ProtocolError = protocol.ProtocolError
    ticks_us, ticks_diff = time.ticks_us, time.ticks_diff
    spent = 0
    i = 0
    gc.collect()
    while read_into(stream, head) == 3:
        index, size = header[0], header[1] << 8 | header[2]
        if read_into(stream, view[:size]) != size:
            break
        frame = view[:size]
        start = ticks_us()
        try:
            decode(frame)
            outcome = "ok"
        except ProtocolError as err:
            outcome = err.code
        except Exception as exc:  # noqa: BLE001 - the very thing being looked for
            # The frame's partial objects are garbage now: collect before allocating (a
            # MemoryError handler must not allocate first). The frame is not kept: the other
            # side makes it again from its number.
            gc.collect()
            outcome = "CRASH"
            detail = str(exc)
            key = type(exc).__name__ + " " + detail[:24]
            crash = crashes.get(key)
            if crash:  # counted, keeping the number of the shortest frame that shows it
                crash[3] += 1
                if size < crash[4]:
                    crash[0], crash[1], crash[4], crash[5] = i, index, size, detail
            else:
                crashes[key] = [i, index, type(exc).__name__, 1, size, detail]
                report_crash(crashes[key], 1)
        spent += ticks_diff(ticks_us(), start)
        if outcome not in slot:  # a code this list does not know: found once, then counted
            slot[outcome] = len(outcomes)
            outcomes.append(outcome)
            for row in counts:
                row.append(0)
        counts[index][slot[outcome]] += 1
        i += 1
    for index, row in enumerate(counts):
        for k, n in enumerate(row):
            if n:
                print("count %d %s %d" % (index, outcomes[k], n))
    for crash in crashes.values():
        if crash[3] > 1:
            report_crash(crash, crash[3] - 1)
    print("time_us %d" % spent)
    print("done %d" % i)


main()
