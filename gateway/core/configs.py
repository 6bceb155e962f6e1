"""Each registered reader's configuration, as the retained Config on its ``cfg`` topic.

Theory of operation: the catalog (readers table) is the truth; every gateway process's memory
view follows it (store/view.py). ``ConfigPublisher.changes`` compares what the view says now
with what this process last published, and returns a retained Config for each reader whose
configuration changed (or that is new), and an empty retained message for each reader that
left the catalog (which clears its topic). ``forget`` makes the next call publish everything:
after a (re)connection, since the broker may have lost its retained messages. Several gateway
processes publishing the same configuration is harmless: retained, the last one stands, and
it says the same.

Pure: no MQTT, no clock, no SQL; the caller passes the view and ``now``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from bandlink.protocol import GATE, IN, OUT, PHOTO, POS, Config, ProtocolError, topics

from .entry import Reader
from .wire import encode

ROLE_CODES = {"gate": GATE, "pos": POS, "photo": PHOTO}  # the catalog's names, the wire's codes
DIRECTION_CODES = {"in": IN, "out": OUT}
U32_MAX = 2**32 - 1


class ReaderCatalog(Protocol):
    generation: int  # bumped whenever a reader's entry changes

    def readers(self) -> Iterable[Reader]: ...


def config_message(reader: Reader, now_ms: int) -> Config:
    """The Config (type 6) the gateway publishes, retained, for ``reader``."""
    gate = reader.role == "gate"
    pos = reader.role == "pos"
    return Config(
        reader=reader.id,
        ts=now_ms,
        version=min(reader.config_version, U32_MAX),
        role=ROLE_CODES[reader.role],
        gate=reader.gate if gate else None,
        direction=DIRECTION_CODES[reader.direction] if gate else None,
        deadline_ms=reader.deadline_ms,
        hold_ms=reader.hold_ms,
        offline_floor=reader.offline_floor if pos else None,
        offline_cap=reader.offline_cap if pos else None,
    )


def _key(reader: Reader) -> tuple[object, ...]:
    return (
        reader.config_version,
        reader.role,
        reader.gate,
        reader.direction,
        reader.deadline_ms,
        reader.hold_ms,
        reader.offline_floor,
        reader.offline_cap,
    )


class ConfigPublisher:
    """What this process has published on each reader's cfg topic; used by one thread."""

    def __init__(self) -> None:
        self._published: dict[str, tuple[object, ...]] = {}
        self._generation = -1  # the view's generation last compared; -1: compare at once
        # Readers whose configuration no Config can carry, not yet reported (the worker logs
        # and clears them): each is named once per change of its catalog entry, not per pass.
        self.skipped: set[str] = set()

    def forget(self) -> None:
        """Publish every reader's configuration again at the next ``changes``."""
        self._published.clear()
        self._generation = -1

    def changes(self, view: ReaderCatalog, now_ms: int) -> list[tuple[str, bytes]]:
        """(topic, payload) to publish retained: a Config per changed reader, b"" per reader
        gone from the catalog."""
        if view.generation == self._generation:
            return []
        self._generation = view.generation
        out: list[tuple[str, bytes]] = []
        present: set[str] = set()
        for reader in view.readers():
            present.add(reader.id)
            key = _key(reader)
            if self._published.get(reader.id) == key:
                continue
            try:
                payload = encode(config_message(reader, now_ms))
                topic = topics.reader_topic(reader.id, topics.CFG)
            except (ProtocolError, KeyError):
                self.skipped.add(reader.id)  # e.g. an id that is no topic level
                self._published[reader.id] = key  # not again until its entry changes
                continue
            self._published[reader.id] = key
            out.append((topic, payload))
        for gone in [r for r in self._published if r not in present]:
            del self._published[gone]
            out.append((topics.reader_topic(gone, topics.CFG), b""))
        return out
