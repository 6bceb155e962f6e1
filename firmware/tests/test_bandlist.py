"""firmware/bandlist.py on the real MicroPython against a model (a dict), hypothesis-driven.

Each example is a batch of scenarios (a snapshot in chunks, deltas in chunks, some
refused on purpose and sent again) run in one MicroPython process by ``list_peer.py``; the
transcript of results is compared with the model's, and every list file the reader held is read
here, from the format itself (firmware/bandlist.py's header), not through the module. Entries
carry every flags byte, PIN check and PIN salt: the reader keeps them as the gateway sent them
(a replaced entry takes its new check and salt).
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bandlink.tools.micropython import run_micropython

PEER = "firmware/tests/list_peer.py"

uids = st.one_of(*(st.binary(min_size=n, max_size=n) for n in (4, 7, 10)))
Model = dict[bytes, list[int]]  # uid -> [flags, PIN check, PIN salt]


def key(uid: bytes) -> tuple[int, bytes]:
    return (len(uid), uid)


def record(uid: bytes, flags: int, pin: int, salt: int = 0) -> bytes:
    return bytes([len(uid)]) + uid.ljust(10, b"\0") + bytes([flags]) + struct.pack(">HH", pin, salt)


def split(items: list[bytes], cuts: list[int], chunks: int) -> list[list[bytes]]:
    """items in `chunks` contiguous parts (some may be empty), cut where `cuts` say."""
    at = sorted(min(c, len(items)) for c in cuts[: chunks - 1])
    bounds = [0, *at, len(items)]
    return [items[a:b] for a, b in itertools.pairwise(bounds)]


@dataclass
class Delta:
    adds: dict[bytes, tuple[int, int, int]]
    removes: list[bytes]
    chunks: int
    cuts: list[int]
    fault: str | None


@dataclass
class Scenario:
    pool: list[bytes]
    listed: dict[bytes, tuple[int, int, int]]
    chunks: int
    cuts: list[int]
    valid_until_s: int
    version: int
    deltas: list[Delta] = field(default_factory=list)


chunking = st.tuples(st.integers(1, 4), st.lists(st.integers(0, 40), min_size=3, max_size=3))
flags_pin = st.tuples(st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    pool = draw(st.lists(uids, unique=True, max_size=30))
    listed = {u: draw(flags_pin) for u in pool if draw(st.booleans())}
    chunks, cuts = draw(chunking)
    scenario = Scenario(
        pool, listed, chunks, cuts, draw(st.integers(0, 2**32 - 1)), draw(st.integers(1, 1000))
    )
    for _ in range(draw(st.integers(0, 3))):
        removes = [u for u in pool if draw(st.integers(0, 3)) == 0]
        adds = {u: draw(flags_pin) for u in pool if u not in removes and draw(st.booleans())}
        chunks, cuts = draw(chunking)
        fault = draw(st.sampled_from([None, None, "base", "gap", "twice"]))
        scenario.deltas.append(Delta(adds, removes, chunks, cuts, fault))
    return scenario


class Script:
    """The operations for list_peer.py and the transcript the model expects."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ops: list[str] = []
        self.expected: list[str] = []
        self.dumps: list[tuple[Path, int, int, Model]] = []

    def op(self, line: str, expected: object) -> None:
        self.ops.append(line)
        self.expected.append(str(expected))

    def check(self, model: Model, version: int, valid: int) -> None:
        for uid in model:
            self.op(f"find {uid.hex()}", model[uid][0])
            flags, pin, salt = model[uid]
            self.op(f"entry {uid.hex()}", f"{flags} {pin:04x} {salt:04x}")
        dump = self.folder / f"dump-{len(self.dumps)}"
        self.op(f"copy {dump}", "copied")
        self.dumps.append((dump, version, valid, {u: list(v) for u, v in model.items()}))


def hexes(items: list[bytes], sep: str = "") -> str:
    return sep.join(i.hex() for i in items) or "-"


def play(script: Script, n: int, s: Scenario) -> None:
    path = script.folder / f"list-{n}"
    script.op(f"open {path}", "0 0 0")
    model: Model = {}
    ordered = [record(u, *s.listed[u]) for u in sorted(s.listed, key=key)]
    for c, part in enumerate(split(ordered, s.cuts, s.chunks)):
        script.op(f"snap {s.version} {c} {s.chunks} {s.valid_until_s} {hexes(part)}", 1)
    model = {u: list(entry) for u, entry in s.listed.items()}
    version = s.version
    for uid in s.pool:
        if uid not in model:
            script.op(f"find {uid.hex()}", -1)
    script.check(model, version, s.valid_until_s)
    for d in s.deltas:
        version = play_delta(script, d, version, model)
        for uid in s.pool:
            if uid not in model:
                script.op(f"find {uid.hex()}", -1)
        script.check(model, version, s.valid_until_s)
    script.op("close", "closed")
    script.op(f"open {path}", "0 0 0")  # closed removed the files: nothing left behind
    script.op("close", "closed")


def play_delta(script: Script, d: Delta, version: int, model: Model) -> int:
    new = version + 1
    adds = [record(u, *d.adds[u]) for u in sorted(d.adds, key=key)]
    removes = sorted(d.removes, key=key)
    parts = list(
        zip(split(adds, d.cuts, d.chunks), split(removes, d.cuts[::-1], d.chunks), strict=True)
    )
    if d.fault == "base":
        script.op(f"delta {new} {version + 7} 0 {d.chunks} {hexes(parts[0][0])} -", 0)
    elif d.fault == "gap" and d.chunks > 1:  # chunk 1 never comes: chunk 2 (or none) after 0
        first, second = parts[0], parts[-1]
        script.op(f"delta {new} {version} 0 {d.chunks} {hexes(first[0])} {hexes(first[1], ',')}", 1)
        last = d.chunks - 1 if d.chunks > 2 else 1
        if last != 1:
            script.op(f"delta {new} {version} {last} {d.chunks} {hexes(second[0])} -", 0)
        else:
            script.op(f"delta {new} {version} 1 {d.chunks + 1} - -", 0)  # another chunk count
    for c, (a, r) in enumerate(parts):
        for _ in range(2 if d.fault == "twice" else 1):  # QoS 1 delivered it twice: no change
            script.op(f"delta {new} {version} {c} {d.chunks} {hexes(a)} {hexes(r, ',')}", 1)
    for uid in removes:
        model.pop(uid, None)
    for uid, entry in d.adds.items():
        model[uid] = list(entry)  # a replaced band's entry is the delta's, check and salt too
    return new


def read_list(path: Path) -> tuple[int, int, Model]:
    """version, valid_until_s and {uid: [flags, pin, salt]} from a list file, its format checked."""
    data = path.read_bytes()
    magic, fmt, reserved, version, count, valid = struct.unpack(">2sBBIII", data[:16])
    assert (magic, fmt, reserved) == (b"BL", 1, 0)
    assert len(data) == 16 + 16 * count
    recs = [data[at : at + 16] for at in range(16, len(data), 16)]
    keys = [r[:11] for r in recs]
    assert all(a < b for a, b in itertools.pairwise(keys)), "strictly increasing keys"
    found: Model = {}
    for r in recs:
        n = r[0]
        assert n in (4, 7, 10) and r[1 + n : 11] == bytes(10 - n)
        found[r[1 : 1 + n]] = [r[11], *struct.unpack(">HH", r[12:16])]
    return version, valid, found


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(scenarios(), min_size=1, max_size=20))
def test_snapshots_and_deltas_on_micropython_match_a_model(
    tmp_path_factory: pytest.TempPathFactory, batch: list[Scenario]
) -> None:
    folder = tmp_path_factory.mktemp("bandlist")
    script = Script(folder)
    for n, scenario in enumerate(batch):
        play(script, n, scenario)
    ops = folder / "ops.txt"
    ops.write_text("\n".join(script.ops) + "\n")
    done = run_micropython(PEER, str(ops), timeout=120)
    output = done.stdout.decode(errors="replace").splitlines()
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    for op, want, got in zip(script.ops, script.expected, output, strict=True):
        assert got == want, f"{op[:120]}: got {got}, want {want}"
    for dump, version, valid, model in script.dumps:
        assert read_list(dump) == (version, valid, model)


def test_the_model_check_can_fail(tmp_path: Path) -> None:
    """read_list sees a record out of order and a count that does not match the size."""
    recs = [record(b"\1\2\3\4", 1, 0), record(b"\0\2\3\4", 1, 0)]
    path = tmp_path / "list"
    path.write_bytes(struct.pack(">2sBBIII", b"BL", 1, 0, 1, 2, 0) + b"".join(recs))
    try:
        read_list(path)
    except AssertionError:
        pass
    else:
        raise AssertionError("an unsorted list passed")
    path.write_bytes(struct.pack(">2sBBIII", b"BL", 1, 0, 1, 3, 0) + b"".join(recs[::-1]))
    try:
        read_list(path)
    except AssertionError:
        return
    raise AssertionError("a short list passed")
