"""The ``bandlink`` command line."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import tempfile
import threading
from pathlib import Path

from .gatewayproc import READY_LINE
from .micropython import DEFAULT_HEAP


def cmd_gateway(args: argparse.Namespace) -> int:
    from bandlink.gateway.main import GatewayService
    from bandlink.gateway.settings import SettingsError, load_settings

    try:
        settings = load_settings(
            config_file=args.config,
            broker=args.broker,
            db=args.db,
            venue=args.venue,
            gateway_id=args.gateway_id,
            timezone=args.timezone,
            metrics=args.metrics,
            http=args.http,
            log_level=args.log_level,
        )
    except SettingsError as err:
        print(err, file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if settings.broker_user is None:
        logging.getLogger("bandlink").warning(
            "no broker_user set (BANDLINK_BROKER_USER, or `bandlink provision gateway`): "
            "a locked broker refuses an anonymous client"
        )
    service = GatewayService(settings)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    service.start()
    if not service.bus.wait_connected(timeout=10):
        logging.getLogger("bandlink").warning(
            "broker %s not reachable yet; retrying", settings.broker
        )
    print(READY_LINE, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        stopping.wait()
    service.stop()
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
            config=Path(args.config),
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


def cmd_provision(args: argparse.Namespace) -> int:
    from .provision import run_provision

    return run_provision(
        args.kind, args.id, Path(args.broker_dir), Path(args.config), args.broker, role=args.role
    )


def cmd_chaos(args: argparse.Namespace) -> int:
    from .chaos import print_report, run_chaos

    report = run_chaos(
        args.fault, readers=args.readers, seconds=args.seconds, outage_s=args.outage, db_url=args.db
    )
    print_report(report, args.json)
    return 0 if report.ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(taps=args.taps, gateways=args.gateways)


def cmd_bench_taps(args: argparse.Namespace) -> int:
    from .bench import bench_taps

    return bench_taps(args.count, args.heap)


def cmd_bench_codec(args: argparse.Namespace) -> int:
    from .bench import bench_codec

    return bench_codec(args.seconds, micropython=not args.no_micropython)


def cmd_bench_heap(args: argparse.Namespace) -> int:
    from .bench import bench_heap

    return bench_heap()


def cmd_bench_store(args: argparse.Namespace) -> int:
    from .bench import bench_store

    if args.profile:
        from .bench import bench_store_profile

        return bench_store_profile(args.count, (args.batch or [64])[0], args.db)
    if args.paced is not None:
        from .bench import bench_store_paced

        return bench_store_paced(args.count, args.paced, args.db)
    return bench_store(args.count, args.batch or (1, 64), args.db)


def cmd_bench_offline(args: argparse.Namespace) -> int:
    from .bench import bench_offline

    return bench_offline(args.taps, args.bands, args.heap)


def cmd_bench_list(args: argparse.Namespace) -> int:
    from .bench import bench_list

    return bench_list(args.bands, args.delta, args.lookups, as_json=args.json)


def cmd_bench_e2e(args: argparse.Namespace) -> int:
    from .bench_e2e import bench_e2e

    return bench_e2e(
        rate=args.rate,
        window=args.window,
        seconds=args.seconds,
        readers=args.readers,
        gateways=args.gateways,
        db=args.db,
        as_json=args.json,
    )


def cmd_fuzz(args: argparse.Namespace) -> int:
    from .fuzz import run_fuzz

    return run_fuzz(args.frames, args.seed, micropython=args.micropython)


def _add_bench_e2e(benches: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    e2e = benches.add_parser("e2e", help="taps/s and latency through broker and gateways, vs echo")
    load = e2e.add_mutually_exclusive_group(required=True)
    load.add_argument("--rate", type=float, help="open loop: taps per second, on a schedule")
    load.add_argument("--window", type=int, help="closed loop: taps in flight at all times")
    e2e.add_argument("--seconds", type=float, required=True, help="how long the load runs")
    e2e.add_argument("--readers", type=int, default=16, help="simulated gate readers (K)")
    e2e.add_argument("--gateways", type=int, default=1, help="gateway processes (N)")
    e2e.add_argument(
        "--db",
        help="store URL, or 'postgresql' for a private cluster "
        "(default: a fresh SQLite file in var/bench-e2e)",
    )
    e2e.add_argument("--json", action="store_true", help="also print one JSON object, last")
    e2e.set_defaults(run=cmd_bench_e2e)


def _add_bench_list(benches: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bl = benches.add_parser(
        "list", help="the reader's band list: build, look-up, delta (MicroPython)"
    )
    bl.add_argument("--bands", type=int, default=100_000, help="bands in the snapshot")
    bl.add_argument(
        "--delta", type=int, default=1000, help="bands the delta adds, replaces, removes"
    )
    bl.add_argument("--lookups", type=int, default=10_000, help="random look-ups, half not listed")
    bl.add_argument("--json", action="store_true", help="also print one JSON object, last")
    bl.set_defaults(run=cmd_bench_list)
    _add_bench_offline(benches)


def _add_sim_reader(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = commands.add_parser("sim-reader", help="run one simulated reader (real firmware)")
    sim.add_argument("--broker", required=True, help="mqtt://host:port")
    sim.add_argument("--reader", required=True, help="reader id, e.g. gate-1")
    sim.add_argument("--direction", default="in", choices=["in", "out"])
    sim.add_argument("--gate", default="", help="gate name reported with each tap")
    sim.add_argument("--heap", default=DEFAULT_HEAP, help="MicroPython heap size")
    sim.add_argument(
        "--config",
        required=True,
        help="the reader's config.json with its broker login (`bandlink provision reader`)",
    )
    sim.set_defaults(run=cmd_sim_reader)


def _add_provision(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    provision = commands.add_parser(
        "provision",
        help="give a reader or gateway its broker identity",
        description="Make (or replace) the identity in the broker directory's password file "
        "(hashed by mosquitto_passwd) and ACL, and write the credentials into the reader's "
        "config.json or the gateway's settings TOML (mode 0600). The password is not printed.",
    )
    provision.add_argument("kind", choices=["reader", "gateway"])
    provision.add_argument("id", help="reader id (e.g. gate-1) or gateway id (e.g. gw-1)")
    provision.add_argument("--broker-dir", required=True, help="the broker's directory")
    provision.add_argument(
        "--config", required=True, help="the reader's config.json or the gateway's settings TOML"
    )
    provision.add_argument("--broker", help="mqtt://host:port to write into the file as well")
    provision.add_argument(
        "--role",
        choices=["gate", "pos"],
        help="a reader's role, written into its config.json; a pos reader also gets its PIN key, "
        "derived from the gateway's secret key in BANDLINK_SECRET_KEY (refused without it)",
    )
    provision.set_defaults(run=cmd_provision)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bandlink", description="Open firmware and gateway for NFC wristbands and readers."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="run a demo venue: broker, gateway, two gate readers")
    demo.add_argument("--taps", type=int, default=0, help="stop after N decided taps (0: never)")
    demo.add_argument("--gateways", type=int, default=2, help="gateway processes sharing the load")
    demo.set_defaults(run=cmd_demo)

    gateway = commands.add_parser(
        "gateway",
        help="run one gateway process against a broker and a store",
        description="Flags override BANDLINK_* environment variables, which override --config. "
        "The broker login comes from BANDLINK_BROKER_USER and BANDLINK_BROKER_PASSWORD, or "
        "broker_user and broker_password in the settings file (`bandlink provision gateway` "
        "writes them): never from a flag, which every user of the machine can read.",
    )
    gateway.add_argument("--config", help="a TOML settings file (or BANDLINK_CONFIG)")
    gateway.add_argument("--broker", help="mqtt://host:port (BANDLINK_BROKER)")
    gateway.add_argument(
        "--db", help="sqlite:///var/bl.db or postgresql://user@host/db (BANDLINK_DB)"
    )
    gateway.add_argument("--venue", help="load a venue first: 'demo' or a JSON file")
    gateway.add_argument("--gateway-id", help="this process's liveness name (default gw-1)")
    gateway.add_argument("--timezone", help="the venue's IANA time zone (default UTC)")
    gateway.add_argument("--metrics", help="HOST:PORT to serve Prometheus metrics on")
    gateway.add_argument("--http", help="HOST:PORT to serve the HTTP API on (OpenAPI at /docs)")
    gateway.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    gateway.set_defaults(run=cmd_gateway)

    _add_sim_reader(commands)
    _add_provision(commands)
    _add_token(commands)
    _add_till(commands)
    _add_band(commands)
    _add_staff(commands)

    bench = commands.add_parser("bench", help="measure: print numbers for docs/BENCHMARKS.md")
    benches = bench.add_subparsers(dest="bench", required=True, metavar="BENCH")
    taps = benches.add_parser("taps", help="tap-to-light round trips on the demo rig")
    taps.add_argument("--count", type=int, default=500, help="number of taps")
    taps.add_argument("--heap", default=DEFAULT_HEAP, help="the readers' MicroPython heap")
    taps.set_defaults(run=cmd_bench_taps)
    codec = benches.add_parser("codec", help="encode+decode messages/s: portable codec, cbor2")
    codec.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    codec.add_argument(
        "--no-micropython", action="store_true", help="skip the MicroPython measurements"
    )
    codec.set_defaults(run=cmd_bench_codec)
    heap = benches.add_parser("heap", help="the reader's heap, module by module (MicroPython)")
    heap.set_defaults(run=cmd_bench_heap)
    store = benches.add_parser("store", help="taps/s through the core and the store's unit of work")
    store.add_argument("--count", type=int, default=5000, help="number of taps")
    store.add_argument(
        "--batch", type=int, action="append", help="taps per transaction (repeatable; 1 and 64)"
    )
    store.add_argument("--db", help="SQLAlchemy URL (default: a fresh SQLite file)")
    store.add_argument(
        "--paced", type=float, metavar="MS", help="one tap per transaction, MS apart: phases"
    )
    store.add_argument(
        "--profile", action="store_true", help="under cProfile: where a tap's time goes"
    )
    store.set_defaults(run=cmd_bench_store)
    _add_bench_e2e(benches)
    _add_bench_list(benches)

    _add_chaos(commands)

    fuzz = commands.add_parser("fuzz", help="mutated and random frames at the decode path")
    fuzz.add_argument("--frames", type=int, default=100_000, help="frames per interpreter")
    fuzz.add_argument("--seed", type=int, default=1, help="PRNG seed (same seed, same frames)")
    fuzz.add_argument(
        "--micropython", action="store_true", help="also fuzz the reader's decode on MicroPython"
    )
    fuzz.set_defaults(run=cmd_fuzz)
    return parser


def _add_bench_offline(benches: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    offline = benches.add_parser(
        "offline", help="a gate deciding alone from a big band list: heap and time per tap"
    )
    offline.add_argument("--taps", type=int, default=10_000)
    offline.add_argument("--bands", type=int, default=100_000)
    offline.add_argument("--heap", default=DEFAULT_HEAP, help="the reader's MicroPython heap")
    offline.set_defaults(run=cmd_bench_offline)


def _add_chaos(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    chaos = commands.add_parser(
        "chaos", help="break the installation on loopback; count lights seen against records"
    )
    chaos.add_argument(
        "--fault",
        required=True,
        choices=["broker-restart", "gateway-kill", "reader-kill", "partition"],
    )
    chaos.add_argument("--readers", type=int, default=3, help="gate readers (real firmware)")
    chaos.add_argument("--seconds", type=float, default=20.0, help="how long guests tap")
    chaos.add_argument(
        "--outage", type=float, help="how long the fault lasts (default: half of --seconds)"
    )
    chaos.add_argument("--db", help="the gateways' store (default: a fresh SQLite file)")
    chaos.add_argument("--json", action="store_true", help="the report as JSON")
    chaos.set_defaults(run=cmd_chaos)


def _store_url(args: argparse.Namespace, command: str) -> str | None:
    """The gateway's store for a command that writes to it: --db, else BANDLINK_DB."""
    import os

    db: str | None = args.db or os.environ.get("BANDLINK_DB")
    if not db:
        hint = "name the gateway's store: --db URL (or BANDLINK_DB)"
        print(f"bandlink {command}: {hint}", file=sys.stderr)
    return db


def cmd_token_create(args: argparse.Namespace) -> int:
    from .api import create_token

    db = _store_url(args, "token")
    if db is None:
        return 2
    try:
        token_id, secret = create_token(db, args.role, args.outlet)
    except ValueError as err:
        print(f"bandlink token: {err}", file=sys.stderr)
        return 2
    print(
        f"# token {token_id}, role {args.role}; shown once, only its hash is kept", file=sys.stderr
    )
    print(secret)
    return 0


def _add_token(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = commands.add_parser("token", help="API tokens for tills, desks and operators")
    actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="make a token and print it (once)")
    create.add_argument("--role", required=True, choices=["till", "desk", "operator", "admin"])
    create.add_argument("--outlet", help="a till's outlet: it charges only at its readers")
    create.add_argument("--db", help="the gateway's store (else BANDLINK_DB)")
    create.set_defaults(run=cmd_token_create)


def cmd_staff_add(args: argparse.Namespace) -> int:
    from .api import add_staff

    db = _store_url(args, "staff")
    if db is None:
        return 2
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
    try:
        shown = add_staff(
            db,
            login=args.login,
            name=args.name,
            role=args.role,
            outlet=args.outlet,
            password=password,
        )
    except ValueError as err:
        print(f"bandlink staff: {err}", file=sys.stderr)
        return 2
    if shown is not None:
        print(f"# password for {args.login}; shown once, only its hash is kept", file=sys.stderr)
        print(shown)
    return 0


def _add_staff(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    staff = commands.add_parser("staff", help="people who log in: admins, desks, operators, tills")
    actions = staff.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a staff member (a password is made and shown once)")
    add.add_argument("--login", required=True, help="what they log in with")
    add.add_argument("--name", required=True, help="their name, for the audit log")
    add.add_argument("--role", required=True, choices=["till", "desk", "operator", "admin"])
    add.add_argument("--outlet", help="a till's outlet")
    add.add_argument("--db", help="the gateway's store (else BANDLINK_DB)")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    add.set_defaults(run=cmd_staff_add)


def cmd_till_charge(args: argparse.Namespace) -> int:
    from .till import charge

    return charge(
        url=args.url,
        token=args.token,
        reader=args.reader,
        amount=args.amount,
        currency=args.currency,
        description=args.description,
        wait_s=args.wait,
    )


def _add_till(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    import os

    till = commands.add_parser("till", help="act as a till against a gateway's HTTP API")
    actions = till.add_subparsers(dest="action", required=True, metavar="ACTION")
    charge = actions.add_parser("charge", help="charge at a pos reader and wait for the tap")
    charge.add_argument("--reader", required=True, help="the pos reader, e.g. pos-1")
    charge.add_argument("--amount", required=True, help="in the currency's units, e.g. 4.50")
    charge.add_argument("--currency", default="EUR")
    charge.add_argument("--description", help="what the reader shows beside the amount")
    charge.add_argument(
        "--url",
        default=os.environ.get("BANDLINK_API", "http://127.0.0.1:8080"),
        help="the gateway's HTTP API (BANDLINK_API)",
    )
    charge.add_argument(
        "--token", default=os.environ.get("BANDLINK_TOKEN"), help="a till token (BANDLINK_TOKEN)"
    )
    charge.add_argument("--wait", type=float, default=60, help="seconds to wait for the tap")
    charge.set_defaults(run=cmd_till_charge)


def cmd_band_sun_verify(args: argparse.Namespace) -> int:
    from .band import Keys, parse_key, print_report, sun_verify

    try:
        key = parse_key(args.key)
        file_key = parse_key(args.file_key) if args.file_key else None
    except ValueError as err:
        print(f"bandlink band sun-verify: {err}", file=sys.stderr)
        return 2
    return print_report(sun_verify(args.url, Keys(key, args.master, file_key)))


def cmd_band_enrol(args: argparse.Namespace) -> int:
    from .enrol import run_enrol

    return run_enrol(args.device, args.guest, db=args.db, url=args.url)


def _add_band(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    band = commands.add_parser("band", help="bands: enrol a new band, verify a SUN URL")
    actions = band.add_subparsers(dest="action", required=True, metavar="ACTION")
    verify = actions.add_parser(
        "sun-verify",
        help="verify one SUN URL and print uid, counter, file data, valid, reason (JSON)",
        description="Exit status 0 when the URL verifies, 1 when it does not, 2 on bad usage.",
    )
    verify.add_argument("url", help="the band's URL: ...?picc_data=..&cmac=.. (or e=, enc=)")
    verify.add_argument("--key", required=True, help="16-byte key in hex: the band's SDM key")
    verify.add_argument(
        "--master", action="store_true", help="--key is the venue's master key (AN10922)"
    )
    verify.add_argument("--file-key", help="the SDM file read key, when it differs from --key")
    verify.set_defaults(run=cmd_band_sun_verify)
    enrol = actions.add_parser(
        "enrol",
        help="personalise a factory-fresh NTAG 424 DNA on the reader and issue it to a guest",
        description="Prints uid, guest, counter and url (JSON). Exit status 0 when the band "
        "is personalised, verifies and is issued; 1 when it is not; 2 on bad usage. The "
        "master key comes from the gateway's settings (BANDLINK_BAND_MASTER_KEY_FILE, ...).",
    )
    enrol.add_argument("--guest", required=True, help="the guest's id in the store")
    enrol.add_argument(
        "--device", required=True, help="nfcpy device path: usb, usb:054c:06c3, tty:USB0:pn532"
    )
    enrol.add_argument("--db", help="SQLAlchemy URL of the store (default: BANDLINK_DB)")
    enrol.add_argument("--url", help="the band's URL, https://host/path (default: the demo's)")
    enrol.set_defaults(run=cmd_band_enrol)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
