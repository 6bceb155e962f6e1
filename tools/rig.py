"""A venue on this machine, every part real and its own process: a private Mosquitto, N gateway
processes (two by default) sharing the readers' traffic on one SQLite file with the demo venue,
and two gate readers (entry ``gate-1``, exit ``gate-2`` at the north gate) running the firmware
on the MicroPython unix port; with ``payments``, the cafe's pos reader ``pos-1`` too, and the
gateways' HTTP API (tills and the desk). Every part logs in as itself, provisioned as at a venue
(``tools/provision.py``): each reader's identity in the broker's password file and ACL and its
credentials in its config.json, each gateway's in its settings file. The demo and the
benchmarks run on it; leaving the ``with`` block stops every process it started."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bandlink.gateway.store import Store

from .broker import MosquittoBroker
from .gatewayproc import GatewayGroup, gateway_ids
from .micropython import DEFAULT_HEAP
from .provision import provision_gateway, provision_reader
from .simreader import SimReader

READERS = (("gate-1", "in"), ("gate-2", "out"))


@dataclass
class Rig:
    broker: MosquittoBroker
    gateways: GatewayGroup
    readers: dict[str, SimReader]
    store: Store  # the gateway's store, opened beside it to read what it recorded
    db_url: str

    def heap_used_max(self) -> int:
        return max(reader.heap_used_max for reader in self.readers.values())


@contextmanager
def venue_rig(
    workdir: Path,
    say: Callable[[str], None] = print,
    *,
    gateways: int = 2,
    rate_limited: bool = True,
    heap: str = DEFAULT_HEAP,
    payments: bool = False,
) -> Iterator[Rig]:
    """Start the rig in a fresh ``workdir`` (its store is ``workdir/venue.db``). With
    ``rate_limited`` False the gateways drop the per-reader rate limit, for benchmarks that tap
    as fast as the machine allows (no person taps 20 times a second)."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    db_url = f"sqlite:///{workdir / 'venue.db'}"
    with ExitStack() as stack:
        broker = MosquittoBroker(workdir / "mosquitto")  # its port is chosen: provision first
        provisioned = workdir / "provisioned"
        # A fresh secret per rig: the gateways' (PIN hashes are peppered with it) and the pos
        # reader's PIN key, derived from it when provisioned.
        secret = secrets.token_urlsafe(32)
        roles = {name: "gate" for name, _ in READERS}
        if payments:
            roles["pos-1"] = "pos"
        reader_configs = {name: provisioned / f"{name}.json" for name in roles}
        for name, path in reader_configs.items():
            provision_reader(
                broker.directory,
                name,
                path,
                broker_url=broker.url,
                role=roles[name],
                secret_key=secret,
            )
        settings = {g: provisioned / f"{g}.toml" for g in gateway_ids(gateways)}
        for gateway_id, path in settings.items():
            provision_gateway(broker.directory, gateway_id, path, broker_url=broker.url)
        stack.enter_context(broker)
        say(f"broker   {broker.url} (pid {broker.pid}), identities in {broker.directory}")
        env = {"BANDLINK_SECRET_KEY": secret}
        if not rate_limited:
            env["BANDLINK_READER_RATE"] = "0"
        group = GatewayGroup(
            broker,
            db_url,
            workdir,
            count=gateways,
            config_files=settings,
            env=env,
            http=payments,
        )
        stack.enter_context(group)
        for member in group.members:
            say(f"gateway  {member.gateway_id} (pid {member.pid}), store {db_url}")
        readers = {}
        directions = dict(READERS)
        for name, path in reader_configs.items():
            reader = SimReader(
                name,
                broker.url,
                workdir,
                direction=directions.get(name, "in"),
                gate="north" if name in directions else "",
                config=path,
                heap=heap,
                role=roles[name],
            )
            readers[name] = stack.enter_context(reader)
        for reader in readers.values():
            reader.wait_online()
            say(f"reader   {reader.reader_id} (micropython pid {reader.pid}, heap {reader.heap})")
        store = Store(db_url)
        stack.callback(store.close)
        yield Rig(broker, group, readers, store, db_url)
