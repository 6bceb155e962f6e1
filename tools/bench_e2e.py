"""``bandlink bench e2e``: taps per second and latency through the whole service, against an echo.

Everything runs on this machine as its own process, on loopback: a private Mosquitto; N gateway
processes (``gw-0``..) on one store, with a generated venue of K gate readers and enough guests;
the load generator (``tools/loadgen.py``) playing the K readers, each over its own connection
with its own login, as the locked broker requires; and one real-firmware reader
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

The soak: each gateway serves its Prometheus metrics on a free loopback port, and while the load
runs a thread of this process samples, once a second, each gateway's RSS (``/proc``) and queue
depth (``bandlink_queue_depth``); the counters (batches, busy refusals, dropped replies) are
read at the first sample and again after the drain. From these: is the memory flat, and is the
queue bounded (``SoakRules``)? A scrape costs a gateway ~2 ms of CPU, one a second.
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
import urllib.parse
import urllib.request
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any, Protocol

from .broker import MosquittoBroker, free_port
from .gatewayproc import GatewayProcess
from .loadgen import (
    ECHO_ID,
    PHASE_PREFIX,
    EchoProcess,
    band_uid,
    loadgen_command,
    percentile,
    reader_direction,
    reader_ids,
    write_logins,
)
from .micropython import REPO_ROOT
from .postgres import PostgresCluster, scratch_directory
from .simreader import Feedback, ReaderError, SimReader

WORKDIR = REPO_ROOT / "var" / "bench-e2e"
SITE = "bench"
FIRMWARE_READER = "fw-1"
FIRMWARE_EVERY_S = 0.1
FIRMWARE_BAND_KIND = 0xF0  # band_uid() prefix: never one of the generator's bands
THROUGHPUT_TARGET = 0.75  # durable taps/s at least this share of the echo's, closed loop
LATENCY_TARGET = 2.0  # open loop p50 and p99 at most this many times the echo's
LOAD_KEYS = ("taps_per_s", "p50_ms", "p99_ms", "max_ms", "sent", "answered", "lost")
SAMPLE_EVERY_S = 1.0  # the soak's sampling interval
SCRAPE_TIMEOUT_S = 0.5  # a gateway that cannot answer /metrics in this long misses a sample


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
    readers = [
        {"id": r, "role": "gate", "gate": "load", "direction": reader_direction(i)}
        for i, r in enumerate(reader_ids(plan.readers))
    ]
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


# -- the soak: memory and queue over the run ----------------------------------------------------


@dataclass(frozen=True)
class SoakRules:
    """Memory flat: the RSS at the end at most ``rss_share`` or ``rss_kb`` (the larger) above
    the RSS at ``mark`` (10 %) of the run, once imports, caches and pools have warmed up.
    Queue bounded: its depth never above ``queue_max`` (the worker's default max_batch: all
    of it fits in one transaction), and the median of the last 10 % of the samples at most
    ``queue_slack`` above the 90th percentile of the first 10 % (the depth at the end is within
    what it was at the start; a closed loop's depth swings between 0 and the window). The trend
    is judged only with ``min_share_samples`` samples or more in each 10 %."""

    mark: float = 0.1
    rss_share: float = 0.10
    rss_kb: int = 5 * 1024
    queue_max: int = 256
    queue_slack: float = 1.0
    min_share_samples: int = 5
    min_coverage: float = 0.9  # no queue verdict when more than 10 % of the scrapes failed

    def memory(self) -> str:
        return (
            f"end RSS <= RSS at {self.mark:.0%} of the run + max({self.rss_share:.0%}, "
            f"{self.rss_kb // 1024} MB)"
        )

    def queue(self) -> str:
        return (
            f"max depth <= {self.queue_max}, and median of the last {self.mark:.0%} of samples "
            f"<= p90 of the first {self.mark:.0%} + {self.queue_slack:g} "
            f"(trend judged from {self.min_share_samples} samples per {self.mark:.0%})"
        )


RULES = SoakRules()
COUNTERS = {
    "batches": "bandlink_batch_size_count",
    "batched_taps": "bandlink_batch_size_sum",
    "refused_busy": "bandlink_refused_busy_total",
    "replies_dropped": "bandlink_replies_dropped_total",
}
QUEUE_DEPTH = "bandlink_queue_depth"
# Only these series (prometheus_client's ``name[]``): the whole page also calls the
# readers-online gauge, a store read in the exporter's fresh thread per request, which keeps a
# pooled connection each time; after ~13 scrapes the pool is dry and /metrics hangs.
SCRAPE_QUERY = urllib.parse.urlencode([("name[]", n) for n in (QUEUE_DEPTH, *COUNTERS.values())])


def scrape(url: str) -> dict[str, float]:
    """The unlabelled samples of a Prometheus text page; {} if it cannot be had."""
    try:
        with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as response:
            text = response.read().decode()
    except OSError:
        return {}
    samples: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if value and not name.startswith("#") and "{" not in name:
            samples[name] = float(value.split()[0])
    return samples


@dataclass
class Watched:
    """One gateway's series: (seconds into the run, RSS kB, queue depth), one a second."""

    pid: int | None
    metrics_url: str
    t: list[float] = field(default_factory=list)
    rss: list[int | None] = field(default_factory=list)
    depth: list[float | None] = field(default_factory=list)
    first: dict[str, float] = field(default_factory=dict)  # the first scrape that answered

    def sample(self, t: float) -> None:
        metrics = scrape(self.metrics_url)
        if not self.first:
            self.first = metrics
        self.t.append(t)
        self.rss.append(_status_kb(self.pid, "VmRSS"))
        self.depth.append(metrics.get(QUEUE_DEPTH))

    def write_csv(self, path: Path) -> None:
        rows = zip(self.t, self.rss, self.depth, strict=True)
        lines = [",".join("" if v is None else f"{v:g}" for v in row) for row in rows]
        path.write_text("\n".join(["seconds,rss_kb,queue_depth", *lines]) + "\n")


class Background:
    """A loop on its own thread from ``start()`` until ``stop()`` (``_run`` watches
    ``_stopping``)."""

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        raise NotImplementedError


class SoakSampler(Background):
    """Samples every gateway each SAMPLE_EVERY_S, in a thread, from ``start()`` to ``stop()``."""

    def __init__(self, watched: dict[str, Watched]) -> None:
        self.watched = watched
        super().__init__()

    def _run(self) -> None:
        started = next_sample = time.monotonic()
        while not self._stopping.is_set():
            for one in self.watched.values():
                one.sample(round(time.monotonic() - started, 3))
            next_sample += SAMPLE_EVERY_S
            self._stopping.wait(max(0.0, next_sample - time.monotonic()))

    def summary(self, workdir: Path) -> dict[str, dict[str, Any]]:
        """Per gateway; call while the gateways still run (the counters are read again now).
        Each series is kept in ``workdir/soak-<gateway>.csv``."""
        out = {}
        for name, one in self.watched.items():
            one.write_csv(workdir / f"soak-{name}.csv")
            out[name] = soak_summary(one, scrape(one.metrics_url))
        return out


def _counters(first: dict[str, float], last: dict[str, float]) -> dict[str, Any]:
    """What the counters gained over the run (None where a scrape failed)."""
    gained: dict[str, Any] = {}
    for key, name in COUNTERS.items():
        ok = name in first and name in last
        gained[key] = int(last[name] - first[name]) if ok else None
    batches, taps = gained["batches"], gained["batched_taps"]
    gained["mean_batch"] = round(taps / batches, 2) if batches and taps is not None else None
    return gained


def _rss_summary(t: list[float], rss: list[int | None]) -> dict[str, Any]:
    series = [(when, kb) for when, kb in zip(t, rss, strict=True) if kb is not None]
    if not series:
        return {"at_mark": None, "end": None, "max": None, "growth_kb_per_min": None, "flat": None}
    mark_t = RULES.mark * series[-1][0]
    at_t, at_mark = min(series, key=lambda s: abs(s[0] - mark_t))
    end_t, end = series[-1]
    minutes = (end_t - at_t) / 60
    allowed = max(RULES.rss_share * at_mark, RULES.rss_kb)
    return {
        "at_mark": at_mark,
        "end": end,
        "max": max(kb for _, kb in series),
        "growth_kb_per_min": round((end - at_mark) / minutes, 1) if minutes > 0 else None,
        "flat": end - at_mark <= allowed,
    }


def _queue_summary(depth: list[float | None]) -> dict[str, Any]:
    series = [d for d in depth if d is not None]
    if len(series) < RULES.min_coverage * len(depth) or not series:
        keys = ("median", "max", "first_p90", "last_median", "trend_flat", "bounded")
        return dict.fromkeys(keys)
    share = max(1, math.ceil(RULES.mark * len(series)))
    first, last = percentile(sorted(series[:share]), 90), median(series[-share:])
    assert first is not None
    judged = share >= RULES.min_share_samples
    trend_flat = last <= first + RULES.queue_slack if judged else None
    return {
        "median": median(series),
        "max": max(series),
        "first_p90": first,
        "last_median": last,
        "trend_flat": trend_flat,
        "bounded": max(series) <= RULES.queue_max and trend_flat is not False,
    }


def soak_summary(one: Watched, last: dict[str, float]) -> dict[str, Any]:
    return {
        "samples": len(one.t),
        "scrapes_missed": sum(1 for d in one.depth if d is None),
        "rss_kb": _rss_summary(one.t, one.rss),
        "queue_depth": _queue_summary(one.depth),
        **_counters(one.first, last),
    }


# -- the firmware reader ----------------------------------------------------------------------


class FirmwareProbe(Background):
    """The real firmware tapping a fresh band every FIRMWARE_EVERY_S, in a thread of this
    process (which does nothing else meanwhile: the load generator is its own process)."""

    def __init__(self, reader: SimReader, bands: Sequence[bytes]) -> None:
        self._reader = reader
        self._bands = bands
        super().__init__()
        self.feedback: list[Feedback] = []
        self.failures = 0  # taps the reader showed nothing for

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


class Watcher(Protocol):
    """Runs from the generator's first send to the end of its schedule (the probe, the soak)."""

    def start(self) -> None: ...
    def stop(self) -> None: ...


def _follow(process: subprocess.Popen[str], meter: CpuMeter, watchers: Sequence[Watcher]) -> str:
    """Read the generator's stdout to its end: the meter from its first send to its end, the
    watchers to the end of its schedule; returns its last line, the JSON summary."""
    assert process.stdout is not None
    last = ""
    for raw in process.stdout:
        line = raw.strip()
        if line == PHASE_PREFIX + "running":
            meter.start()
            for watcher in watchers:
                watcher.start()
        elif line == PHASE_PREFIX + "draining":
            for watcher in watchers:
                watcher.stop()
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
    watchers: Sequence[Watcher] = (),
) -> Phase:
    """Run the load generator once, as its own process, against whatever answers on the broker
    (the echo or the gateways). This process meanwhile only meters, samples and taps the probe."""
    logins = broker.reader_logins(reader_ids(plan.readers))  # made once, then the same
    command = loadgen_command(
        broker.url,
        logins=write_logins(plan.workdir / "loadgen-logins.json", logins),
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
                summary = _follow(process, meter, watchers)
        finally:
            for watcher in watchers:
                watcher.stop()
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
    with EchoProcess(broker.url, plan.workdir, broker.gateway_login(ECHO_ID)) as echo:
        return drive(plan, broker, {"echo": echo.pid}, echo=True)


@dataclass
class GatewayRun:
    phase: Phase
    firmware: dict[str, Any]
    rss_kb: dict[str, Any]
    soak: dict[str, dict[str, Any]]
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
            login=broker.gateway_login(f"gw-{i}"),
            extra_args=["--metrics", f"127.0.0.1:{free_port()}"],
            # Each simulated reader taps far faster than a person: no per-reader limit.
            env={"BANDLINK_READER_RATE": "0"},
        )
        gateways.append(stack.enter_context(gateway))  # started and ready, one after the other
    return gateways


def _sampler(gateways: Sequence[GatewayProcess]) -> SoakSampler:
    watched = {}
    for g in gateways:
        address = g.command[g.command.index("--metrics") + 1]  # as the gateway was told
        watched[g.gateway_id] = Watched(g.pid, f"http://{address}/metrics?{SCRAPE_QUERY}")
    return SoakSampler(watched)


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
        reader = SimReader(
            FIRMWARE_READER,
            broker.url,
            plan.workdir,
            direction="in",
            gate="fw",
            login=broker.reader_login(FIRMWARE_READER),
        )
        stack.enter_context(reader).wait_online()
        before = count_taps(plan.db)
        fw_bands = [band_uid(i, FIRMWARE_BAND_KIND) for i in range(plan.firmware_bands)]
        probe = FirmwareProbe(reader, fw_bands)
        sampler = _sampler(gateways)
        servers = {g.gateway_id: g.pid for g in gateways}
        watchers = (probe, sampler)
        phase = drive(plan, broker, servers, echo=False, mids_file=mids_file, watchers=watchers)
        rss = _rss(gateways)  # before they stop: /proc/<pid> goes with the process
        soak = sampler.summary(plan.workdir)  # the counters after the drain
    # The gateways are stopped: whatever they answered is committed, or never will be.
    recorded = count_taps(plan.db) - before
    missing = missing_mids(plan.db, _read_mids(mids_file))
    return GatewayRun(phase, probe.summary(), rss, soak, recorded, missing)


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
        "soak": run.soak,
        "soak_rules": {"memory_flat": RULES.memory(), "queue_bounded": RULES.queue()},
        "cpu": {"echo_run": echo.cpu, "gateway_run": run.phase.cpu},
        "targets": targets(plan, gateway, echo.load, run.missing),
    }


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _verdict(met: bool | None) -> str:
    return "n/a in this mode" if met is None else ("met" if met else "NOT MET")


def _flag(ok: bool | None, yes: str, no: str) -> str:
    return "n/a (too few samples)" if ok is None else (yes if ok else no)


def _trend_note(trend_flat: bool | None) -> str:
    return ", run too short to judge the trend" if trend_flat is None else ""


def print_soak(name: str, soak: dict[str, Any]) -> None:
    rss, queue = soak["rss_kb"], soak["queue_depth"]
    print(
        f"{name} soak ({soak['samples']} samples, every {SAMPLE_EVERY_S:g} s, "
        f"{soak['scrapes_missed']} scrapes missed): RSS {_num(rss['at_mark'], 0)} kB at "
        f"{RULES.mark:.0%} of the run, {_num(rss['end'], 0)} kB at the end, max "
        f"{_num(rss['max'], 0)} kB ({_num(rss['growth_kb_per_min'], 1)} kB/min after the mark)"
    )
    print(
        f"{name} queue depth median {_num(queue['median'], 0)}, max {_num(queue['max'], 0)} "
        f"(first {RULES.mark:.0%} p90 {_num(queue['first_p90'], 0)}, last {RULES.mark:.0%} "
        f"median {_num(queue['last_median'], 1)}{_trend_note(queue['trend_flat'])}); "
        f"mean batch {_num(soak['mean_batch'])} over "
        f"{_num(soak['batches'], 0)} batches; busy refusals {_num(soak['refused_busy'], 0)}, "
        f"dropped replies {_num(soak['replies_dropped'], 0)}"
    )
    memory = _flag(rss["flat"], "memory flat", "memory NOT FLAT")
    bounded = _flag(queue["bounded"], "queue bounded", "queue NOT BOUNDED")
    print(f"{name} verdict: {memory}, {bounded}")


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
    print(f"soak rules: memory flat if {RULES.memory()}; queue bounded if {RULES.queue()}")
    for name, soak in report["soak"].items():
        print_soak(name, soak)
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


# ``--db postgresql``: a private PostgreSQL cluster started (and removed) for the run.
PRIVATE_POSTGRESQL = "postgresql"


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
    with ExitStack() as stack:
        if db == PRIVATE_POSTGRESQL:
            directory = stack.enter_context(scratch_directory())
            db = stack.enter_context(PostgresCluster(directory)).create_database("bench")
        plan = Plan(
            rate=rate,
            window=window,
            seconds=seconds,
            readers=readers,
            gateways=gateways,
            db=db or f"sqlite:///{WORKDIR / 'bench.db'}",
            workdir=WORKDIR,
        )
        broker = stack.enter_context(MosquittoBroker(WORKDIR / "mosquitto"))
        echo = echo_phase(plan, broker)
        run = gateway_phase(plan, broker)
    report = build_report(plan, echo, run)
    print_report(report)
    if as_json:
        print(json.dumps(report))
    return 0
