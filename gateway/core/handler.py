"""The gateway's core handler: frames in, replies out, no MQTT and no clock of its own.

``Gateway.handle(topic, payload, now_ms)`` is what the bus calls for every message on a reader's
event topic; it returns the frames to publish. Everything a peer can get wrong (garbage bytes,
an oversize frame, a message claiming another reader's id) is logged with the reader, counted
and dropped here, at the single receive entry point; the gateway keeps running.

A tap's effect is keyed by its ``mid``: a duplicate (QoS 1 redelivery, a reader's resend) is
answered with the stored decision and recorded once, because the store's primary key decides.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime

from bandlink.protocol import (
    GATE,
    IN,
    OUT,
    Birth,
    Death,
    GatewayState,
    Journal,
    Message,
    ProtocolError,
    Result,
    Status,
    Tap,
    decode,
    encode,
    reasons,
    topics,
)

from .entry import Band, Presence, decide_entry
from .store import Store, TapRecord

log = logging.getLogger("bandlink.gateway")

# How the store names a tap's direction; "-" for taps of roles that have none.
DIRECTION_NAMES = {IN: "in", OUT: "out"}

# What the reader's display says; the reason code travels beside it for logs and tests.
_REFUSAL_TEXT = {
    "unknown_band": "Band not recognised",
    "band_blocked": "Band blocked - see staff",
    "no_valid_ticket": "No valid ticket",
    "already_inside": "Already inside",
    "unknown_reader": "Reader not set up",
    "wrong_role": "Reader not a gate",
}


# What may arrive on each of a reader's topics.
_ACCEPTED: dict[str, tuple[type[Message], ...]] = {
    topics.EVT: (Tap, Status, Journal),
    topics.BIRTH: (Birth,),
    topics.DEATH: (Death,),
}


@dataclass(frozen=True)
class Outgoing:
    topic: str
    payload: bytes


class Gateway:
    def __init__(self, store: Store, *, today: date | None = None) -> None:
        self._store = store
        self._fixed_today = today  # tests pin the day; a running gateway follows its clock
        self.counts: Counter[str] = Counter()
        # Reader -> bdSeq of its current session (births seen by this process).
        self.sessions: dict[str, int] = {}

    def handle(self, topic: str, payload: bytes | bytearray, now_ms: int) -> list[Outgoing]:
        parsed = topics.parse(topic)
        if parsed is None or parsed[1] not in _ACCEPTED:
            self.counts["foreign_topic"] += 1
            return []
        reader_id, kind = parsed
        try:
            message = decode(payload)
        except ProtocolError as err:
            self.counts["dropped_" + err.code] += 1
            log.warning("dropped frame from %s: %s (%d bytes)", reader_id, err, len(payload))
            return []
        if message.reader != reader_id:
            # The broker's ACL ties a reader to its own topics; a body naming another reader is
            # a misconfigured or hostile device.
            self.counts["dropped_reader_mismatch"] += 1
            log.warning("dropped frame on %s claiming reader %s", topic, message.reader)
            return []
        if not isinstance(message, _ACCEPTED[kind]):
            self.counts["dropped_wrong_topic"] += 1
            log.warning("dropped %s on %s", type(message).__name__, topic)
            return []
        return self._dispatch(message, now_ms)

    def state_frame(self, *, online: bool, now_ms: int) -> Outgoing:
        """The retained $gw/state message (and, with online=False, the bus's MQTT will)."""
        return Outgoing(topics.GATEWAY_STATE, encode(GatewayState(ts=now_ms, online=online)))

    def _dispatch(self, message: Message, now_ms: int) -> list[Outgoing]:
        if isinstance(message, Tap):
            result = self.on_tap(message, now_ms)
            return [Outgoing(topics.reader_topic(message.reader, topics.RES), encode(result))]
        if isinstance(message, Birth):
            self._on_birth(message)
        elif isinstance(message, Death):
            self._on_death(message)
        else:
            # Status heartbeats and offline journals are counted; acting on them comes with
            # the fleet view and offline decisions.
            self.counts["ignored_" + type(message).__name__.lower()] += 1
        return []

    def _on_birth(self, birth: Birth) -> None:
        assert birth.reader is not None and birth.bdseq is not None  # Birth requires both
        self.sessions[birth.reader] = birth.bdseq
        self.counts["birth"] += 1
        log.info("reader %s online: %s, session %d", birth.reader, birth.firmware, birth.bdseq)

    def _on_death(self, death: Death) -> None:
        # Sparkplug B: a death belongs to the session whose birth carried the same bdSeq. A late
        # will of an earlier session must not mark a reader that is back online as gone.
        assert death.reader is not None
        if self.sessions.get(death.reader) != death.bdseq:
            self.counts["stale_death"] += 1
            log.info("ignored a death of %s for old session %s", death.reader, death.bdseq)
            return
        del self.sessions[death.reader]
        self.counts["death"] += 1
        log.warning("reader %s offline (session %s)", death.reader, death.bdseq)

    def on_tap(self, tap: Tap, now_ms: int) -> Result:
        # No look-up of the mid first: record_tap's insert settles duplicates (and races between
        # gateway processes) by the primary key and hands back the decision stored first. A
        # duplicate is decided again for nothing, but it is the rare case; a new tap saves a read.
        band = self._store.band(tap.uid)
        record, presence = self._decide(tap, band, now_ms)
        stored = self._store.record_tap(record, presence)
        if stored is record:
            self.counts["granted" if stored.granted else "refused"] += 1
        else:
            self.counts["duplicate"] += 1
        if band is not None and band.guest_id == stored.guest_id:
            name = band.guest_name
        else:  # a duplicate whose band was relinked since: greet the guest it was decided for
            name = self._store.guest_name(stored.guest_id) if stored.guest_id else None
        return self._result(tap, stored, name, now_ms)

    def _decide(
        self, tap: Tap, band: Band | None, now_ms: int
    ) -> tuple[TapRecord, Presence | None]:
        direction = "-" if tap.direction is None else DIRECTION_NAMES[tap.direction]
        reader = self._store.reader(tap.reader)
        guest_id = band.guest_id if band is not None else None
        presence: Presence | None = None
        if reader is None:
            granted, reason = False, "unknown_reader"
        elif reader.role != "gate" or tap.role != GATE:
            # Payments and photos arrive with their issues; until then such a tap is refused.
            granted, reason = False, "wrong_role"
        else:
            tickets = self._store.tickets_for(guest_id) if guest_id else []
            current = self._store.presence(guest_id, reader.site) if guest_id else None
            decision = decide_entry(
                reader=reader,
                band=band,
                tickets=tickets,
                presence=current,
                direction=direction,
                today=self._today(),
                now_ms=now_ms,
            )
            granted, reason, presence = decision.granted, decision.reason, decision.presence
        record = TapRecord(
            mid=tap.mid,
            reader_id=tap.reader,
            uid=tap.uid,
            direction=direction,
            reader_ts_ms=tap.ts,
            received_ms=now_ms,
            granted=granted,
            reason=reason,
            guest_id=guest_id,
            seq=tap.seq,
        )
        return record, presence

    def _result(self, tap: Tap, record: TapRecord, name: str | None, now_ms: int) -> Result:
        if record.granted:
            text = ("Goodbye " if record.direction == "out" else "Welcome ") + (name or "")
        else:
            text = _REFUSAL_TEXT.get(record.reason, "Please see staff")
        return Result(
            reader=tap.reader,
            ts=now_ms,
            seq=tap.seq,
            corr=tap.mid,
            granted=record.granted,
            reason=reasons.code(record.reason),
            text=text.strip()[:32],
            name=name[:24] if name else None,
        )

    def _today(self) -> date:
        return self._fixed_today or datetime.now().date()
