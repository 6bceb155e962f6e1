"""``bandlink bench taps``: tap-to-light round trips on the demo rig, as fast as taps come.

The time is taken from the moment the band is placed on the simulated antenna to the moment the
reader reports its light: the firmware's whole tap path (poll, encode, MQTT publish, wait for
the reply, decode, show) plus the broker and the gateway's decision and durable write. Taps are
sequential (one guest at a gate at a time), so there is no queueing to hide.

``bandlink bench codec``: encode+decode round trips per second of the portable codec
(``protocol/``) on CPython and on the MicroPython unix port (``protocol/tests/bench_peer.py``,
the reader's compiled ``.mpy`` at its heap ceiling), and of cbor2's C codec on the same wire
dicts: over all the examples (``protocol/examples.py``, one pass = one of each) and over the gate
tap alone, the message a reader sends most.

``bandlink bench heap``: the reader's live heap, module by module, on the MicroPython unix port
(``firmware/tests/heap_peer.py``); the live heap after a tap is printed by ``bench taps``.

``bandlink bench store``: taps through the gateway's handler (decode, decide from the store,
durable write, encode the reply) on a fresh SQLite file, as new taps and as duplicates.

``bandlink bench list``: the reader's band list (``firmware/bandlist.py``) on the MicroPython unix
port (``firmware/tests/bench_list.py``, the compiled ``.mpy``, at the reader's heap ceiling):
a snapshot built in 80-record chunks, random look-ups of bands listed and not, a delta applied.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import itertools
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from bandlink.protocol.messages import LIST_CHUNK_MAX

from .demo import VAR, script
from .micropython import DEFAULT_HEAP, run_micropython
from .rig import venue_rig


def bench_taps(count: int, heap: str = DEFAULT_HEAP) -> int:
    """``heap``: the readers' MicroPython heap, to find the smallest that serves every tap
    (a reply the reader cannot decode for want of memory shows "try again")."""
    times: list[float] = []
    retries = 0
    with venue_rig(VAR / "bench", say=lambda _: None, rate_limited=False, heap=heap) as rig:
        taps = script()
        for _ in range(count):
            reader_id, uid, band = next(taps)
            seen = rig.readers[reader_id].tap(uid, band=band)
            times.append(seen.ms)
            retries += seen.pattern == "retry"  # the demo script never earns one
        heap_used = rig.heap_used_max()
        recorded = rig.store.count_taps()
    cuts = statistics.quantiles(times, n=100)  # cuts[k - 1] is the k-th percentile
    print(f"taps {count}, recorded by the gateway {recorded}, shown 'try again' {retries}")
    print(
        f"tap-to-light ms: p50 {statistics.median(times):.2f}  p90 {cuts[89]:.2f}  "
        f"p99 {cuts[98]:.2f}  max {max(times):.2f}  (first tap {times[0]:.2f})"
    )
    print(f"firmware heap {heap}: in use after a tap, at most {heap_used} bytes")
    return 0


# -- bench offline ------------------------------------------------------------------------------


def bench_offline(taps: int, bands: int, heap: str = DEFAULT_HEAP) -> int:
    """A gate reader with no broker to reach, deciding ``taps`` alone from a band list of
    ``bands`` on its flash: the heap after each tap (flat, whatever the list's size), and how
    long a decision takes as its journal fills (and, past its capacity, stays full)."""
    from bandlink.protocol import lists as wire_list
    from bandlink.tools.broker import free_port
    from bandlink.tools.loadgen import band_uid
    from bandlink.tools.simreader import SimReader

    with tempfile.TemporaryDirectory(prefix="bandlink-offline-") as workdir:
        folder = Path(workdir)
        listed = [band_uid(n, 0x0F) for n in range(bands)]
        entries = sorted(wire_list.entry(uid, wire_list.ENTRY) for uid in listed)
        head = b"BL\x01\x00" + (1).to_bytes(4, "big") + bands.to_bytes(4, "big") + bytes(4)
        (folder / "gate-1.state.list").write_bytes(head + b"".join(entries))
        # Nothing listens on the broker's port: the reader is offline from its first tap.
        reader = SimReader("gate-1", f"mqtt://127.0.0.1:{free_port()}", folder, heap=heap)
        times: list[float] = []
        shown: dict[str, int] = {}
        with reader:
            for n in range(taps):
                uid = listed[(n * 7919) % bands] if n % 10 else band_uid(n, 0x0E)
                seen = reader.tap(uid)
                times.append(seen.ms)
                shown[seen.pattern] = shown.get(seen.pattern, 0) + 1
            used = list(reader.heap_used)
    warm = used[100:] or used
    print(f"offline gate, band list of {bands} on flash, {taps} taps, heap {heap}")
    print("lights:", ", ".join(f"{k} {v}" for k, v in sorted(shown.items())))
    print(
        f"heap in use after a tap: first {used[0]}, after 100 taps min {min(warm)} "
        f"max {max(warm)}, last {used[-1]} bytes"
    )
    for start in range(0, taps, max(1, taps // 5)):
        part = times[start : start + taps // 5]
        print(
            f"taps {start + 1}-{start + len(part)}: tap-to-light ms p50 "
            f"{statistics.median(part):.2f} max {max(part):.2f}"
        )
    return 0


# -- bench codec --------------------------------------------------------------------------------

BENCH_PEER = "protocol/tests/bench_peer.py"
CODEC_ROUNDS = 3


def _rate(work: Callable[[Any], object], items: Sequence[Any], seconds: float) -> float:
    """Items per second through ``work``: whole passes over ``items`` until ``seconds`` pass;
    the median of CODEC_ROUNDS such runs."""
    rates = []
    for _ in range(CODEC_ROUNDS):
        done = 0
        start = time.perf_counter()
        elapsed = 0.0
        while elapsed < seconds / CODEC_ROUNDS:
            for item in items:
                work(item)
            done += len(items)
            elapsed = time.perf_counter() - start
        rates.append(done / elapsed)
    return statistics.median(rates)


def _micropython_rates(
    frames: list[bytes], tap: int, seconds: float, heap: str
) -> tuple[str, dict[str, float]]:
    """MicroPython's version and {"<case> <set>": round trips/s} from
    protocol/tests/bench_peer.py on the unix port."""
    lines = [f"{seconds} {tap} {CODEC_ROUNDS}"] + [frame.hex() for frame in frames]
    done = run_micropython(
        BENCH_PEER, heap=heap, input="\n".join(lines).encode() + b"\n", timeout=60 + 8 * seconds
    )
    output = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        raise RuntimeError(f"{BENCH_PEER} failed: {output}{done.stderr.decode(errors='replace')}")
    rates = {}
    version = "?"
    for line in output.splitlines():
        word, *rest = line.split()
        if word == "rate":
            case, subset, value = rest
            rates[f"{case} {subset}"] = float(value)
        elif word == "version":
            version = rest[0]
    return version, rates


def bench_codec(seconds: float = 2.0, micropython: bool = True) -> int:
    """Encode+decode round trips per second over the examples and over the gate tap alone."""
    import cbor2

    from bandlink.protocol import Message, decode, dumps, encode, loads
    from bandlink.protocol.examples import examples

    # protocol/ is portable, so lightly annotated: a typed view of its examples.
    typed_examples: Callable[[], list[tuple[str, Message]]] = examples
    named = typed_examples()
    messages = [message for _, message in named]
    tap = next(i for i, (name, _) in enumerate(named) if name == "tap gate")
    frames = [encode(message) for message in messages]
    wires = [message.to_wire() for message in messages]
    same = all(cbor2.dumps(w, canonical=True) == f for w, f in zip(wires, frames, strict=True))

    # Every round trip starts from the frame: decode, then encode what came out (the same work
    # as encode then decode, with only the frames alive between round trips, as on a reader).
    def cbor2_round_trip(frame: bytes) -> object:
        return cbor2.dumps(cbor2.loads(frame), canonical=True)

    def measure(work: Callable[[Any], object], items: list[Any]) -> tuple[float, float]:
        return _rate(work, items, seconds), _rate(work, [items[tap]], seconds)

    python = f"CPython {platform.python_version()}"
    rows = [
        (f"portable, {python}: decode+encode", measure(lambda f: encode(decode(f)), frames)),
        (f"portable, {python}: loads+dumps", measure(lambda f: dumps(loads(f)), frames)),
    ]
    if micropython:
        heap = DEFAULT_HEAP
        version, rates = _micropython_rates(frames, tap, seconds, heap)
        for case, what in (("messages", "decode+encode"), ("wire", "loads+dumps")):
            label = f"portable, MicroPython {version} ({heap}): {what}"
            rows.append((label, (rates[f"{case} all"], rates[f"{case} tap"])))
    rows.append(
        (
            f"cbor2 {importlib.metadata.version('cbor2')} (C), canonical: loads+dumps",
            measure(cbor2_round_trip, frames),
        )
    )
    print(
        f"codec round trips (decode a frame, encode the result) per second; median of "
        f"{CODEC_ROUNDS} runs "
        f"of {seconds / CODEC_ROUNDS:.2f} s each"
    )
    print(
        f"{len(messages)} examples, {sum(map(len, frames)):,} bytes in all; gate tap "
        f"{len(frames[tap])} bytes; cbor2 canonical bytes identical: {'yes' if same else 'NO'}"
    )
    all_label, tap_label = f"all {len(messages)} examples", "gate tap"
    print(f"{'':<52}{all_label:>16}{tap_label:>12}")
    for label, (all_rate, tap_rate) in rows:
        print(f"{label:<52}{all_rate:>16,.0f}{tap_rate:>12,.0f}")
    return 0 if same else 1


# -- bench heap ---------------------------------------------------------------------------------

HEAP_PEER = "firmware/tests/heap_peer.py"


def bench_heap() -> int:
    """The gate reader's heap and the pos reader's, each module by module."""
    for role in ("gate", "pos"):
        if _bench_role_heap(role) != 0:
            return 1
    return 0


def _bench_role_heap(role: str) -> int:
    with tempfile.TemporaryDirectory(prefix="bandlink-heap-") as workdir:
        settings = {
            "reader": "bench-1",
            "role": role,
            "board": "sim",
            "antenna": "127.0.0.1:9",  # never connected: the objects are only built
            "state_file": str(Path(workdir) / "state"),
        }
        if role == "pos":  # keys of no venue: the objects are only built
            settings |= {"pin_key": "00" * 16, "offline_pin_key": "00" * 16}
        config = Path(workdir) / "config.json"
        config.write_text(json.dumps(settings))
        done = run_micropython(HEAP_PEER, str(config), heap="256k")
    if done.returncode != 0:
        print(done.stdout.decode(), done.stderr.decode())
        return 1
    print(
        f"{role} reader heap on the MicroPython unix port (64-bit), live bytes after a collection"
    )
    for line in done.stdout.decode().splitlines():
        size, what = line.split(" ", 1)
        print(f"{int(size):>8,}  {what}")
    return 0


# -- bench store --------------------------------------------------------------------------------


def _tap_frames(count: int) -> list[Any]:
    """The demo script's taps (two entries to one exit) as frames from the demo venue's north
    gate: entries at gate-1, exits at gate-2, as the venue configures them."""
    from bandlink.gateway.core.handler import Frame
    from bandlink.protocol import GATE, Tap, encode, topics

    from .sunband import development_bands

    taps = zip(range(count), script(), itertools.cycle((0, 0, 1)), strict=False)
    frames = []
    for n, (_, uid, _band), d in taps:
        reader = "gate-2" if d else "gate-1"
        reading = development_bands().read(uid)  # the Core's keys are the development venue's
        tap = Tap(
            reader=reader, ts=n, mid=os.urandom(16), uid=uid, role=GATE, direction=d, **reading
        )
        frames.append(Frame(topics.reader_topic(reader, topics.EVT), encode(tap), n))
    return frames


@contextlib.contextmanager
def _bench_store(db: str | None) -> Iterator[Any]:
    from bandlink.gateway.store import Store
    from bandlink.gateway.venue import DEMO_VENUE

    with tempfile.TemporaryDirectory(prefix="bandlink-store-") as workdir:
        store = Store(db or f"sqlite:///{Path(workdir) / 'bench.db'}")
        store.migrate()
        store.load_venue(DEMO_VENUE, today=date.today())
        try:
            yield store
        finally:
            print(f"recorded {store.count_taps()} taps")
            store.close()


def bench_store(count: int, batches: Sequence[int] = (1, 64), db: str | None = None) -> int:
    """Taps through the core and the store's unit of work, as the decision worker runs them:
    ``batch`` frames per transaction (one commit, one fsync each), new taps then duplicates."""
    from bandlink.gateway.core.handler import Core
    from bandlink.gateway.worker import commit_batch, wall_ms

    core = Core()
    with _bench_store(db) as store:
        print(f"store {store.url}; synchronous commits; {count} taps per run")
        for batch in batches:
            frames = _tap_frames(count)
            for label in ("new taps", "duplicates"):
                started = time.perf_counter()
                for at in range(0, count, batch):
                    commit_batch(core, store, frames[at : at + batch], wall_ms)
                elapsed = time.perf_counter() - started
                print(
                    f"batch {batch:4}  {label:10}  {count / elapsed:8,.0f} taps/s  "
                    f"({elapsed * 1e6 / count:.0f} µs each)"
                )
    return 0


# Where a decided tap's time goes: (label, file ending, function) summed as cumulative time.
_PROFILED = (
    ("SQLAlchemy Connection.execute (all statements)", "engine/base.py", "execute"),
    ("  of which the driver's cursor.execute", "engine/default.py", "do_execute"),
    ("decode the tap (portable codec)", "protocol/messages.py", "decode"),
    ("encode the reply (cbor2)", "gateway/core/wire.py", "encode"),
    ("entry decision (pure)", "gateway/core/entry.py", "decide_entry"),
    ("follow the catalog log", "gateway/store/view.py", "follow"),
)


def bench_store_profile(count: int, batch: int, db: str | None = None) -> int:
    """``bench store`` at one batch size under cProfile: the share of the core's time in each
    part (cProfile slows everything, so read shares, not rates)."""
    import cProfile
    import pstats

    from bandlink.gateway.core.handler import Core
    from bandlink.gateway.worker import commit_batch, wall_ms

    core, frames, profile = Core(), _tap_frames(count), cProfile.Profile()
    with _bench_store(db) as store:
        profile.enable()
        for at in range(0, count, batch):
            commit_batch(core, store, frames[at : at + batch], wall_ms)
        profile.disable()
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = sum(
        ct for (path, _, name), (*_, ct, _callers) in stats.items() if name == "commit_batch"
    )
    print(f"{count} taps in batches of {batch}, under cProfile: {total * 1e6 / count:.0f} µs a tap")
    for label, path_end, function in _PROFILED:
        spent = sum(
            ct
            for (path, _, name), (*_, ct, _callers) in stats.items()
            if name == function and path.endswith(path_end)
        )
        print(f"{label:50} {spent / total:6.1%}")
    return 0


def bench_store_paced(count: int, pause_ms: float, db: str | None = None) -> int:
    """One tap per transaction, ``pause_ms`` apart (a quiet venue, as in open loop at low
    rates): where a tap's time goes, phase by phase, beside a bare SQLite commit of one row."""
    from bandlink.gateway.core.handler import Core
    from bandlink.gateway.worker import wall_ms

    core = Core()
    phases: dict[str, list[float]] = {"begin + follow the catalog": [], "decide": [], "commit": []}
    with _bench_store(db) as store:
        for frame in _tap_frames(count):
            marks = [time.perf_counter()]
            with store.transaction() as tx:
                marks.append(time.perf_counter())
                core.handle([frame], wall_ms(), tx)
                marks.append(time.perf_counter())
            marks.append(time.perf_counter())
            for name, began, ended in zip(phases, marks, marks[1:], strict=False):
                phases[name].append((ended - began) * 1e6)
            time.sleep(pause_ms / 1000)
        print(f"store {store.url}; {count} taps, one per transaction, {pause_ms} ms apart")
    if db is None or db.startswith("sqlite"):
        phases["bare SQLite commit of one row (same pragmas)"] = _bare_sqlite_commits(
            count, pause_ms
        )
    for name, times in phases.items():
        cuts = statistics.quantiles(times, n=100)
        print(f"{name:46} p50 {statistics.median(times):6.0f} µs  p99 {cuts[98]:6.0f} µs")
    return 0


def _bare_sqlite_commits(count: int, pause_ms: float) -> list[float]:
    import sqlite3

    times = []
    with tempfile.TemporaryDirectory(prefix="bandlink-sqlite-") as workdir:
        raw = sqlite3.connect(Path(workdir) / "bare.db", isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=FULL"):
            raw.execute(f"PRAGMA {pragma}")
        raw.execute("CREATE TABLE t (k BLOB PRIMARY KEY, n INTEGER)")
        for n in range(count):
            began = time.perf_counter()
            raw.execute("BEGIN IMMEDIATE")
            raw.execute("INSERT INTO t VALUES (?, ?)", (os.urandom(16), n))
            raw.execute("COMMIT")
            times.append((time.perf_counter() - began) * 1e6)
            time.sleep(pause_ms / 1000)
        raw.close()
    return times


# -- bench list ---------------------------------------------------------------------------------

LIST_PEER = "firmware/tests/bench_list.py"
LIST_CHUNK = LIST_CHUNK_MAX  # bands per chunk, as the gateway sends them


def _list_record(uid: bytes, flags: int) -> bytes:
    """A band-list record (firmware/bandlist.py): length, uid padded to 10, flags, zeros."""
    return bytes([len(uid)]) + uid.ljust(10, b"\0") + bytes([flags]) + bytes(4)


def _random_uids(rng: Any, count: int, taken: set[bytes]) -> list[bytes]:
    """count new distinct uids, mostly 7 bytes (NTAG 424), some 4 and 10."""
    found: list[bytes] = []
    while len(found) < count:
        uid = rng.randbytes(rng.choice((4, 7, 7, 7, 10)))
        if uid not in taken:
            taken.add(uid)
            found.append(uid)
    return found


def _write_list_inputs(folder: Path, bands: int, delta: int, lookups: int) -> None:
    """snapshot.bin, adds.bin, removes.bin and queries.bin for LIST_PEER (its header says what
    each holds): a delta a third new bands, a third replaced, a third removed."""
    import random

    rng = random.Random(1)
    taken: set[bytes] = set()
    uids = _random_uids(rng, bands, taken)
    flags = {uid: rng.randrange(8) for uid in uids}

    def write(name: str, pairs: list[tuple[bytes, int]]) -> None:
        pairs.sort(key=lambda p: (len(p[0]), p[0]))
        (folder / name).write_bytes(b"".join(_list_record(u, f) for u, f in pairs))

    write("snapshot.bin", list(flags.items()))
    changed = rng.sample(uids, min(bands, 2 * delta // 3))
    replaced, removed = changed[: len(changed) // 2], changed[len(changed) // 2 :]
    added = _random_uids(rng, delta - len(changed), taken)
    write("adds.bin", [(u, rng.randrange(8)) for u in added + replaced])
    write("removes.bin", [(u, 0) for u in removed])
    absent = _random_uids(rng, lookups // 2, taken)
    queries = [
        _list_record(u, flags[u])[:12] + b"\1" + bytes(3)
        for u in rng.choices(uids, k=lookups - len(absent))
    ]
    queries += [_list_record(u, 0) for u in absent]
    rng.shuffle(queries)
    (folder / "queries.bin").write_bytes(b"".join(queries))


def _micropython_list(folder: Path, heap: str) -> dict[str, Any]:
    done = run_micropython(LIST_PEER, str(folder), str(LIST_CHUNK), heap=heap, timeout=600)
    output = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        raise RuntimeError(
            f"{LIST_PEER} failed: {output[-2000:]}{done.stderr.decode(errors='replace')}"
        )
    found: dict[str, Any] = {"hits": [], "misses": []}
    for line in output.splitlines():
        words = line.split()
        if words[0] == "L":
            found["hits" if words[1] == "1" else "misses"].append(float(words[2]))
        else:
            found[" ".join(words[:-1])] = float(words[-1])
    return found


def bench_list(bands: int, delta: int, lookups: int = 10_000, as_json: bool = False) -> int:
    """The reader's band list (firmware/bandlist.py) on the MicroPython unix port: build a
    snapshot of ``bands`` in chunks, look up bands listed and not, apply a ``delta``."""
    heap = DEFAULT_HEAP
    with tempfile.TemporaryDirectory(prefix="bandlink-list-") as workdir:
        folder = Path(workdir)
        _write_list_inputs(folder, bands, delta, lookups)
        found = _micropython_list(folder, heap)
    both = found["hits"] + found["misses"]

    def p99(times: list[float]) -> float:
        return statistics.quantiles(times, n=100)[98] if len(times) > 1 else max(times, default=0)

    report = {
        "bands": bands,
        "delta_bands": delta,
        "chunk_records": LIST_CHUNK,
        "heap": heap,
        "build_ms": found["build_ms"],
        "lookup_us": {
            kind: {"count": len(t), "mean": statistics.fmean(t) if t else 0.0, "p99": p99(t)}
            for kind, t in (
                ("all", both),
                ("listed", found["hits"]),
                ("not listed", found["misses"]),
            )
        },
        "delta_ms": found["delta_ms"],
        "delta_chunks": int(found["delta_chunks"]),
        "file_bytes": int(found["size"]),
        "count_after_delta": int(found["count"]),
        "heap_module_bytes": int(found["heap module"]),
        "heap_list_bytes": int(found["heap list"]),
        "wrong": int(found["wrong"]),
    }
    _print_list_report(report)
    if as_json:
        print(json.dumps(report))
    return 0 if report["wrong"] == 0 else 1


def _print_list_report(r: dict[str, Any]) -> None:
    print(
        f"band list, MicroPython unix port ({r['heap']} heap), compiled .mpy; "
        f"{r['bands']:,} bands, chunks of {r['chunk_records']}"
    )
    print(f"{'snapshot build (all chunks)':<40}{r['build_ms']:>12,.1f} ms")
    for kind, t in r["lookup_us"].items():
        label = f"look-up, {kind} ({t['count']:,})"
        print(f"{label:<40}{t['mean']:>12,.1f} µs mean {t['p99']:>8,.1f} µs p99")
    label = f"delta of {r['delta_bands']:,} bands ({r['delta_chunks']} chunks)"
    print(f"{label:<40}{r['delta_ms']:>12,.1f} ms  (count after: {r['count_after_delta']:,})")
    print(f"{'list file':<40}{r['file_bytes']:>12,} bytes")
    print(f"{'heap: the module (bytecode)':<40}{r['heap_module_bytes']:>12,} bytes")
    print(f"{'heap: an open BandList':<40}{r['heap_list_bytes']:>12,} bytes")
    print(f"{'results not as expected':<40}{r['wrong']:>12,}")
