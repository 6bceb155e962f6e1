"""The gateway's core: frames and ``now`` in, replies and events out. No MQTT, no clock, no SQL.

``Core.handle(frames, now_ms, tx)`` is the single receive entry point. It decodes each frame
(anything malformed, oversize, on the wrong topic or claiming another reader's id becomes a
``Dropped`` event: counted and logged by the caller, never answered, except a tap that breaks a
field rule but whose envelope still names this topic's reader and a mid: that one is answered
``bad_request``), decides every tap against ``tx`` (the catalog from memory, presence and the
tap log inside one database transaction) in the order of SPEC.md's "Deciding a gate tap", and
returns what to publish once that transaction is committed (results, a TIME_SYNC for every
birth), and what happened.

A tap's effect is keyed by its ``mid``, which names one operation of one reader: a duplicate
(QoS 1 redelivery, a reader's resend, the same frame twice in one batch) is answered with the
decision stored first and applied once; a tap under a known mid from another reader, band, role
or direction is a bad request, and learns nothing of the stored one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import time
from typing import Protocol
from zoneinfo import ZoneInfo

from bandlink.protocol import (
    GATE,
    IN,
    MID_SIZE,
    OUT,
    POS,
    Birth,
    Command,
    Death,
    GatewayState,
    Journal,
    Message,
    ProtocolError,
    Result,
    Status,
    Tap,
    decode,
    messages,
    peek_tap,
    reasons,
    topics,
)
from bandlink.protocol.errors import BAD_FIELD

from .bands.keys import DEVELOPMENT_MASTER_KEY, BandKeys
from .bands.proof import BAD_MAC, SUN, Proof, prove
from .configs import ROLE_CODES
from .entry import (
    DEFAULT_CLOSING,
    Band,
    Presence,
    Reader,
    Site,
    Ticket,
    decide_entry,
    last_closing_ms,
    passage,
    venue_day,
)
from .lists import BandList, ListKeeper, takes_a_list
from .payments.operations import (
    BAD_BLOCK,
    NO_PIN,
    Books,
    TapPayment,
    pay_by_tap,
    reconcile_sale,
)
from .payments.pin import (
    PIN_SALT_SIZE,
    offline_pin_check,
    offline_pin_key,
    open_pin_block,
    reader_pin_key,
)
from .payments.pinhash import PinHasher
from .payments.records import Charge, Privilege
from .readers import SessionChange, SessionStore, on_birth, on_death
from .records import Raced, TapRecord
from .wire import encode

# How the store names a tap's direction; "-" for taps of roles that have none.
DIRECTION_NAMES = {IN: "in", OUT: "out"}
ROLE_NAMES = {code: name for name, code in ROLE_CODES.items()}

BAD_REQUEST = reasons.name(reasons.BAD_REQUEST)
PIN_REQUIRED = reasons.name(reasons.PIN_REQUIRED)
BAND_BLOCKED = reasons.name(reasons.BAND_BLOCKED)
STALE = reasons.name(reasons.STALE)
WRONG_DIRECTION = reasons.name(reasons.WRONG_DIRECTION)
UNKNOWN_READER = reasons.name(reasons.UNKNOWN_READER)
# An offline tap the gateway does not reconcile (a photo point's): on the report, for staff.
NOT_APPLIED = "not_applied"
# What the reader's display says; the reason code travels beside it for logs and tests.
_REFUSAL_TEXT = {
    "unknown_band": "Band not recognised",
    "bad_mac": "Band not accepted - see staff",
    "replayed": "Band not accepted - see staff",
    "band_blocked": "Band blocked - see staff",
    "no_valid_ticket": "No valid ticket",
    "already_inside": "Already inside",
    "unknown_reader": "Reader not set up",
    "wrong_role": "Reader not a gate",
    WRONG_DIRECTION: "Reader set up wrong - see staff",
    "busy": "Busy - tap again",
    "internal_error": "Please tap again",
    "stale": "Please tap again",
    BAD_REQUEST: "Reader error - see staff",
}
# Refusals that are the gateway's trouble, not the guest's: the reader shows "try again".
_TRY_AGAIN = {"busy", "internal_error", "stale"}
# A tap decided after its deadline is answered "stale" and has no effect: the reader already
# showed "try again". Only when the reader's clock agrees with ours (a reader whose clock was
# never set sends 1970 timestamps) to within this, and past the deadline by more than GRACE.
CLOCK_TRUST_MS = 300_000
DEADLINE_GRACE_MS = 100

# What may arrive on each of a reader's topics.
_ACCEPTED: dict[str, tuple[type[Message], ...]] = {
    topics.EVT: (Tap, Status, Journal),
    topics.BIRTH: (Birth,),
    topics.DEATH: (Death,),
}


@dataclass(frozen=True, slots=True)
class Frame:
    """One MQTT message as it arrived, with the gateway's clock at arrival."""

    topic: str
    payload: bytes
    received_ms: int  # wall clock: recorded with the tap
    received_ns: int = 0  # monotonic: for measuring how long the decision took


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    payload: bytes
    retain: bool = False  # a reader's Config (and an empty payload clearing one)


@dataclass(frozen=True, slots=True)
class Decided:
    """A tap answered: for logs and metrics, once its transaction is committed."""

    reader: str
    mid: bytes
    role: str
    reason: str
    granted: bool
    duplicate: bool
    received_ns: int
    uid: bytes = b""
    # Someone holds a band's identity who should not: "possible clone" (a copied UID, a
    # forged or replayed reading), "possible theft" (a band a desk blocked).
    alert: str | None = None


@dataclass(frozen=True, slots=True)
class Dropped:
    """A frame the gateway would not act on; ``code`` is a ProtocolError code or our own."""

    reader: str
    code: str
    detail: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """A valid message the gateway does not act on yet (Status, Journal)."""

    reader: str
    kind: str


Event = Decided | Dropped | SessionChange | Ignored


@dataclass
class Effects:
    replies: list[Outgoing] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


class CatalogReads(Protocol):
    applied: int  # the catalog's position: what changes when any of it changes

    def bands(self) -> list[Band]: ...
    def reader(self, reader_id: str) -> Reader | None: ...
    def site(self, site_id: str) -> Site | None: ...
    def band(self, uid: bytes) -> Band | None: ...
    def greeting_name(self, guest_id: str) -> str | None: ...
    def tickets(self, guest_id: str) -> list[Ticket]: ...
    def privilege(self, guest_id: str) -> Privilege | None: ...


class DecisionTx(SessionStore, Protocol):
    """One transaction, as the core sees it (the store's ``Transaction``)."""

    @property
    def view(self) -> CatalogReads: ...
    def presence(self, guest_id: str, site: str) -> Presence | None: ...
    def write_presence(self, read: Presence | None, new: Presence) -> None: ...
    def record_tap(self, tap: TapRecord) -> TapRecord: ...
    def tap_by_mid(self, mid: bytes) -> TapRecord | None: ...
    def last_counter(self, uid: bytes) -> int | None: ...
    def accept_reading(self, uid: bytes, counter: int, *, reader_id: str, at_ms: int) -> bool: ...
    def reading_shown(self, uid: bytes, counter: int) -> bool: ...
    def claim_list(self, reader: str, held: int | None, new: int) -> bool: ...
    @property
    def books(self) -> Books: ...


def random_mid() -> bytes:
    return os.urandom(MID_SIZE)


class Core:
    def __init__(
        self,
        zone: ZoneInfo | None = None,
        *,
        closing: time = DEFAULT_CLOSING,
        new_mid: Callable[[], bytes] = random_mid,
        secret_key: bytes = b"",
        band_keys: BandKeys | None = None,
    ) -> None:
        # A site's own zone and closing time win; these are the defaults (the settings').
        self.zone = zone or ZoneInfo("UTC")
        self.closing = closing
        self._new_mid = new_mid  # ids are passed in, like the time: commands need one each
        # Pos readers seal PINs with a key derived from the gateway's secret (one per reader);
        # stored PIN hashes are peppered with it.
        self._secret_key = secret_key
        self._pin_keys: dict[str, bytes] = {}
        self._offline_pin_key = offline_pin_key(secret_key)
        self.pins = PinHasher(secret_key)
        self._verified: dict[tuple[str, str, str], bool] = {}  # this batch's, checked ahead
        # Every band's keys, from the venue's master key (never the store's).
        self.band_keys = band_keys or BandKeys(DEVELOPMENT_MASTER_KEY)
        self.lists = ListKeeper()  # the band lists this process made lately

    def handle(self, frames: Sequence[Frame], now_ms: int, tx: DecisionTx) -> Effects:
        effects = Effects()
        for frame in frames:
            message = self._accept(frame, now_ms, effects)
            if isinstance(message, Tap):
                self._on_tap(message, frame, now_ms, tx, effects)
            elif isinstance(message, Birth):
                change = on_birth(tx, message, now_ms)
                effects.events.append(change)
                # A (re)connected reader's clock follows ours from its first tap on, even if
                # this birth was stale: whoever sent it is connected now.
                assert message.reader is not None
                effects.replies.append(self.time_sync(message.reader, now_ms))
                self._arm_again(message.reader, now_ms, tx, effects)
                if not change.stale:
                    held = message.list_version
                    effects.replies += self._list_for(message.reader, held, now_ms, tx)
            elif isinstance(message, Death):
                effects.events.append(on_death(tx, message, now_ms))
            elif isinstance(message, Journal):
                self._on_journal(message, frame, now_ms, tx, effects)
            elif message is not None:
                # Status heartbeats: acted on with the fleet view (a later issue).
                assert message.reader is not None
                effects.events.append(Ignored(message.reader, type(message).__name__.lower()))
        return effects

    def refuse(self, frame: Frame, reason: str, now_ms: int) -> Effects:
        """Answer a tap without deciding it ("busy" when the queue is full, "internal_error"
        when its transaction failed): the reader asks the guest to tap again at once."""
        effects = Effects()
        tap = self._accept(frame, now_ms, effects)
        if isinstance(tap, Journal):
            # Nothing of it recorded: the reader keeps the taps and uploads them again.
            assert tap.reader is not None and tap.mid is not None
            reply = self._result(tap.reader, tap.mid, tap.seq, now_ms, granted=False, reason=reason)
            effects.replies.append(reply)
        elif isinstance(tap, Tap) and tap.offline:
            # SPEC's order: a tap that cannot be acted on as sent is a bad request, not busy.
            self._unrecorded(tap, frame, BAD_REQUEST, now_ms, effects)
        elif isinstance(tap, Tap):
            record = _record(tap, frame.received_ms, granted=False, reason=reason, guest=None)
            effects.replies.append(self._reply(tap, record, None, now_ms))
            effects.events.append(_decided(tap, record, frame, duplicate=False))
        return effects

    # -- band lists -------------------------------------------------------------------------

    def lists_due(
        self, view: CatalogReads, held: Sequence[tuple[str, int | None]], now_ms: int
    ) -> list[tuple[str, int | None]]:
        """Of (reader, list it holds) for the readers online, those whose list is out of date:
        the catalog or the day changed (no write: most of the time there is none)."""
        due = []
        for reader_id, version in held:
            current = self._current_list(view, reader_id, now_ms)
            if current is not None and current.version != version:
                due.append((reader_id, version))
        return due

    def push_lists(
        self, due: Sequence[tuple[str, int | None]], now_ms: int, tx: DecisionTx
    ) -> list[Outgoing]:
        """The list commands for readers ``lists_due`` found, each claimed in ``tx`` so one
        gateway process sends them."""
        return [
            out for reader_id, held in due for out in self._list_for(reader_id, held, now_ms, tx)
        ]

    def _current_list(self, view: CatalogReads, reader_id: str, now_ms: int) -> BandList | None:
        reader = view.reader(reader_id)
        if reader is None or not takes_a_list(reader):
            return None
        zone, _closing = self.site_clock(view.site(reader.site))
        return self.lists.current(reader, venue_day(now_ms, zone), view)

    def _list_for(
        self, reader_id: str, held: int | None, now_ms: int, tx: DecisionTx
    ) -> list[Outgoing]:
        """What brings ``reader_id`` from list ``held`` to its current one: a delta if this
        process still knows ``held``, else a snapshot; nothing if it holds it, or another
        gateway process sends it (the claim)."""
        current = self._current_list(tx.view, reader_id, now_ms)
        if current is None:
            return []
        base, chunks = self.lists.chunks(held, current)
        if not chunks or not tx.claim_list(reader_id, held, current.version):
            return []
        op = messages.LIST_SNAPSHOT if base is None else messages.LIST_DELTA
        return [
            self._command(
                reader_id,
                now_ms,
                op,
                list_version=current.version,
                base_version=base,
                chunk=part.chunk,
                chunks=part.chunks,
                entries=part.entries or None,
                remove=part.remove or None,
            )
            for part in chunks
        ]

    def state_frame(self, gateway_id: str, *, online: bool, now_ms: int) -> Outgoing:
        """This process's retained liveness message (online=False: its will, and its goodbye)."""
        topic = topics.gateway_state_topic(gateway_id)
        return Outgoing(topic, encode(GatewayState(ts=now_ms, online=online)))

    def time_sync(self, reader_id: str, now_ms: int) -> Outgoing:
        """Command TIME_SYNC: the reader sets its clock to ours."""
        return self._command(reader_id, now_ms, messages.TIME_SYNC, time_ms=now_ms)

    def _arm_again(self, reader_id: str, now_ms: int, tx: DecisionTx, effects: Effects) -> None:
        """A pos reader that rebooted or reconnected shows its open sale again."""
        reader = tx.view.reader(reader_id)
        if reader is None or reader.role != "pos":
            return  # no query for the births of gates
        pending = tx.books.pending_charge_at(reader_id)
        if pending is not None and pending.expires_ms > now_ms:
            effects.replies.append(self.charge_command(pending, now_ms))

    def charge_command(self, charge: Charge, now_ms: int) -> Outgoing:
        """Command CHARGE: the reader shows the sale and waits for a band. ``pin_required`` is
        false: the guest's threshold decides, once the band is known."""
        return self._command(
            charge.reader_id,
            now_ms,
            messages.CHARGE,
            charge=charge.id,
            amount=charge.amount,
            currency=charge.currency,
            pin_required=False,
            label=charge.label,
        )

    def cancel_command(self, charge: Charge, now_ms: int) -> Outgoing:
        """Command CANCEL: the sale is off (the till cancelled it, or it timed out)."""
        return self._command(charge.reader_id, now_ms, messages.CANCEL, charge=charge.id)

    def _command(self, reader_id: str, now_ms: int, op: int, **fields: object) -> Outgoing:
        command = Command(reader=reader_id, ts=now_ms, mid=self._new_mid(), op=op, **fields)
        return Outgoing(topics.reader_topic(reader_id, topics.CMD), encode(command))

    def site_clock(self, site: Site | None) -> tuple[ZoneInfo, time]:
        """The zone and closing time a site's days follow."""
        if site is None:
            return self.zone, self.closing
        closing = site.closing if site.closing is not None else self.closing
        return site.zone or self.zone, closing

    # -- the single receive entry point -----------------------------------------------------

    def _accept(self, frame: Frame, now_ms: int, effects: Effects) -> Message | None:
        parsed = topics.parse(frame.topic)
        if parsed is None or parsed[1] not in _ACCEPTED:
            effects.events.append(Dropped("-", "foreign_topic", frame.topic))
            return None
        reader_id, kind = parsed
        try:
            message = decode(frame.payload)
        except ProtocolError as err:
            detail = f"{err} ({len(frame.payload)} bytes)"
            effects.events.append(Dropped(reader_id, err.code, detail))
            if err.code == BAD_FIELD and kind == topics.EVT:
                self._answer_broken_tap(reader_id, frame, now_ms, effects)
            return None
        if message.reader != reader_id:
            # The broker's ACL ties a reader to its own topics; a body naming another reader is
            # a misconfigured or hostile device.
            detail = f"claims reader {message.reader} on {frame.topic}"
            effects.events.append(Dropped(reader_id, "reader_mismatch", detail))
            return None
        if not isinstance(message, _ACCEPTED[kind]):
            detail = f"{type(message).__name__} on {frame.topic}"
            effects.events.append(Dropped(reader_id, "wrong_topic", detail))
            return None
        return message

    def _answer_broken_tap(
        self, reader_id: str, frame: Frame, now_ms: int, effects: Effects
    ) -> None:
        """A tap that breaks a field rule, from a reader that can be told so: its envelope
        names this topic's reader and a mid. Answered bad_request (red, nothing recorded)
        rather than left waiting to show "try again" for a tap that can never succeed."""
        peeked = peek_tap(frame.payload)
        if peeked is None or peeked[0] != reader_id:
            return
        _reader, mid, seq = peeked
        reply = self._result(reader_id, mid, seq, now_ms, granted=False, reason=BAD_REQUEST)
        effects.replies.append(reply)

    # -- taps -------------------------------------------------------------------------------

    def _on_tap(
        self, tap: Tap, frame: Frame, now_ms: int, tx: DecisionTx, effects: Effects
    ) -> None:
        # The order of SPEC.md's "Deciding a gate tap"; busy (2) is the adapter's.
        if tap.offline:
            # A tap decided offline travels only inside a Journal; on its own it is a bug.
            self._unrecorded(tap, frame, BAD_REQUEST, now_ms, effects)
            return
        if _stale(tap, now_ms):
            # Nothing recorded: a resend of this operation (new deadline) is decided as new.
            self._unrecorded(tap, frame, STALE, now_ms, effects)
            return
        reader = tx.view.reader(tap.reader)
        if reader is None:
            self._unknown_reader(tap, frame, now_ms, tx, effects)
            return
        if tap.role == POS and reader.role == "pos":
            self._on_payment(tap, frame, reader, now_ms=now_ms, tx=tx, effects=effects)
            return
        # No look-up of the mid first: record_tap's insert settles duplicates (and races between
        # gateway processes) by the primary key and hands back the decision stored first.
        issued = tx.view.band(tap.uid)

        # The reading is used up at once, whatever the decision (SPEC, "Proving a band"): one
        # statement that is also the compare-and-set between gateway processes.
        def accept(uid: bytes, counter: int) -> bool:
            return tx.accept_reading(uid, counter, reader_id=reader.id, at_ms=frame.received_ms)

        proof = prove(tap, issued, self.band_keys, accept)
        band = _band_as_judged(issued, proof, reader)
        guest_id = band.guest_id if band is not None else None
        granted, reason, read, new = self._decide(
            tap, reader, band, proof, at_ms=frame.received_ms, now_ms=now_ms, tx=tx
        )
        record = _record(
            tap, frame.received_ms, granted=granted, reason=reason, guest=guest_id, proof=proof
        )
        stored = tx.record_tap(record)
        if stored is not record and not stored.same_operation(record):
            # Another operation's mid: its answer (and its guest's name) is not this tap's.
            self._unrecorded(tap, frame, BAD_REQUEST, now_ms, effects)
            return
        if stored is not record and not _shows_its_reading(stored, proof):
            self._unrecorded(tap, frame, proof.refusal or BAD_MAC, now_ms, effects)
            return
        if stored is record and new is not None:
            tx.write_presence(read, new)  # Conflict if another process changed it: retried
        name = self._name_shown(stored, tx)
        effects.replies.append(self._reply(tap, stored, name, now_ms))
        duplicate = stored is not record
        effects.events.append(
            _decided(tap, stored, frame, duplicate=duplicate, band=issued, proof=proof)
        )

    # -- journals: taps a reader decided alone ------------------------------------------------

    def _on_journal(
        self, journal: Journal, frame: Frame, now_ms: int, tx: DecisionTx, effects: Effects
    ) -> None:
        """An upload of taps the reader decided alone, oldest first. Each is recorded once (by
        its mid: an upload sent twice, or a tap the gateway decided live before its answer was
        lost, changes nothing again), as it happened, beside what the gateway would have
        answered then. The journal's Result (its mid as ``corr``) is the acknowledgement: once
        the batch is committed every tap in it is on record, and the reader may forget them."""
        for tap in journal.taps:
            self._reconcile(tap, frame, tx, effects)
        assert journal.reader is not None and journal.mid is not None
        effects.replies.append(
            self._result(
                journal.reader,
                journal.mid,
                journal.seq,
                now_ms,
                granted=True,
                reason="ok",
                text="Recorded",
            )
        )

    def _reconcile(self, tap: Tap, frame: Frame, tx: DecisionTx, effects: Effects) -> None:
        """One offline tap: replayed through the live rules at its own time (``ts``), and
        recorded with the effect the guest's passage had (SPEC, "Offline decisions")."""
        assert tap.reader is not None and tap.mid is not None
        granted = bool(tap.local_granted)
        seen = _local_reason(tap)
        reader = tx.view.reader(tap.reader)
        stored = tx.tap_by_mid(tap.mid)
        asked = _record(tap, frame.received_ms, granted=granted, reason=seen)
        if stored is not None:
            # Recorded already: this upload again, or a live tap whose answer was lost.
            if stored.same_operation(asked):
                effects.events.append(_decided(tap, stored, frame, duplicate=True))
            else:
                detail = f"offline tap under mid {tap.mid.hex()} of another operation"
                effects.events.append(Dropped(tap.reader, BAD_REQUEST, detail))
            return
        if reader is None:
            # Not recorded, as a live tap would not be: nobody registered this device.
            effects.events.append(Dropped(tap.reader, UNKNOWN_READER, f"offline {tap.mid.hex()}"))
            return
        if tap.role == POS and reader.role == "pos":
            self._reconcile_sale(tap, frame, reader, tx, effects)
            return
        if tap.role != GATE or reader.role != "gate":
            # A photo point's offline tap (or one of a role its reader is not set up for):
            # this gateway cannot apply it, so it goes on the report for staff to settle,
            # never silently away.
            record = replace(asked, offline=True, exception=NOT_APPLIED)
            if tx.record_tap(record) is record:
                effects.events.append(_decided(tap, record, frame, duplicate=False))
            return
        band = tx.view.band(tap.uid)
        # A reading shown before is a replay; an older counter is not (taps come out of order).
        proof = prove(tap, band, self.band_keys, lambda uid, n: not tx.reading_shown(uid, n))
        known = _band_as_judged(band, proof, reader)
        would_grant, would_say, read, new = self._decide(
            tap, reader, known, proof, at_ms=tap.ts, now_ms=tap.ts, tx=tx
        )
        guest_id = known.guest_id if known is not None else None
        if granted and not would_grant and guest_id is not None and reader.site is not None:
            zone, closing = self.site_clock(tx.view.site(reader.site))
            new = passage(
                reader=reader,
                guest_id=guest_id,
                presence=read,
                direction=reader.direction,
                at_ms=tap.ts,
                closed_ms=last_closing_ms(tap.ts, zone, closing),
            )
        elif not granted or (new is not None and read is not None and read.changed_ms > tap.ts):
            new = None  # refused: nobody passed; or a later passage is already known
        record = replace(
            _record(
                tap, frame.received_ms, granted=granted, reason=seen, guest=guest_id, proof=proof
            ),
            offline=True,
            gateway_reason=would_say,
            exception=would_say if granted and not would_grant else None,
        )
        stored = tx.record_tap(record)
        if stored is not record:  # the same tap earlier in this batch
            effects.events.append(_decided(tap, stored, frame, duplicate=True))
            return
        if new is not None:
            tx.write_presence(read, new)
        if proof.proven and proof.counter is not None:
            # Its reading is used up (a copy shown later is a replay) whatever the counter says.
            tx.accept_reading(tap.uid, proof.counter, reader_id=reader.id, at_ms=tap.ts)
        effects.events.append(_decided(tap, record, frame, duplicate=False, band=band, proof=proof))

    def _reconcile_sale(
        self, tap: Tap, frame: Frame, reader: Reader, tx: DecisionTx, effects: Effects
    ) -> None:
        """A till's offline sale (SPEC, "Reconciling a sale"): one it granted is posted once,
        at its own time, against its charge; one it refused is recorded and moves nothing.

        Its mid was looked up first (``_reconcile``), as a live payment's is: money moves
        before the tap is recorded. Another process reconciling the same tap meanwhile makes
        this one's charge update or insert find its work (ChargeRaced, Raced): the whole batch
        runs again, taking this one's posting back, and then meets the tap as recorded."""
        assert tap.mid is not None and tap.charge is not None
        band = tx.view.band(tap.uid)
        # A reading shown before is a replay; an older counter is not (taps come out of order).
        proof = prove(tap, band, self.band_keys, lambda uid, n: not tx.reading_shown(uid, n))
        record = replace(
            _record(
                tap,
                frame.received_ms,
                granted=bool(tap.local_granted),
                reason=_local_reason(tap),
                guest=band.guest_id if band is not None and proof.proven else None,
                proof=proof,
            ),
            offline=True,
        )
        if tap.local_granted:
            zone, _closing = self.site_clock(tx.view.site(reader.site))
            sale = reconcile_sale(
                tx.books,
                charge_id=tap.charge,
                reader=reader,
                band=band,
                unproven=proof.refusal,
                day=venue_day(tap.ts, zone),
                tap_mid=tap.mid,
                at_ms=tap.ts,
            )
            record = replace(
                record,
                guest_id=sale.guest_id,
                gateway_reason=sale.gateway_reason,
                exception=sale.exception,
                balance=sale.balance,
                overdraft=sale.overdraft or None,
            )
        if tx.record_tap(record) is not record:
            raise Raced(f"offline tap {tap.mid.hex()} was recorded by another process meanwhile")
        if proof.proven and proof.counter is not None:
            tx.accept_reading(tap.uid, proof.counter, reader_id=reader.id, at_ms=tap.ts)
        effects.events.append(_decided(tap, record, frame, duplicate=False, band=band, proof=proof))

    def _on_payment(
        self,
        tap: Tap,
        frame: Frame,
        reader: Reader,
        *,
        now_ms: int,
        tx: DecisionTx,
        effects: Effects,
    ) -> None:
        """A band answering a charge: paid (or declined) in this transaction, once per mid.

        The mid is looked up first, unlike a gate's: a payment writes the ledger before its
        tap is recorded. Two processes paying under one mid at once both find none; the
        second's insert then finds the first's record and the whole batch runs again (Raced),
        taking this one's payment back with it, and answers as a duplicate."""
        assert tap.mid is not None and tap.charge is not None
        asked = _record(tap, frame.received_ms, granted=False, reason=BAD_REQUEST)
        band = tx.view.band(tap.uid)
        proof = prove(tap, band, self.band_keys, lambda uid, n: _above(tx.last_counter(uid), n))
        stored = tx.tap_by_mid(tap.mid)
        if stored is not None:
            if not stored.same_operation(asked):
                self._unrecorded(tap, frame, BAD_REQUEST, now_ms, effects)
            elif not _shows_its_reading(stored, proof):
                self._unrecorded(tap, frame, proof.refusal or BAD_MAC, now_ms, effects)
            else:
                effects.replies.append(self._reply(tap, stored, None, now_ms))
                effects.events.append(_decided(tap, stored, frame, duplicate=True))
            return
        paid = pay_by_tap(
            tx.books,
            charge_id=tap.charge,
            reader=reader,
            band=band if proof.proven else None,
            unproven=proof.refusal,
            pin=self._pin_of(tap, reader.id),
            check_pin=self._check_pin,
            day=venue_day(frame.received_ms, self.site_clock(tx.view.site(reader.site))[0]),
            tap_mid=tap.mid,
            now_ms=now_ms,
        )
        record = _payment_record(tap, frame.received_ms, paid, proof)
        if tx.record_tap(record) is not record:
            raise Raced(f"tap {tap.mid.hex()} was recorded by another process meanwhile")
        if paid.reason != PIN_REQUIRED:
            # The PIN follows with this same reading (SPEC, "Proving a band").
            _use_reading(tap, proof, tx, frame.received_ms)
        effects.replies.append(self._reply(tap, record, None, now_ms))
        effects.events.append(_decided(tap, record, frame, duplicate=False, band=band, proof=proof))

    def verify_pins_ahead(
        self, frames: Sequence[Frame], view: CatalogReads, pin_hash: Callable[[str], str | None]
    ) -> None:
        """Check, before the batch's transaction, the PIN of every pos tap in ``frames`` that
        carries one, against the guest's stored hash (``pin_hash(guest)``, a read): the slow
        hash then runs with no write lock held and no gate tap waiting behind it. The verdicts
        serve that batch only (``_check_pin``); a hash changed in between is checked again."""
        self._verified.clear()
        for frame in frames:
            parsed = topics.parse(frame.topic)
            reader = view.reader(parsed[0]) if parsed and parsed[1] == topics.EVT else None
            if reader is None or reader.role != "pos":
                continue
            try:
                tap = decode(frame.payload)
            except ProtocolError:
                continue
            band = view.band(tap.uid) if isinstance(tap, Tap) and tap.pin else None
            if band is None or band.guest_id is None or not isinstance(tap, Tap):
                continue
            pin = self._pin_of(tap, reader.id)
            stored = pin_hash(band.guest_id)
            if pin and stored:
                key = (stored, band.guest_id, pin)
                self._verified[key] = self.pins.verify(*key)

    def offline_pin_check(self, pin: str) -> tuple[bytes, bytes]:
        """(check, salt) for a PIN being set: a fresh salt, and the check the tills' band lists
        carry (SPEC, "Offline PIN check")."""
        salt = os.urandom(PIN_SALT_SIZE)
        return offline_pin_check(self._offline_pin_key, salt, pin), salt

    def forget_pins(self) -> None:
        self._verified.clear()

    def _check_pin(self, stored: str, guest_id: str, pin: str) -> bool:
        verdict = self._verified.get((stored, guest_id, pin))
        return self.pins.verify(stored, guest_id, pin) if verdict is None else verdict

    def _pin_of(self, tap: Tap, reader_id: str) -> str | None:
        """The PIN the tap's block opens to for its charge; NO_PIN, or BAD_BLOCK."""
        if tap.pin is None:
            return NO_PIN
        key = self._pin_keys.get(reader_id)
        if key is None:
            key = self._pin_keys[reader_id] = reader_pin_key(self._secret_key, reader_id)
        assert tap.charge is not None
        opened = open_pin_block(key, tap.charge, tap.pin)
        return BAD_BLOCK if opened is None else opened

    def _unknown_reader(
        self, tap: Tap, frame: Frame, now_ms: int, tx: DecisionTx, effects: Effects
    ) -> None:
        """Counted (the Decided event), not recorded: a device nobody registered must not be
        able to fill the tap log. A mid stored before still answers as SPEC orders it: another
        operation's is a bad request, this one's (its reader since removed) the stored answer."""
        assert tap.mid is not None
        stored = tx.tap_by_mid(tap.mid)
        if stored is None:
            self._unrecorded(tap, frame, UNKNOWN_READER, now_ms, effects)
            return
        asked = _record(tap, frame.received_ms, granted=False, reason=UNKNOWN_READER)
        if not stored.same_operation(asked):
            self._unrecorded(tap, frame, BAD_REQUEST, now_ms, effects)
            return
        name = self._name_shown(stored, tx)
        effects.replies.append(self._reply(tap, stored, name, now_ms))
        effects.events.append(_decided(tap, stored, frame, duplicate=True))

    @staticmethod
    def _name_shown(record: TapRecord, tx: DecisionTx) -> str | None:
        """The guest's name for the reader's display; never for a blocked band, which may be
        in a finder's or a thief's hand."""
        if record.guest_id is None or record.reason == BAND_BLOCKED:
            return None
        return tx.view.greeting_name(record.guest_id)

    def _unrecorded(
        self, tap: Tap, frame: Frame, reason: str, now_ms: int, effects: Effects
    ) -> None:
        """Refuse a tap without recording it: its answer, and an event to count it by."""
        record = _record(tap, frame.received_ms, granted=False, reason=reason)
        effects.replies.append(self._reply(tap, record, None, now_ms))
        effects.events.append(_decided(tap, record, frame, duplicate=False))

    def _decide(
        self,
        tap: Tap,
        reader: Reader,
        band: Band | None,
        proof: Proof,
        *,
        at_ms: int,
        now_ms: int,
        tx: DecisionTx,
    ) -> tuple[bool, str, Presence | None, Presence | None]:
        """(granted, reason, presence as read, presence to write or None)."""
        if reader.role != "gate" or tap.role != GATE:
            # Payments and photos arrive with their issues; until then such a tap is refused.
            return False, "wrong_role", None, None
        direction = DIRECTION_NAMES[tap.direction if tap.direction is not None else IN]
        if direction != reader.direction or tap.gate not in (None, reader.gate):
            # The gateway's configuration, not the reader's claim, says which way a gate
            # passes: an entry reader claiming "out" must not let an unknown band through.
            return False, WRONG_DIRECTION, None, None
        if proof.refusal is not None and reader.direction == "in":
            return False, proof.refusal, None, None  # an exit is never refused: band is None
        guest_id = band.guest_id if band is not None else None
        read = tx.presence(guest_id, reader.site) if guest_id else None
        # The venue day, and the closing that ends presence, by the site's clock at the
        # instant the tap arrived (not when a backlog let us decide it).
        zone, closing = self.site_clock(tx.view.site(reader.site))
        decision = decide_entry(
            reader=reader,
            band=band,
            tickets=tx.view.tickets(guest_id) if guest_id else [],
            presence=read,
            direction=reader.direction,
            today=venue_day(at_ms, zone),
            now_ms=now_ms,
            closed_ms=last_closing_ms(at_ms, zone, closing),
        )
        return decision.granted, decision.reason, read, decision.presence

    def _reply(self, tap: Tap, record: TapRecord, name: str | None, now_ms: int) -> Outgoing:
        assert tap.reader is not None and tap.mid is not None
        return self._result(
            tap.reader,
            tap.mid,
            tap.seq,
            now_ms,
            granted=record.granted,
            reason=record.reason,
            name=name,
            direction="out" if record.direction == "out" else "in",
            text=record.text,
            balance=record.balance,
        )

    def _result(
        self,
        reader: str,
        mid: bytes,
        seq: int,
        now_ms: int,
        *,
        granted: bool,
        reason: str,
        name: str | None = None,
        direction: str = "in",
        text: str | None = None,
        balance: int | None = None,
    ) -> Outgoing:
        if text is None:  # else the decision's own words (a payment's)
            greeting = "Goodbye " if direction == "out" else "Welcome "
            text = (
                greeting + (name or "")
                if granted
                else _REFUSAL_TEXT.get(reason, "Please see staff")
            )
        result = Result(
            reader=reader,
            ts=now_ms,
            seq=seq,
            corr=mid,
            granted=granted,
            reason=reasons.code(reason),
            text=text.strip()[:32],
            name=name[:24] if name else None,
            balance=balance,
            pattern=messages.RETRY if reason in _TRY_AGAIN else None,
        )
        return Outgoing(topics.reader_topic(reader, topics.RES), encode(result))


def _stale(tap: Tap, now_ms: int) -> bool:
    if tap.deadline is None or abs(now_ms - tap.ts) > CLOCK_TRUST_MS:
        return False
    return now_ms > tap.deadline + DEADLINE_GRACE_MS


def _record(
    tap: Tap,
    received_ms: int,
    *,
    granted: bool,
    reason: str,
    guest: str | None = None,
    proof: Proof | None = None,
) -> TapRecord:
    assert tap.reader is not None and tap.mid is not None  # a Tap requires both
    direction = "-" if tap.direction is None else DIRECTION_NAMES[tap.direction]
    return TapRecord(
        mid=tap.mid,
        reader_id=tap.reader,
        uid=tap.uid,
        direction=direction,
        reader_ts_ms=tap.ts,
        received_ms=received_ms,
        granted=granted,
        reason=reason,
        guest_id=guest,
        seq=tap.seq,
        role=ROLE_NAMES.get(tap.role, str(tap.role)),
        proof=proof.kind if proof is not None else None,
        sun_counter=proof.counter if proof is not None else None,
        charge_id=tap.charge,
    )


def _payment_record(tap: Tap, received_ms: int, paid: TapPayment, proof: Proof) -> TapRecord:
    guest = paid.charge.guest_id if paid.charge is not None else None
    record = _record(
        tap, received_ms, granted=paid.granted, reason=paid.reason, guest=guest, proof=proof
    )
    return replace(record, text=paid.text, balance=paid.balance)


def _shows_its_reading(stored: TapRecord, proof: Proof) -> bool:
    """Whether a tap under a known mid may have that mid's stored answer. A reader resends a
    band's unanswered operation under its mid for any tag showing that UID, so a SUN-proven
    answer goes only to the band showing itself again: the reading that was decided (a
    redelivery) or a later one (a resend's fresh read). A copied UID, or an older reading, under
    that mid gets nothing of it."""
    if stored.proof != SUN:
        return True
    if proof.kind != SUN or proof.refusal == BAD_MAC or proof.counter is None:
        return False
    return stored.sun_counter is not None and proof.counter >= stored.sun_counter


def _band_as_judged(issued: Band | None, proof: Proof, reader: Reader) -> Band | None:
    """The band a gate tap is decided and recorded for. An unproven band is nobody's: no
    guest recorded, no name shown. So is a blocked band at an exit: whoever holds it is let
    out, as anybody is, and its guest stays inside."""
    if not proof.proven or issued is None:
        return None
    if issued.blocked and reader.direction == "out":
        return None
    return issued


def _local_reason(tap: Tap) -> str:
    """The reason an offline tap says the reader had; a reader that gave none listed the band
    (green) or did not (red)."""
    if tap.local_reason is not None:
        return reasons.name(tap.local_reason)
    return reasons.name(reasons.OFFLINE_LIST if tap.local_granted else reasons.OFFLINE_NOT_LISTED)


def _above(last: int | None, counter: int) -> bool:
    return last is None or counter > last


def _use_reading(tap: Tap, proof: Proof, tx: DecisionTx, at_ms: int) -> None:
    """A pos tap's SUN reading is used up once its payment is decided: a later tap showing it
    again is a replay. Raced if another process accepted it after this one read the counter."""
    if proof.proven and proof.counter is not None:
        assert tap.reader is not None
        if not tx.accept_reading(tap.uid, proof.counter, reader_id=tap.reader, at_ms=at_ms):
            raise Raced(f"band {tap.uid.hex()}: its reading was accepted meanwhile")


def _decided(
    tap: Tap,
    record: TapRecord,
    frame: Frame,
    *,
    duplicate: bool,
    band: Band | None = None,
    proof: Proof | None = None,
) -> Decided:
    return Decided(
        reader=record.reader_id,
        mid=record.mid,
        role=ROLE_NAMES.get(tap.role, str(tap.role)),
        reason=record.reason,
        granted=record.granted,
        duplicate=duplicate,
        received_ns=frame.received_ns,
        uid=record.uid,
        alert=None if duplicate else _alert(proof, band),
    )


def _alert(proof: Proof | None, band: Band | None) -> str | None:
    """Whatever the decision (an exit lets anybody out): a band that did not prove itself, or
    one a desk blocked (lost, stolen, damaged or replaced), held by someone tapping it."""
    if proof is not None and proof.refusal is not None:
        return "possible clone"
    if band is not None and band.blocked and band.blocked_reason is not None:
        return f"possible theft: band reported {band.blocked_reason}"
    return None
