"""A venue on this machine, every part real and its own process: a private Mosquitto, N gateway
processes (two by default) sharing the readers' traffic on one SQLite file with the demo venue,
and two gate readers (entry ``gate-1``, exit ``gate-2`` at the north gate) running the firmware
on the MicroPython unix port. The demo and the benchmarks run on it; leaving the ``with`` block
stops every process it started."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bandlink.gateway.store import Store

from .broker import MosquittoBroker
from .gatewayproc import GatewayGroup
from .simreader import SimReader

READERS = (("gate-1", "in"), ("gate-2", "out"))


@dataclass
class Rig:
    broker: MosquittoBroker
    gateways: GatewayGroup
    readers: dict[str, SimReader]
    store: Store  # the gateway's store, opened beside it to read what it recorded

    def heap_used_max(self) -> int:
        return max(reader.heap_used_max for reader in self.readers.values())


@contextmanager
def venue_rig(
    workdir: Path, say: Callable[[str], None] = print, *, gateways: int = 2
) -> Iterator[Rig]:
    """Start the rig in a fresh ``workdir`` (its store is ``workdir/venue.db``)."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    db_url = f"sqlite:///{workdir / 'venue.db'}"
    with ExitStack() as stack:
        broker = stack.enter_context(MosquittoBroker(workdir / "mosquitto"))
        say(f"broker   {broker.url} (pid {broker.pid})")
        group = stack.enter_context(GatewayGroup(broker.url, db_url, workdir, count=gateways))
        for member in group.members:
            say(f"gateway  {member.gateway_id} (pid {member.pid}), store {db_url}")
        readers = {}
        for name, direction in READERS:
            reader = SimReader(name, broker.url, workdir, direction=direction, gate="north")
            readers[name] = stack.enter_context(reader)
        for reader in readers.values():
            reader.wait_online()
            say(f"reader   {reader.reader_id} (micropython pid {reader.pid}, heap {reader.heap})")
        store = Store(db_url)
        stack.callback(store.close)
        yield Rig(broker, group, readers, store)
