"""``bandlink bench e2e``: taps per second and latency through the whole service, against an echo.

Everything runs on this machine as its own process, on loopback: a private Mosquitto; N gateway
processes (``gw-0``..) on one store, with a generated venue of K gate readers and enough guests;
the load generator (``tools/loadgen.py``) playing the K readers; and one real-firmware reader
(``fw-1``, MicroPython) tapping a fresh band every 100 ms while the load runs, so the tap-to-light
a guest would see under that load is measured too.

The baseline is an echo measured in the same run, through the same broker, by the same generator
at the same rate or window: the same MQTT path as a gateway (its own process, paho, MQTT 5,
shared subscription, QoS 1) but no decoding, deciding or storing. It runs first, alone; the
gateways start after it has stopped, so the two never see each other's taps. The gap between the
two rows is what the gateway's own work costs under load.

Only ``gw-0`` loads the venue: it is started and ready (venue loaded) before the others start,
which find it in the store. Loading is an upsert and could be repeated, but N processes loading
it at once would only queue on SQLite's one write lock at start-up.

Afterwards the store is opened and every answered tap's mid looked up: an answer the gateway gave
without a durable record would be a broken promise, and is reported as ``missing``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .broker import MosquittoBroker
from .gatewayproc import GatewayProcess
from .loadgen import (
    PHASE_PREFIX,
    EchoProcess,
    band_uid,
    loadgen_command,
    percentile,
    reader_ids,
)
from .micropython import REPO_ROOT
from .simreader import Feedback, ReaderError, SimReader

WORKDIR = REPO_ROOT / "var" / "bench-e2e"
SITE = "bench"
FIRMWARE_READER = "fw-1"
FIRMWARE_EVERY_S = 0.1
FIRMWARE_BAND_KIND = 0xF0  # band_uid() prefix: never one of the generator's bands
THROUGHPUT_TARGET = 0.75  # durable taps/s at least this share of the echo's, closed loop
LATENCY_TARGET = 2.0  # open loop p50 and p99 at most this many times the echo's
LOAD_KEYS = ("taps_per_s", "p50_ms", "p99_ms", "max_ms", "sent", "answered", "lost")


@dataclass(frozen=True)
class Plan:
    rate: float | None
    window: int | None
    seconds: float
    readers: int
    gateways: int
    db: str
    workdir: Path

    @property
    def mode(self) -> str:
        return "open" if self.rate is not None else "closed"

    @property
    def bands(self) -> int:
        # One tap in flight per band: enough bands for 4 windows, or 2 s of the rate, in flight.
        wanted = 4 * (self.window or 0) + math.ceil(2 * (self.rate or 0))
        return min(20_000, max(256, wanted))

    @property
    def firmware_bands(self) -> int:
        # A fresh guest per firmware tap: each one an entry that is "ok" (green), as at a gate.
        return math.ceil(self.seconds / FIRMWARE_EVERY_S) + 20


# -- the venue --------------------------------------------------------------------------------


def _guest(prefix: str, index: int, uid: bytes) -> dict[str, Any]:
    return {
        "id": f"{prefix}-{index:05d}",
        "name": f"Guest {prefix}{index}",
        "first_name": f"{prefix}{index}",
        "bands": [uid.hex()],
        "tickets": [
            {"id": f"t-{prefix}-{index:05d}", "valid_from": "today", "valid_until": "today+2"}
        ],
    }


def make_venue(plan: Plan) -> dict[str, Any]:
    """The shape of gateway/venue.py DEMO_VENUE: K load readers, the firmware reader, guests."""
    guests = [_guest("g", i, band_uid(i)) for i in range(plan.bands)]
    guests += [_guest("f", i, band_uid(i, FIRMWARE_BAND_KIND)) for i in range(plan.firmware_bands)]
    readers = [{"id": r, "role": "gate", "gate": "load"} for r in reader_ids(plan.readers)]
    readers.append({"id": FIRMWARE_READER, "role": "gate", "gate": "fw"})
    return {"site": SITE, "guests": guests, "readers": readers}


# -- what the processes cost ------------------------------------------------------------------


def _cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of a live process, from /proc/<pid>/stat."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status_kb(pid: int | None, key: str) -> int | None:
    """A ``kB`` line of /proc/<pid>/status (VmHWM: peak resident set, VmRSS: now)."""
    if pid is None:
        return None
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


class CpuMeter:
    """CPU used by some processes between ``start()`` and ``stop()``, as a share of one core."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self._pids = pids
        self._before: dict[str, float | None] = {}
        self._started = 0.0
        self.wall = 0.0
        self.shares: dict[str, float | None] = {}

    def start(self) -> None:
        self._before = {name: _cpu_s(pid) for name, pid in self._pids.items()}
        self._started = time.monotonic()

    def stop(self) -> None:
        self.wall = time.monotonic() - self._started
        for name, pid in self._pids.items():
            self.shares[name] = self.share(self._before.get(name), _cpu_s(pid))

    def share(self, before: float | None, after: float | None) -> float | None:
        if before is None or after is None or self.wall <= 0:
            return None
        return round((after - before) / self.wall, 3)


# -- the firmware reader ----------------------------------------------------------------------


class FirmwareProbe:
    """The real firmware tapping a fresh band every FIRMWARE_EVERY_S, in a thread of this
    process (which does nothing else meanwhile: the load generator is its own process)."""

    def __init__(self, reader: SimReader, bands: Sequence[bytes]) -> None:
        self._reader = reader
        self._bands = bands
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.feedback: list[Feedback] = []
        self.failures = 0  # taps the reader showed nothing for

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        next_tap = time.monotonic()
        for uid in itertools.cycle(self._bands):
            if self._stopping.is_set():
                return
            try:
                self.feedback.append(self._reader.tap(uid))
            except ReaderError:
                self.failures += 1
            next_tap += FIRMWARE_EVERY_S
            self._stopping.wait(max(0.0, next_tap - time.monotonic()))

    def summary(self) -> dict[str, Any]:
        ordered = sorted(f.ms for f in self.feedback)
        patterns: dict[str, int] = {}
        for f in self.feedback:
            patterns[f.pattern] = patterns.get(f.pattern, 0) + 1
        return {
            "taps": len(ordered),
            "p50_ms": percentile(ordered, 50),
            "p99_ms": percentile(ordered, 99),
            "max_ms": ordered[-1] if ordered else None,
            "patterns": patterns,
            "no_light": self.failures,
        }


# -- one run of the load generator ------------------------------------------------------------


@dataclass
class Phase:
    load: dict[str, Any]  # the generator's JSON summary
    cpu: dict[str, float | None] = field(default_factory=dict)  # share of one core, per process


def _follow(process: subprocess.Popen[str], meter: CpuMeter, probe: FirmwareProbe | None) -> str:
    """Read the generator's stdout to its end: meter and probe from its first send to the end
    of its schedule; returns its last line, the JSON summary."""
    assert process.stdout is not None
    last = ""
    for raw in process.stdout:
        line = raw.strip()
        if line == PHASE_PREFIX + "running":
            meter.start()
            if probe:
                probe.start()
        elif line == PHASE_PREFIX + "draining":
            if probe:
                probe.stop()
        elif line:
            last = line
    meter.stop()
    return last


def drive(
    plan: Plan,
    broker: MosquittoBroker,
    servers: dict[str, int | None],
    *,
    echo: bool,
    mids_file: Path | None = None,
    probe: FirmwareProbe | None = None,
) -> Phase:
    """Run the load generator once, as its own process, against whatever answers on the broker
    (the echo or the gateways). This process meanwhile only meters, and taps the probe."""
    command = loadgen_command(
        broker.url,
        readers=plan.readers,
        bands=plan.bands,
        seconds=plan.seconds,
        rate=plan.rate,
        window=plan.window,
        echo=echo,
        mids_file=mids_file,
    )
    meter = CpuMeter({"broker": broker.pid, **servers})
    log_path = plan.workdir / f"loadgen-{'echo' if echo else 'gateway'}.log"
    with open(log_path, "ab") as log:
        try:
            with subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True
            ) as process:
                summary = _follow(process, meter, probe)
        finally:
            if probe:
                probe.stop()
    if process.returncode != 0 or not summary.startswith("{"):
        raise RuntimeError(f"load generator failed ({process.returncode}): see {log_path}")
    load: dict[str, Any] = json.loads(summary)
    meter.shares["loadgen"] = meter.share(0.0, load["cpu_s"])
    return Phase(load, meter.shares)


# -- what the gateways recorded ---------------------------------------------------------------


def count_taps(url: str) -> int:
    from bandlink.gateway.store import Store

    store = Store(url)
    try:
        return store.count_taps()
    finally:
        store.close()


def missing_mids(url: str, mids: Sequence[bytes]) -> int:
    """How many of ``mids`` the store holds no tap for (~40 µs a look-up on SQLite)."""
    from bandlink.gateway.store import Store

    store = Store(url)
    try:
        return sum(1 for mid in mids if store.tap_by_mid(mid) is None)
    finally:
        store.close()


def _read_mids(path: Path) -> list[bytes]:
    data = path.read_bytes() if path.exists() else b""
    return [data[i : i + 16] for i in range(0, len(data), 16)]


# -- the two phases ---------------------------------------------------------------------------


def echo_phase(plan: Plan, broker: MosquittoBroker) -> Phase:
    with EchoProcess(broker.url, plan.workdir) as echo:
        return drive(plan, broker, {"echo": echo.pid}, echo=True)


@dataclass
class GatewayRun:
    phase: Phase
    firmware: dict[str, Any]
    rss_kb: dict[str, Any]
    recorded: int
    missing: int


def _start_gateways(plan: Plan, broker: MosquittoBroker, stack: ExitStack) -> list[GatewayProcess]:
    venue_path = plan.workdir / "venue.json"
    venue_path.write_text(json.dumps(make_venue(plan)))
    gateways = []
    for i in range(plan.gateways):
        gateway = GatewayProcess(
            broker.url,
            plan.db,
            plan.workdir,
            venue=str(venue_path) if i == 0 else None,
            gateway_id=f"gw-{i}",
            log_level="warning",
        )
        gateways.append(stack.enter_context(gateway))  # started and ready, one after the other
    return gateways


def _rss(gateways: Sequence[GatewayProcess]) -> dict[str, Any]:
    each = {
        g.gateway_id: {"peak": _status_kb(g.pid, "VmHWM"), "end": _status_kb(g.pid, "VmRSS")}
        for g in gateways
    }
    peaks = [v["peak"] for v in each.values() if v["peak"] is not None]
    ends = [v["end"] for v in each.values() if v["end"] is not None]
    return {"peak": max(peaks, default=None), "end": max(ends, default=None), "each": each}


def gateway_phase(plan: Plan, broker: MosquittoBroker) -> GatewayRun:
    mids_file = plan.workdir / "decided.mids"
    with ExitStack() as stack:
        gateways = _start_gateways(plan, broker, stack)
        reader = SimReader(FIRMWARE_READER, broker.url, plan.workdir, direction="in", gate="fw")
        stack.enter_context(reader).wait_online()
        before = count_taps(plan.db)
        fw_bands = [band_uid(i, FIRMWARE_BAND_KIND) for i in range(plan.firmware_bands)]
        probe = FirmwareProbe(reader, fw_bands)
        servers = {g.gateway_id: g.pid for g in gateways}
        phase = drive(plan, broker, servers, echo=False, mids_file=mids_file, probe=probe)
        rss = _rss(gateways)  # before they stop: /proc/<pid> goes with the process
    # The gateways are stopped: whatever they answered is committed, or never will be.
    recorded = count_taps(plan.db) - before
    missing = missing_mids(plan.db, _read_mids(mids_file))
    return GatewayRun(phase, probe.summary(), rss, recorded, missing)


# -- the report ---------------------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _throughput(gateway: dict[str, Any], echo: dict[str, Any], missing: int) -> dict[str, Any]:
    # Durable: decided ("busy" decides nothing) and found in the store afterwards.
    share = (gateway["decided"] - missing) / max(gateway["answered"], 1)
    ratio = _ratio(gateway["taps_per_s"] * share, echo["taps_per_s"])
    return {
        "throughput_ratio": ratio,
        "throughput_met": ratio is not None and ratio >= THROUGHPUT_TARGET,
    }


def _latency(gateway: dict[str, Any], echo: dict[str, Any], missing: int) -> dict[str, Any]:
    p50, p99 = _ratio(gateway["p50_ms"], echo["p50_ms"]), _ratio(gateway["p99_ms"], echo["p99_ms"])
    within = all(r is not None and r <= LATENCY_TARGET for r in (p50, p99))
    # A fast "busy" is no answer to be proud of: every tap must be decided and durable.
    whole = gateway["decided"] == gateway["answered"] and gateway["lost"] == 0 and missing == 0
    return {"p50_ratio": p50, "p99_ratio": p99, "latency_met": within and whole}


def targets(
    plan: Plan, gateway: dict[str, Any], echo: dict[str, Any], missing: int
) -> dict[str, Any]:
    """Closed loop: durable taps/s >= 75 % of the echo's. Open loop: p50 and p99 <= 2x echo's.
    Each is judged only in its own mode (``None``: not measured by this run)."""
    out: dict[str, Any] = {"throughput_ratio": None, "throughput_met": None}
    out |= {"p50_ratio": None, "p99_ratio": None, "latency_met": None}
    if plan.mode == "closed":
        return out | _throughput(gateway, echo, missing)
    return out | _latency(gateway, echo, missing)


def build_report(plan: Plan, echo: Phase, run: GatewayRun) -> dict[str, Any]:
    gateway = run.phase.load
    return {
        "mode": plan.mode,
        "rate": plan.rate,
        "window": plan.window,
        "seconds": plan.seconds,
        "readers": plan.readers,
        "bands": plan.bands,
        "gateways": plan.gateways,
        "db": plan.db,
        **{key: gateway[key] for key in LOAD_KEYS},
        "decided": gateway["decided"],
        "recorded": run.recorded,
        "missing": run.missing,
        "reasons": gateway["reasons"],
        "unmatched": gateway["unmatched"],
        "band_reuse": gateway["band_reuse"],
        "send_lag_max_ms": gateway["send_lag_max_ms"],
        "echo": {key: echo.load[key] for key in (*LOAD_KEYS, "send_lag_max_ms")},
        "firmware": run.firmware,
        "rss_kb": run.rss_kb,
        "cpu": {"echo_run": echo.cpu, "gateway_run": run.phase.cpu},
        "targets": targets(plan, gateway, echo.load, run.missing),
    }


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _verdict(met: bool | None) -> str:
    return "n/a in this mode" if met is None else ("met" if met else "NOT MET")


def print_report(report: dict[str, Any]) -> None:
    load = (
        f"rate {report['rate']:g}/s" if report["mode"] == "open" else f"window {report['window']}"
    )
    print(
        f"bench e2e: {report['mode']} loop, {load}, {report['seconds']:g} s, "
        f"{report['readers']} readers, {report['gateways']} gateway(s), {report['db']}"
    )
    print(
        f"{'':10}{'taps/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'sent':>9}{'answered':>10}{'lost':>7}"
    )
    for name, row in (("gateway", report), ("echo", report["echo"])):
        print(
            f"{name:10}{_num(row['taps_per_s'], 0):>10}{_num(row['p50_ms']):>9}"
            f"{_num(row['p99_ms']):>9}{_num(row['max_ms']):>9}{row['sent']:>9,}"
            f"{row['answered']:>10,}{row['lost']:>7,}"
        )
    fw = report["firmware"]
    print(
        f"firmware reader tap-to-light under load ({fw['taps']} taps, {fw['patterns']}): "
        f"p50 {_num(fw['p50_ms'])}  p99 {_num(fw['p99_ms'])}  max {_num(fw['max_ms'])} ms"
    )
    print(
        f"decided {report['decided']:,} of the answered taps {report['reasons']}; the store "
        f"recorded {report['recorded']:,} taps (with the firmware's), missing {report['missing']}"
    )
    for name, rss in report["rss_kb"]["each"].items():
        print(f"{name} RSS: peak {_num(rss['peak'], 0)} kB, at the end {_num(rss['end'], 0)} kB")
    lag, echo_lag = report["send_lag_max_ms"], report["echo"]["send_lag_max_ms"]
    print(
        f"generator's worst send lag behind schedule: gateway run {_num(lag)} ms, "
        f"echo run {_num(echo_lag)} ms"
    )
    for run, shares in report["cpu"].items():
        parts = ", ".join(f"{k} {v:.0%}" for k, v in shares.items() if v is not None)
        print(f"cpu during the {run.replace('_', ' ')} (share of one core): {parts}")
    t = report["targets"]
    print(
        f"target durable taps/s >= {THROUGHPUT_TARGET:.0%} of echo: "
        f"{_num(t['throughput_ratio'], 3)} -> {_verdict(t['throughput_met'])}; "
        f"open-loop p50, p99 <= {LATENCY_TARGET:g}x echo: {_num(t['p50_ratio'], 2)}, "
        f"{_num(t['p99_ratio'], 2)} -> {_verdict(t['latency_met'])}"
    )


# -- the command ------------------------------------------------------------------------------


def bench_e2e(
    *,
    rate: float | None,
    window: int | None,
    seconds: float,
    readers: int = 16,
    gateways: int = 1,
    db: str | None = None,
    as_json: bool = False,
) -> int:
    shutil.rmtree(WORKDIR, ignore_errors=True)
    WORKDIR.mkdir(parents=True)
    plan = Plan(
        rate=rate,
        window=window,
        seconds=seconds,
        readers=readers,
        gateways=gateways,
        db=db or f"sqlite:///{WORKDIR / 'bench.db'}",
        workdir=WORKDIR,
    )
    with MosquittoBroker(WORKDIR / "mosquitto") as broker:
        echo = echo_phase(plan, broker)
        run = gateway_phase(plan, broker)
    report = build_report(plan, echo, run)
    print_report(report)
    if as_json:
        print(json.dumps(report))
    return 0
