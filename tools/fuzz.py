"""``bandlink fuzz``: mutated and random frames at the single receive entry point.

The seeds are the encoded examples (``protocol/examples.py``: every message type). Each frame is
either a random buffer or a seed put through one to three mutations: bit flips, byte replacement
(random or CBOR-significant bytes), insertion, deletion, truncation, extension, a splice with
another seed, a duplicated region, a length head set to a huge value, deep nesting, a wide array
or map (up to the size limit), and a scalar item replaced by an item of another type or range.
Every frame goes to ``decode``; the only acceptable outcomes are a message or ``ProtocolError``,
counted by its code. Anything else is a failure, printed with the frame in hex (the shortest
frame of each kind of failure), and the command exits 1.

The same frames then go through the gateway's core, ``Core.handle``, on the topic their seed
belongs on and on a real store (a scratch SQLite file, migrated, the demo venue loaded), in
transactions of ``HANDLER_BATCH`` frames as the decision worker runs them. The only acceptable
outcomes there are events and replies that decode (a Result answers the frame's ``mid``);
an exception out of ``handle`` is a failure (the batch is then run again frame by frame, so the
failure names its frame).

``--micropython`` also runs the reader's side: the same frames (same seed, same sequence) are
streamed to ``protocol/tests/fuzz_peer.py`` on the real MicroPython unix port, at the reader's
heap ceiling, with the compiled ``.mpy`` protocol. The peer reads each into one preallocated
buffer and decodes a memoryview of it, as the reader does with its MQTT receive buffer, so its
heap holds the decoder's objects and little else. Frames/s counts the time spent in ``decode``
only, on both sides (generation runs in this process, in parallel with MicroPython).
"""

from __future__ import annotations

import platform
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bandlink.protocol import (
    MAX_SIZE,
    Birth,
    Death,
    Message,
    ProtocolError,
    decode,
    encode,
    peek_tap,
    topics,
)
from bandlink.protocol.cbor import MAX_ITEMS
from bandlink.protocol.examples import examples

from .micropython import DEFAULT_HEAP, REPO_ROOT, micropython_command, micropython_env
from .processes import stop_process

PEER = "protocol/tests/fuzz_peer.py"
RANDOM = "random bytes"
OK = "ok"
# Failures printed in full per leg; more are counted. One failure per (leg, exception, place).
SHOW_FAILURES = 10

# Bytes that mean something to a CBOR decoder: heads with 1/2/4/8-byte arguments, the reserved
# and indefinite additional information of each major type, tags, simple values, floats, break.
INTERESTING = bytes.fromhex(
    "00 17 18 19 1a 1b 1c 1f 20 38 3b 40 58 5b 5f 60 78 7b 7f 80 98 9b 9f a0 b8 bb bf c0 d8"
    " f4 f5 f6 f7 f8 f9 fa fb ff"
)
# Whole items put in place of a value (a field of the wrong type or out of range, text a reader
# id or a topic must not hold, a container where a scalar belongs), so frames reach the checks
# behind the CBOR layer and not only the CBOR layer.
ITEMS = [
    b"\x00",
    b"\x17",
    b"\x18\xff",
    b"\x19\xff\xff",
    b"\x1a\xff\xff\xff\xff",
    b"\x1b\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x20",
    b"\x3b\x7f\xff\xff\xff\xff\xff\xff\xff",
    b"\x3b\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x40",
    b"\x4f" + b"\xa5" * 15,
    b"\x60",
    b"\x61$",
    b"\x61/",
    b"\x62\xc3\xa9",
    b"\x78\x21" + b"a" * 33,
    b"\x80",
    b"\x81\x00",
    b"\xa0",
    b"\xa1\x00\x01",
    b"\xf4",
    b"\xf5",
    b"\xf6",
    b"\xf7",
    b"\xc1\x00",
    b"\xf9\x00\x00",
]
MUTATIONS = 13
FRAME_MAX = MAX_SIZE + 64  # longer frames are cut: still too large, and fit the peer's buffer
# Wide containers are built around the decoder's item limit: past it they are refused at the
# head (too_large) before anything is allocated, so wider ones would test nothing more.
WIDE_MAX = MAX_ITEMS + 3


def head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    if n < 0x100:
        return bytes([major << 5 | 24, n])
    return bytes([major << 5 | 25, n >> 8, n & 0xFF])


# The pairs {0: null, 1: null, ...} of a wide map, made once; a prefix of it holds `count` pairs.
MAP_ITEMS = b"".join(head(0, key) + b"\xf6" for key in range(WIDE_MAX))


def map_items_size(count: int) -> int:
    count = min(count, WIDE_MAX)
    return 2 * min(count, 24) + 3 * max(0, count - 24)  # keys below 24 take one byte


def leaf(b: bytes | bytearray, want: int) -> tuple[int, int]:  # noqa: PLR0912 - a CBOR walk
    """(number of scalar items, 0) of a well-formed frame with want < 0, (0, 0) if it is not
    well-formed; else (start, end) of scalar item number `want`. A walk over the heads, no
    decoding and no list of them (a wide frame has thousands)."""
    count = 0
    todo = 1  # items still to read in the open container; the outer ones' counts on a stack
    stack: list[int] = []
    p = 0
    n = len(b)
    while True:
        while todo == 0:
            if not stack:
                return (count, 0) if p == n else (0, 0)
            todo = stack.pop()
        if p >= n:
            return 0, 0
        start = p
        todo -= 1
        major = b[p] >> 5
        ai = b[p] & 0x1F
        p += 1
        if ai < 24:
            arg = ai
        elif ai < 28:
            size = 1 << (ai - 24)
            if p + size > n:
                return 0, 0
            arg = 0
            for k in range(size):
                arg = arg << 8 | b[p + k]
            p += size
        else:
            return 0, 0
        if major in (2, 3):
            p += arg
            if p > n:
                return 0, 0
        if major in (4, 5, 6):
            stack.append(todo)
            todo = arg * 2 if major == 5 else arg if major == 4 else 1
        elif count == want:
            return start, p
        else:
            count += 1


class Mutator:
    """Frames from seeds, reproducibly: the same seed gives the same sequence, so a frame is
    named by its number (how a failure on MicroPython is shown here)."""

    def __init__(self, seeds: Sequence[bytes], seed: int) -> None:
        self.seeds = [bytes(s) for s in seeds]
        self.state = (seed * 2654435761 + 1) & 0xFFFFFFFF or 0x9E3779B9

    def rand(self) -> int:
        # xorshift32: small, fast, and the same sequence on every Python version.
        x = self.state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.state = x
        return x

    def below(self, n: int) -> int:
        return self.rand() % n if n > 0 else 0

    def random_bytes(self, n: int) -> bytes:
        return bytes([self.rand() & 0xFF for _ in range(n)])

    def frame(self) -> tuple[int, bytes]:
        """(index of the seed, or len(seeds) for a random buffer; the frame)."""
        if self.below(16) == 0:
            size = self.below(600) if self.below(4) == 0 else self.below(64)
            return len(self.seeds), self.random_bytes(size)
        index = self.below(len(self.seeds))
        b = bytearray(self.seeds[index])
        for _ in range(1 + self.below(3)):
            b = self.mutate(b)
        return index, bytes(b[:FRAME_MAX])

    def mutate(self, b: bytearray) -> bytearray:  # noqa: PLR0912, PLR0915 - one branch each
        op = self.below(MUTATIONS)
        n = len(b)
        if op == 0:  # flip bits
            for _ in range(1 + self.below(4)):
                if n:
                    b[self.below(n)] ^= 1 << self.below(8)
        elif op == 1:  # replace bytes, half of them with CBOR-significant ones
            for _ in range(1 + self.below(4)):
                if n:
                    p = self.below(n)
                    if self.below(2):
                        b[p] = INTERESTING[self.below(len(INTERESTING))]
                    else:
                        b[p] = self.rand() & 0xFF
        elif op == 2:  # insert random bytes
            p = self.below(n + 1)
            b = b[:p] + self.random_bytes(1 + self.below(8)) + b[p:]
        elif op == 3:  # delete a run
            p = self.below(n)
            b = b[:p] + b[p + 1 + self.below(8) :]
        elif op == 4:  # truncate
            b = b[: self.below(n + 1)]
        elif op == 5:  # extend with random bytes
            b = b + self.random_bytes(1 + self.below(64))
        elif op == 6:  # splice: a head of this frame, a tail of another seed
            other = self.seeds[self.below(len(self.seeds))]
            b = b[: self.below(n + 1)] + other[self.below(len(other) + 1) :]
        elif op == 7:  # duplicate a region
            p = self.below(n)
            q = p + 1 + self.below(64)
            r = self.below(n + 1)
            b = b[:r] + b[p:q] + b[r:]
        elif op == 8:  # a head with a huge argument (a length, a count, an integer)
            p = self.below(n)
            major = b[p] >> 5 if n else 2 + self.below(4)
            ai = 25 + self.below(3)
            size = 1 << (ai - 24)
            arg = b"\xff" * size if self.below(2) else self.random_bytes(size)
            b = b[:p] + bytes([major << 5 | ai]) + arg + b[p + 1 :]
        elif op == 9:  # nest deep: arrays of one, or maps {0: ...}, around a point
            p = self.below(n + 1)
            wrap = bytearray()
            for _ in range(1 + self.below(12)):
                wrap += b"\x81" if self.below(2) else b"\xa1\x00"
            b = b[:p] + wrap + b[p:]
        elif op == 10:  # a wide array or map in place of a byte
            p = self.below(n)
            # One time in four right at the item limit (just under, at, just over), else smaller.
            if self.below(4) == 0:
                count = WIDE_MAX - self.below(6)
            else:
                count = 1 + self.below(MAX_ITEMS // 2)
            if self.below(2):
                wide = head(4, count) + b"\x00" * count
            else:
                wide = head(5, count) + MAP_ITEMS[: map_items_size(count)]
            b = b[:p] + wide + b[p + 1 :]
        elif op >= 11:  # a scalar item replaced by another item (twice as likely as the rest)
            count = leaf(b, -1)[0]
            if count:
                start, end = leaf(b, self.below(count))
                b = b[:start] + ITEMS[self.below(len(ITEMS))] + b[end:]
        return b


# protocol/ is portable, so lightly annotated: a typed view of its examples.
_examples: Callable[[], list[tuple[str, Message]]] = examples


def seeds() -> list[tuple[str, bytes]]:
    """(name, encoded frame) of every example: at least one per message type."""
    return [(name, encode(message)) for name, message in _examples()]


@dataclass
class Failure:
    seed: str
    kind: str
    detail: str
    frame: bytes
    count: int = 1
    number: int = -1  # the frame's place in the sequence the seed makes


@dataclass
class Report:
    leg: str
    names: list[str]
    frames: int = 0
    seconds: float = 0.0  # in decode
    wall: float = 0.0  # the whole leg, generation included
    by_seed: dict[str, Counter[str]] = field(default_factory=dict)
    failures: dict[str, Failure] = field(default_factory=dict)
    step: str = "decode"  # what the timed part of the leg is
    clean: str = "every frame decoded or raised ProtocolError"

    def count(self, seed: str, outcome: str, n: int = 1) -> None:
        self.by_seed.setdefault(seed, Counter())[outcome] += n

    def fail(self, key: str, failure: Failure) -> None:
        # One entry per kind of failure, counted, with the shortest frame that showed it.
        seen = self.failures.get(key)
        if seen is None:
            self.failures[key] = failure
            return
        seen.count += failure.count
        if failure.frame and len(failure.frame) < len(seen.frame):
            seen.seed, seen.detail, seen.frame = failure.seed, failure.detail, failure.frame
            seen.number = failure.number

    def outcomes(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for counts in self.by_seed.values():
            total.update(counts)
        return total


def fuzz_cpython(frames: int, seed: int) -> Report:
    """Feed ``frames`` frames to ``bandlink.protocol.decode``."""
    named = seeds()
    names = [name for name, _ in named] + [RANDOM]
    mutator = Mutator([frame for _, frame in named], seed)
    report = Report(f"CPython {platform.python_version()}", names)
    clock = time.perf_counter
    started = clock()
    spent = 0.0
    for number in range(frames):
        index, frame = mutator.frame()
        name = names[index]
        start = clock()
        try:
            decode(frame)
        except ProtocolError as err:
            report.count(name, err.code)
        except Exception as exc:  # noqa: BLE001 - the very thing being looked for
            report.count(name, "CRASH")
            place = traceback.extract_tb(exc.__traceback__)[-1]
            where = f"{place.filename.rsplit('/', 1)[-1]}:{place.lineno}"
            failure = Failure(name, type(exc).__name__, f"{exc} (at {where})", frame, 1, number)
            report.fail(f"{type(exc).__name__} {where}", failure)
        else:
            report.count(name, OK)
        finally:
            spent += clock() - start
    report.seconds = spent
    report.wall = clock() - started
    report.frames = frames
    return report


def _stream(peer: subprocess.Popen[bytes], mutator: Mutator, frames: int, rows: int) -> None:
    """Write the frames to the peer: a byte with the number of rows, then per frame its seed's
    index, its length (two bytes, big-endian) and the frame; then close its stdin."""
    assert peer.stdin is not None
    chunk = bytearray([rows])
    try:
        for _ in range(frames):
            index, frame = mutator.frame()
            chunk += bytes([index, len(frame) >> 8, len(frame) & 0xFF]) + frame
            if len(chunk) >= 1 << 16:
                peer.stdin.write(chunk)
                chunk.clear()
        peer.stdin.write(chunk)
        peer.stdin.close()
    except BrokenPipeError:  # the peer died: its output says why
        pass


def _frames_by_number(
    names: list[str], seed_frames: list[bytes], seed: int, wanted: set[int]
) -> dict[int, tuple[str, bytes]]:
    """(seed name, frame) of the frames with the wanted numbers in the sequence of ``seed``."""
    found = {}
    mutator = Mutator(seed_frames, seed)
    for number in range(max(wanted, default=-1) + 1):
        index, frame = mutator.frame()
        if number in wanted:
            found[number] = (names[index], frame)
    return found


def fuzz_micropython(frames: int, seed: int, heap: str = DEFAULT_HEAP) -> Report:
    """The same frames through the reader's compiled protocol on MicroPython."""
    named = seeds()
    names = [name for name, _ in named] + [RANDOM]
    started = time.perf_counter()
    peer = subprocess.Popen(
        micropython_command(PEER, heap=heap),
        env=micropython_env(),
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        mutator = Mutator([frame for _, frame in named], seed)
        writer = threading.Thread(target=_stream, args=(peer, mutator, frames, len(names)))
        writer.start()
        assert peer.stdout is not None
        output = peer.stdout.read().decode(errors="replace")
        writer.join()
        returncode = peer.wait()
    finally:
        stop_process(peer)  # an exception or Ctrl-C here must not leave the peer running
    report = Report(f"MicroPython, heap {heap}", names)
    report.wall = time.perf_counter() - started
    finished = False
    crashes: list[tuple[int, str, str, int]] = []
    for line in output.splitlines():
        word, _, rest = line.partition(" ")
        if word == "count":
            index, outcome, n = rest.split(" ")
            report.count(names[int(index)], outcome, int(n))
        elif word == "crash":
            fields = [*rest.split(" ", 4), ""][:5]  # number, seed index, kind, count, message
            crashes.append((int(fields[0]), fields[2], fields[4], int(fields[3])))
        elif word == "time_us":
            report.seconds = int(rest) / 1e6
        elif word == "done":
            report.frames = int(rest)
            finished = report.frames == frames
    # The peer keeps no frames (they would fragment its heap): make them again by number.
    again = _frames_by_number(names, [frame for _, frame in named], seed, {c[0] for c in crashes})
    for number, kind, detail, count in crashes:
        name, frame = again[number]
        report.fail(f"{kind} {detail[:24]}", Failure(name, kind, detail, frame, count, number))
    if returncode != 0 or not finished:
        # MicroPython prints an uncaught exception's traceback on stdout.
        detail = f"exit {returncode}: {output.strip()[-2000:] or 'no output'}"
        report.fail("process", Failure("-", "process died", detail, b""))
    return report


# -- the gateway's core ------------------------------------------------------------------------

HANDLER_BATCH = 64
# The gateway's clock for the handler leg: just after the examples' ts, before their deadline.
HANDLER_NOW_MS = 1_795_000_000_400


def _seed_topic(message: Message) -> str:
    """The topic a seed arrives on: births and deaths on their own, everything else on evt
    (where the core drops what does not belong)."""
    kind = topics.BIRTH if isinstance(message, Birth) else topics.EVT
    kind = topics.DEATH if isinstance(message, Death) else kind
    return topics.reader_topic(message.reader or "gate-1", kind)


def _outcome(effects: Any) -> str:
    """What became of one frame, from its first event: a drop's code, a tap's reason, ..."""
    for event in effects.events:
        return str(
            getattr(event, "code", None)
            or getattr(event, "reason", None)
            or getattr(event, "kind", None)
            or ("birth" if getattr(event, "online", False) else "death")
        )
    return "nothing"


def _check_replies(effects: Any, frame: bytes) -> None:
    """Every reply the core gives must decode; a Result answers the frame's mid."""
    from bandlink.protocol import Result

    for reply in effects.replies:
        if not reply.payload and reply.retain:
            continue  # a retained topic cleared
        answer = decode(reply.payload)
        if isinstance(answer, Result):
            asked = decode_mid(frame)
            if asked is not None and answer.corr != asked:
                raise AssertionError(f"a Result for {answer.corr!r} answers a tap {asked!r}")


def decode_mid(frame: bytes) -> bytes | None:
    try:
        return decode(frame).mid
    except ProtocolError:
        peeked = peek_tap(frame)  # a broken tap is answered under the mid it names
        return None if peeked is None else peeked[1]


def fuzz_handler(frames: int, seed: int) -> Report:
    """The frames of ``fuzz_cpython`` through ``Core.handle`` on a real SQLite store."""
    import tempfile
    from datetime import date
    from pathlib import Path

    from bandlink.gateway.core.handler import Core, Frame
    from bandlink.gateway.store import Store
    from bandlink.gateway.venue import DEMO_VENUE

    named = seeds()
    names = [name for name, _ in named] + [RANDOM]
    seed_topics = [_seed_topic(message) for _, message in _examples()]
    seed_topics.append(topics.reader_topic("gate-1", topics.EVT))
    mutator = Mutator([frame for _, frame in named], seed)
    report = Report("gateway core (Core.handle on SQLite)", names, step="the core")
    report.clean = "every frame handled, every reply decodes and answers its frame"
    core = Core()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bandlink-fuzz-") as workdir:
        store = Store(f"sqlite:///{Path(workdir) / 'fuzz.db'}")
        try:
            store.migrate()
            store.load_venue(DEMO_VENUE, today=date(2026, 11, 18))
            done = 0
            while done < frames:
                count = min(HANDLER_BATCH, frames - done)
                batch = []
                for number in range(done, done + count):
                    index, payload = mutator.frame()
                    frame = Frame(seed_topics[index], payload, HANDLER_NOW_MS)
                    batch.append((number, names[index], frame))
                _handle_batch(core, store, batch, report)
                done += count
        finally:
            store.close()
    report.wall = report.seconds = time.perf_counter() - started
    report.frames = frames
    return report


def _handle_batch(core: Any, store: Any, batch: list[tuple[int, str, Any]], report: Report) -> None:
    """One transaction for the batch, as the worker runs them; if it raises, each frame in its
    own transaction, to name the one that failed."""
    outcomes = []
    try:
        with store.transaction() as tx:
            for _number, name, frame in batch:
                effects = core.handle([frame], HANDLER_NOW_MS, tx)
                _check_replies(effects, frame.payload)
                outcomes.append((name, _outcome(effects)))
    except Exception:  # noqa: BLE001 - one frame of the batch failed: find which
        outcomes = []
        for number, name, frame in batch:
            outcome = _handle_one(core, store, frame, report, number=number, name=name)
            outcomes.append((name, outcome))
    for name, outcome in outcomes:
        report.count(name, outcome)


def _handle_one(
    core: Any, store: Any, frame: Any, report: Report, *, number: int, name: str
) -> str:
    try:
        with store.transaction() as tx:
            effects = core.handle([frame], HANDLER_NOW_MS, tx)
            _check_replies(effects, frame.payload)
            return _outcome(effects)
    except Exception as exc:  # noqa: BLE001 - the very thing being looked for
        place = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{place.filename.rsplit('/', 1)[-1]}:{place.lineno}"
        detail = f"{exc} (at {where})"[:300]
        failure = Failure(name, type(exc).__name__, detail, frame.payload, 1, number)
        report.fail(f"{type(exc).__name__} {where}", failure)
        return "CRASH"


def print_report(report: Report, out: Any = None) -> None:
    out = out or sys.stdout
    rate = report.frames / report.seconds if report.seconds else 0.0
    print(
        f"\n== {report.leg}: {report.frames:,} frames, {rate:,.0f} frames/s "
        f"({report.seconds:.1f} s in {report.step}, {report.wall:.1f} s in all)",
        file=out,
    )
    totals = report.outcomes()
    order = [OK, *sorted(o for o in totals if o != OK)]
    print("outcome          frames", file=out)
    for outcome in order:
        print(f"{outcome:<14} {totals[outcome]:>8,}", file=out)
    columns = "".join(f"{o[:11]:>12}" for o in order)
    print(f"\n{'seed':<20}{'frames':>9}{columns}", file=out)
    for name in report.names:
        counts = report.by_seed.get(name, Counter())
        cells = "".join(f"{counts[o]:>12,}" for o in order)
        print(f"{name[:19]:<20}{sum(counts.values()):>9,}{cells}", file=out)
    if not report.failures:
        print(f"failures: none ({report.clean})", file=out)
        return
    print(f"\nFAILURES: {len(report.failures)} distinct", file=out)
    for failure in list(report.failures.values())[:SHOW_FAILURES]:
        print(
            f"  {failure.kind} x{failure.count}: {failure.detail}\n"
            f"    shortest: frame #{failure.number} (seed {failure.seed}), "
            f"{len(failure.frame)} bytes: {failure.frame.hex()}",
            file=out,
        )


def run_fuzz(frames: int, seed: int, micropython: bool = False, handler: bool = True) -> int:
    reports = [fuzz_cpython(frames, seed)]
    if handler:
        reports.append(fuzz_handler(frames, seed))
    if micropython:
        reports.append(fuzz_micropython(frames, seed))
    print(f"bandlink fuzz --frames {frames} --seed {seed}: {len(seeds())} seeds + random buffers")
    for report in reports:
        print_report(report)
    sys.stdout.flush()
    return 1 if any(report.failures for report in reports) else 0
