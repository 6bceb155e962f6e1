"""The decision worker: group commit off the MQTT network thread.

Theory of operation: the MQTT adapter hands every frame to ``submit`` (never blocking: a full
queue refuses the frame, and the adapter answers such a tap "busy" at once). One worker thread
takes whatever is queued, up to ``max_batch`` frames, without waiting for more (at low load a
batch is one tap, at high load batches grow by themselves), decides them all in ONE store
transaction, commits (the one fsync of the batch), and only then hands the replies to
``publish``: no reply leaves before its effect is on disk. A transaction that lost a race with
another gateway process (a compare-and-set conflict, a deadlock) is run again from the start;
one that fails otherwise is split, so a frame that trips a bug costs only its own answer.

Between batches (and, idle, every ``tick_s``) the worker keeps house: it expires the charges
past their time (releasing their readers with CANCEL), publishes, retained,
the Config of every reader whose configuration changed in the catalog (all of them after each
broker connection), every ``time_sync_s`` a TIME_SYNC to each reader with an open session, and
ends the flood log's interval (drops past the first few are summarised, not logged one by one).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from .core.configs import ConfigPublisher
from .core.handler import Core, Decided, Dropped, Effects, Event, Frame, Ignored, Outgoing
from .core.limits import FloodLog
from .core.readers import SessionChange
from .metrics import Metrics
from .store import Store, is_retryable, retried

log = logging.getLogger("bandlink.gateway")

SESSION_RESERVE = 1000
_STOP = Frame("", b"", 0)  # queued by stop(): the worker finishes what is ahead of it, then ends
_CONNECTED = Frame("", b"", 0)  # queued by connected(): publish every reader's Config again
TICK_S = 1.0  # an idle worker follows the catalog this often (a changed Config goes out)
TIME_SYNC_S = 60.0  # readers with an open session get the gateway's clock this often
FLOOD_LOG_S = 10.0  # drops past the first few of an interval are summarised once per interval


Clock = Callable[[], int]  # wall-clock milliseconds, passed in so tests can fix the time


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class DecisionWorker:
    def __init__(
        self,
        core: Core,
        store: Store,
        publish: Callable[[Sequence[Outgoing]], None],
        metrics: Metrics,
        *,
        max_batch: int = 256,
        queue_size: int = 10_000,
        clock: Clock = wall_ms,
        tick_s: float = TICK_S,
        time_sync_s: float = TIME_SYNC_S,
        flood_log_s: float = FLOOD_LOG_S,
    ) -> None:
        self._core = core
        self._store = store
        self._publish = publish
        self._metrics = metrics
        self._max_batch = max_batch
        self._clock = clock
        # Unbounded underneath; ``submit`` bounds it (one producer, the network thread), so a
        # reader's birth or death still gets in when taps are being refused.
        self._queue: queue.Queue[Frame] = queue.Queue()
        self._queue_size = queue_size
        self._tick_s = tick_s
        self._configs = ConfigPublisher()
        self.flood = FloodLog(log, interval_s=flood_log_s)
        self._time_sync_s = time_sync_s  # 0: only on births
        self._next_sync = time.monotonic() + time_sync_s
        self._next_expiry = 0.0
        self._thread = threading.Thread(target=self._run, name="decisions", daemon=True)
        metrics.queue_depth.set_function(self._queue.qsize)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        """Decide and answer everything already queued, then end the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)
        self.flood.flush(time.monotonic(), force=True)

    def connected(self) -> None:
        """The broker connection is up (again): every reader's Config is published anew (the
        broker may have lost its retained messages)."""
        self._queue.put_nowait(_CONNECTED)

    def submit(self, frame: Frame, *, session: bool = False) -> bool:
        """Queue a frame for the next batch; False (and nothing queued) when the queue is full.
        A session frame (birth, death) may use SESSION_RESERVE places beyond the bound: there
        is at most one per reader connection, and losing one would leave a reader's state
        wrong until it reconnects."""
        limit = self._queue_size + (SESSION_RESERVE if session else 0)
        if self._queue.qsize() >= limit:
            return False
        self._queue.put_nowait(frame)
        return True

    def refuse(self, frame: Frame, reason: str) -> None:
        """Answer a frame that was not queued (or whose batch failed) without deciding it."""
        self._finish(self._core.refuse(frame, reason, self._clock()))

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                batch = [self._queue.get(timeout=self._tick_s)]
            except queue.Empty:
                batch = []  # idle: follow the catalog, so a changed Config goes out
            while batch and len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            frames = [frame for frame in batch if frame is not _STOP and frame is not _CONNECTED]
            stopping = any(frame is _STOP for frame in batch)
            if any(frame is _CONNECTED for frame in batch):
                self._configs.forget()
            try:
                if frames:
                    self._decide(frames)
                self._housekeep(follow=not frames)
            except Exception:
                # The thread must outlive anything one batch does (a publish that raises, a
                # log handler that fails): a dead worker would leave the gateway deaf.
                log.exception("the decision worker failed on a batch of %d", len(frames))
            if stopping:
                return

    def _housekeep(self, *, follow: bool) -> None:
        """Between batches: publish the Config of every reader whose configuration changed,
        and every ``time_sync_s`` the gateway's clock to each reader with an open session.
        After a batch the view is current (its transaction followed the catalog); when idle,
        a read brings it up to date."""
        self.flood.flush(time.monotonic())
        if follow:
            self._store.follow_catalog()
        changes = self._configs.changes(self._store.view, self._clock())
        if self._configs.skipped:
            names = ", ".join(sorted(self._configs.skipped))
            log.warning(
                "no Config can carry the configuration of reader(s) %s: fix the venue", names
            )
            self._configs.skipped.clear()
        if changes:
            self._publish([Outgoing(topic, payload, retain=True) for topic, payload in changes])
            log.info("published the configuration of %d readers", len(changes))
        if time.monotonic() >= self._next_expiry:
            self._next_expiry = time.monotonic() + self._tick_s
            self._expire_charges()
            self._push_lists()
        if self._time_sync_s and time.monotonic() >= self._next_sync:
            self._next_sync = time.monotonic() + self._time_sync_s
            now = self._clock()
            online = self._store.open_sessions()
            if online:
                self._publish([self._core.time_sync(reader, now) for reader in online])

    def _push_lists(self) -> None:
        """Readers whose band list is out of date (the catalog or the day changed) get a delta.
        A read first, as for charges: most seconds no list changed."""
        now = self._clock()
        due = self._core.lists_due(self._store.view, self._store.lists_held(), now)
        if not due:
            return
        with self._store.transaction() as tx:
            commands = self._core.push_lists(due, now, tx)
        if commands:
            self._publish(commands)
            log.info("sent %d band list chunk(s) to %d reader(s)", len(commands), len(due))

    def _expire_charges(self) -> None:
        """Charges past their time are expired and their readers released (CANCEL). A read
        first: most seconds there is none, and a write would queue for SQLite's lock."""
        now = self._clock()
        if not self._store.charges_due(now):
            return
        expired = self._store.run(lambda books: books.expire_charges(now))
        if expired:
            self._publish([self._core.cancel_command(charge, now) for charge in expired])
            log.info("%d charge(s) timed out; their readers were released", len(expired))

    def _decide(self, frames: list[Frame]) -> None:
        self._metrics.batch_size.observe(len(frames))
        try:
            effects = self._commit(frames)
        except Exception as err:
            if len(frames) > 1 and not is_retryable(err):
                # Not a race: something in one frame. Decide them one by one to find it.
                for frame in frames:
                    self._decide([frame])
                return
            # One frame that failed, or a batch that lost every race (splitting it would only
            # run each frame into the same contention ATTEMPTS times more): tap again.
            log.exception("failed to decide %d frame(s) on %s", len(frames), frames[0].topic)
            self._metrics.failures.inc()
            for frame in frames:
                self.refuse(frame, "internal_error")
            return
        self._finish(effects)

    def _commit(self, frames: list[Frame]) -> Effects:
        self._core.verify_pins_ahead(frames, self._store.view, self._store.pin_hash)
        try:
            return commit_batch(
                self._core, self._store, frames, self._clock, self._metrics.retries.inc
            )
        finally:
            self._core.forget_pins()  # typed PINs stay no longer than their batch

    def _finish(self, effects: Effects) -> None:
        """After the commit: publish, then count and log what happened."""
        if effects.replies:
            self._publish(effects.replies)
        for event in effects.events:
            self._note(event)

    def _note(self, event: Event) -> None:
        metrics = self._metrics
        if isinstance(event, Decided):
            metrics.taps.labels(event.role, event.reason).inc()
            if event.received_ns:
                metrics.decision_seconds.observe((time.monotonic_ns() - event.received_ns) / 1e9)
            if event.reason == "busy":  # refused undecided: under a flood, one line per tap
                line = f"tap {event.reader} mid={event.mid.hex()} busy"
                self.flood.note("busy", event.reader, line, time.monotonic())
            elif event.alert is not None:
                # Where and when are in the tap log too (GET /v1/bands/{uid}).
                log.warning(
                    "%s: band %s at %s, %s (mid=%s)",
                    event.alert,
                    event.uid.hex(),
                    event.reader,
                    event.reason,
                    event.mid.hex(),
                )
            elif log.isEnabledFor(logging.INFO):  # the mid's hex is built only when written
                duplicate = " (duplicate)" if event.duplicate else ""
                mid = event.mid.hex()
                log.info("tap %s mid=%s %s%s", event.reader, mid, event.reason, duplicate)
        elif isinstance(event, Dropped):
            metrics.dropped.labels(event.code).inc()
            line = f"dropped frame from {event.reader}: {event.code} {event.detail}"
            self.flood.note(event.code, event.reader, line, time.monotonic())
        elif isinstance(event, SessionChange):
            _note_session(event)
        elif isinstance(event, Ignored):
            metrics.ignored.labels(event.kind).inc()


def commit_batch(
    core: Core,
    store: Store,
    frames: Sequence[Frame],
    clock: Clock,
    on_retry: Callable[[], object] = lambda: None,
) -> Effects:
    """Decide ``frames`` in one transaction and commit it; run it again from the start (with a
    fresh ``now``) when it lost a race, up to ATTEMPTS times. Raises what it cannot retry."""

    def attempt() -> Effects:
        with store.transaction() as tx:
            return core.handle(frames, clock(), tx)

    def lost(err: Exception) -> None:
        on_retry()
        log.info("batch of %d lost a race (%s); deciding again", len(frames), err)

    return retried(attempt, lost)


def _note_session(change: SessionChange) -> None:
    if change.online and change.stale:
        log.info(
            "ignored a stale birth of %s, session %d: a newer one is open",
            change.reader,
            change.bdseq,
        )
    elif change.online:
        log.info("reader %s online: %s, session %d", change.reader, change.firmware, change.bdseq)
    elif change.stale:
        log.info("ignored a death of %s for old session %s", change.reader, change.bdseq)
    else:
        log.warning("reader %s offline (session %s)", change.reader, change.bdseq)
