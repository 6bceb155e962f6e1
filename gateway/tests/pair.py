"""The in-memory pair, as h11 tests its connections: a reader that speaks the protocol (it
builds the frames SPEC.md describes and decodes the replies) joined straight to the gateway's
core and a real store, one transaction per ``send`` as the decision worker would run it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, date, datetime

from bandlink.gateway.core.handler import Core, Effects, Frame
from bandlink.gateway.store import Store
from bandlink.gateway.worker import commit_batch
from bandlink.protocol import GATE, IN, Birth, Death, Result, Tap, decode, encode, topics
from bandlink.tools.sunband import development_bands

TODAY = date(2026, 11, 22)
# Noon on TODAY (UTC), the clock every decision in the pair is made at unless a test says.
NOON_MS = int(datetime(2026, 11, 22, 12, tzinfo=UTC).timestamp() * 1000)


class Pair:
    def __init__(self, store: Store, core: Core | None = None) -> None:
        self.store = store
        self.core = core or Core()
        self.effects: list[Effects] = []

    def send(self, frames: Sequence[Frame], now_ms: int = NOON_MS) -> Effects:
        """Decide ``frames`` as one batch, retried on a lost race as the worker does."""
        effects = commit_batch(self.core, self.store, frames, lambda: now_ms)
        self.effects.append(effects)
        return effects

    def events(self) -> list[object]:
        return [event for effects in self.effects for event in effects.events]

    def tap(
        self,
        uid: bytes,
        *,
        direction: int = IN,
        reader: str = "gate-1",
        now_ms: int = NOON_MS,
        sun: bool = True,
    ) -> Result:
        """One tap and its decoded answer."""
        tap = make_tap(uid, direction=direction, reader=reader, sun=sun)
        (result,) = self.results([evt_frame(tap, reader=reader, received_ms=now_ms)], now_ms)
        assert result.corr == tap.mid
        return result

    def results(self, frames: Sequence[Frame], now_ms: int = NOON_MS) -> list[Result]:
        replies = self.send(frames, now_ms).replies
        decoded = [decode(reply.payload) for reply in replies]
        assert all(isinstance(result, Result) for result in decoded)
        return decoded  # type: ignore[return-value]


def make_tap(
    uid: bytes,
    *,
    direction: int = IN,
    reader: str = "gate-1",
    mid: bytes | None = None,
    ts: int = 5,
    deadline: int | None = None,
    offline: bool = False,
    sun: bool = True,
) -> Tap:
    """A gate tap with a fresh SUN reading of the (development venue's) band, as a bandlink
    band makes on every tap; ``sun`` False: the UID alone. ``offline``: one the reader decided
    alone (green), as a Journal carries."""
    return Tap(
        reader=reader,
        ts=ts,
        deadline=deadline,
        mid=mid or os.urandom(16),
        uid=uid,
        role=GATE,
        direction=direction,
        offline=offline or None,
        local_granted=True if offline else None,
        **(development_bands().read(uid) if sun else {}),
    )


def evt_frame(
    message: Tap | bytes,
    reader: str = "gate-1",
    kind: str = topics.EVT,
    *,
    received_ms: int = NOON_MS,
) -> Frame:
    payload = message if isinstance(message, bytes) else encode(message)
    return Frame(topics.reader_topic(reader, kind), payload, received_ms)


def birth_frame(reader: str, bdseq: int) -> Frame:
    birth = Birth(reader=reader, ts=1, bdseq=bdseq, firmware="fw", role=GATE)
    return Frame(topics.reader_topic(reader, topics.BIRTH), encode(birth), NOON_MS)


def death_frame(reader: str, bdseq: int) -> Frame:
    death = Death(reader=reader, ts=1, bdseq=bdseq)
    return Frame(topics.reader_topic(reader, topics.DEATH), encode(death), NOON_MS)
