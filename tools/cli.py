"""The ``bandlink`` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import tempfile
import threading
from datetime import date
from pathlib import Path
from typing import Any

from .gatewayproc import READY_LINE
from .micropython import DEFAULT_HEAP


def _venue(name: str) -> dict[str, Any]:
    if name == "demo":
        from bandlink.gateway.venue import DEMO_VENUE

        return DEMO_VENUE
    loaded: dict[str, Any] = json.loads(Path(name).read_text())
    return loaded


def _prepare_sqlite_dir(db_url: str) -> None:
    if db_url.startswith("sqlite:///"):
        Path(db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def cmd_gateway(args: argparse.Namespace) -> int:
    from bandlink.gateway.bus import Bus
    from bandlink.gateway.service import Gateway
    from bandlink.gateway.store import Store

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    _prepare_sqlite_dir(args.db)
    store = Store(args.db)
    store.migrate()
    if args.venue:
        store.load_venue(_venue(args.venue), today=date.today())
    bus = Bus(Gateway(store), args.broker)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    bus.start()
    if not bus.wait_connected(timeout=10):
        logging.getLogger("bandlink").warning("broker %s not reachable yet; retrying", args.broker)
    print(READY_LINE, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        stopping.wait()
    bus.stop()
    store.close()
    return 0


def cmd_sim_reader(args: argparse.Namespace) -> int:
    from .simreader import SimReader

    print("type a band UID in hex (e.g. 04a1b2c3d4e5f6) to tap it; Ctrl-D to quit", flush=True)
    with tempfile.TemporaryDirectory(prefix="bandlink-reader-") as workdir:
        reader = SimReader(
            args.reader,
            args.broker,
            Path(workdir),
            direction=args.direction,
            gate=args.gate,
            heap=args.heap,
        )
        with reader:
            reader.wait_online()
            for line in sys.stdin:
                uid = line.strip()
                if uid:
                    feedback = reader.tap(bytes.fromhex(uid))
                    print(
                        f"{feedback.pattern:6} {feedback.ms:6.1f} ms  {feedback.text}", flush=True
                    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(taps=args.taps)


def cmd_bench_taps(args: argparse.Namespace) -> int:
    from .bench import bench_taps

    return bench_taps(args.count)


def cmd_bench_codec(args: argparse.Namespace) -> int:
    from .bench import bench_codec

    return bench_codec(args.seconds, micropython=not args.no_micropython)


def cmd_bench_heap(args: argparse.Namespace) -> int:
    from .bench import bench_heap

    return bench_heap()


def cmd_bench_store(args: argparse.Namespace) -> int:
    from .bench import bench_store

    return bench_store(args.count)


def cmd_fuzz(args: argparse.Namespace) -> int:
    from .fuzz import run_fuzz

    return run_fuzz(args.frames, args.seed, micropython=args.micropython)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bandlink", description="Open firmware and gateway for NFC wristbands and readers."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="run a demo venue: broker, gateway, two gate readers")
    demo.add_argument("--taps", type=int, default=0, help="stop after N decided taps (0: never)")
    demo.set_defaults(run=cmd_demo)

    gateway = commands.add_parser("gateway", help="run the gateway against a broker and a store")
    gateway.add_argument("--broker", required=True, help="mqtt://host:port")
    gateway.add_argument("--db", required=True, help="SQLAlchemy URL, e.g. sqlite:///var/bl.db")
    gateway.add_argument("--venue", help="load a venue first: 'demo' or a JSON file")
    gateway.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    gateway.set_defaults(run=cmd_gateway)

    sim = commands.add_parser("sim-reader", help="run one simulated reader (real firmware)")
    sim.add_argument("--broker", required=True, help="mqtt://host:port")
    sim.add_argument("--reader", required=True, help="reader id, e.g. gate-1")
    sim.add_argument("--direction", default="in", choices=["in", "out"])
    sim.add_argument("--gate", default="", help="gate name reported with each tap")
    sim.add_argument("--heap", default=DEFAULT_HEAP, help="MicroPython heap size")
    sim.set_defaults(run=cmd_sim_reader)

    bench = commands.add_parser("bench", help="measure: print numbers for docs/BENCHMARKS.md")
    benches = bench.add_subparsers(dest="bench", required=True, metavar="BENCH")
    taps = benches.add_parser("taps", help="tap-to-light round trips on the demo rig")
    taps.add_argument("--count", type=int, default=500, help="number of taps")
    taps.set_defaults(run=cmd_bench_taps)
    codec = benches.add_parser("codec", help="encode+decode messages/s: portable codec, cbor2")
    codec.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    codec.add_argument(
        "--no-micropython", action="store_true", help="skip the MicroPython measurements"
    )
    codec.set_defaults(run=cmd_bench_codec)
    heap = benches.add_parser("heap", help="the reader's heap, module by module (MicroPython)")
    heap.set_defaults(run=cmd_bench_heap)
    store = benches.add_parser("store", help="gateway taps/s through the handler on SQLite")
    store.add_argument("--count", type=int, default=5000, help="number of taps")
    store.set_defaults(run=cmd_bench_store)

    fuzz = commands.add_parser("fuzz", help="mutated and random frames at the decode path")
    fuzz.add_argument("--frames", type=int, default=100_000, help="frames per interpreter")
    fuzz.add_argument("--seed", type=int, default=1, help="PRNG seed (same seed, same frames)")
    fuzz.add_argument(
        "--micropython", action="store_true", help="also fuzz the reader's decode on MicroPython"
    )
    fuzz.set_defaults(run=cmd_fuzz)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
