"""The decision worker with a real store and core: group commit, durable before answered,
bounded queue, and a frame that trips a bug costs only its own answer."""

from __future__ import annotations

import io
import logging
import re
import threading
from collections.abc import Sequence

import pytest

from bandlink.gateway import worker as worker_module
from bandlink.gateway.core.handler import Core, DecisionTx, Effects, Frame, Outgoing
from bandlink.gateway.metrics import Metrics
from bandlink.gateway.store import Conflict, Store
from bandlink.gateway.venue import DEMO_BANDS
from bandlink.gateway.worker import DecisionWorker
from bandlink.protocol import Command, Result, Tap, decode, dumps, messages, reasons
from bandlink.protocol.messages import TIME_SYNC
from bandlink.tools.waiting import wait_for

from .pair import NOON_MS, birth_frame, death_frame, evt_frame, make_tap

BANDS = list(DEMO_BANDS.values())


class Replies:
    """The publish side: collects replies, and checks each is durable when it is published."""

    def __init__(self, db_url: str | None = None) -> None:
        self.results: list[Result] = []
        self.others: list[Outgoing] = []  # retained Configs, commands
        self.not_yet_stored: list[bytes] = []
        self.done = threading.Semaphore(0)
        self._witness = Store(db_url) if db_url else None

    def publish(self, replies: Sequence[Outgoing]) -> None:
        for reply in replies:
            if reply.retain or not reply.topic.endswith("/res"):
                self.others.append(reply)
                continue
            result = decode(reply.payload)
            assert isinstance(result, Result) and result.corr is not None
            # Another connection, as after a crash: the reply's tap must already be committed.
            if self._witness is not None and self._witness.tap_by_mid(result.corr) is None:
                self.not_yet_stored.append(result.corr)
            self.results.append(result)
            self.done.release()

    def wait(self, count: int) -> None:
        for _ in range(count):
            assert self.done.acquire(timeout=10)

    def close(self) -> None:
        if self._witness is not None:
            self._witness.close()


def worker_for(
    store: Store, replies: Replies, core: Core | None = None, **kw: int
) -> DecisionWorker:
    return DecisionWorker(
        core or Core(), store, replies.publish, Metrics(), clock=lambda: NOON_MS, **kw
    )


def frames(count: int) -> list[Frame]:
    return [evt_frame(make_tap(BANDS[n % len(BANDS)], reader="gate-1")) for n in range(count)]


def test_replies_leave_only_after_their_batch_is_committed(store: Store, db_url: str) -> None:
    replies = Replies(db_url)
    worker = worker_for(store, replies)
    worker.start()
    for frame in frames(60):
        assert worker.submit(frame)
    replies.wait(60)
    worker.stop()
    replies.close()
    assert replies.not_yet_stored == []
    assert store.count_taps() == 60


def test_what_is_queued_together_is_committed_together(store: Store) -> None:
    replies = Replies()
    metrics = Metrics()
    worker = DecisionWorker(
        Core(), store, replies.publish, metrics, clock=lambda: NOON_MS, max_batch=16
    )
    for frame in frames(40):  # queued before the worker runs: as under a burst
        assert worker.submit(frame)
    worker.start()
    replies.wait(40)
    worker.stop()
    transactions = metrics.registry.get_sample_value("bandlink_batch_size_count")
    assert transactions == 3  # 16 + 16 + 8, not 40
    assert metrics.registry.get_sample_value("bandlink_batch_size_sum") == 40


def test_taps_of_an_unknown_reader_are_counted_not_recorded(store: Store) -> None:
    replies, metrics = Replies(), Metrics()
    worker = DecisionWorker(Core(), store, replies.publish, metrics, clock=lambda: NOON_MS)
    worker.start()
    for _ in range(3):
        worker.submit(evt_frame(make_tap(BANDS[0], reader="gate-404"), reader="gate-404"))
    replies.wait(3)
    worker.stop()
    labels = {"role": "gate", "reason": "unknown_reader"}
    assert metrics.registry.get_sample_value("bandlink_taps_total", labels) == 3
    assert store.count_taps() == 0


def test_a_full_queue_still_takes_a_readers_birth(store: Store) -> None:
    replies = Replies()
    worker = worker_for(store, replies, queue_size=2)
    assert [worker.submit(frame) for frame in frames(3)] == [True, True, False]
    assert worker.submit(birth_frame("gate-1", 4), session=True)
    worker.start()
    worker.stop()
    assert store.session_of("gate-1") == 4


def test_a_full_queue_refuses_and_the_refusal_asks_for_another_tap(store: Store) -> None:
    replies = Replies()
    worker = worker_for(store, replies, queue_size=2)
    queued = [worker.submit(frame) for frame in frames(3)]
    assert queued == [True, True, False]
    worker.refuse(frames(1)[0], "busy")  # what the MQTT adapter does with the third
    assert [r.reason for r in replies.results] == [reasons.BUSY]
    worker.start()
    worker.stop()  # stop() answers what was queued first
    assert len(replies.results) == 3 and store.count_taps() == 2


class FailsOnBo(Core):
    """A core with a bug that one band's taps trip."""

    def handle(self, frames: Sequence[Frame], now_ms: int, tx: DecisionTx) -> Effects:
        taps = [decode(frame.payload) for frame in frames]
        if any(isinstance(tap, Tap) and tap.uid == DEMO_BANDS["Bo"] for tap in taps):
            raise RuntimeError("a bug")
        return super().handle(frames, now_ms, tx)


@pytest.mark.parametrize("any_db_url", ["sqlite"], indirect=True)
def test_a_frame_that_trips_a_bug_costs_only_its_own_answer(store: Store) -> None:
    replies = Replies()
    worker = worker_for(store, replies, core=FailsOnBo())
    batch = [
        evt_frame(make_tap(uid))
        for uid in (DEMO_BANDS["Ada"], DEMO_BANDS["Bo"], DEMO_BANDS["Emil"])
    ]
    for frame in batch:
        worker.submit(frame)
    worker.start()
    replies.wait(3)
    worker.stop()
    assert sorted(r.reason for r in replies.results) == sorted(
        [reasons.OK, reasons.OK, reasons.INTERNAL_ERROR]
    )
    assert store.count_taps() == 2


def test_a_batch_that_lost_every_race_is_answered_not_split_into_more_races(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that lost ATTEMPTS races in a row (commit_batch gives up) was split and each
    frame run into the same contention ATTEMPTS times more. It is refused whole: tap again."""
    commits: list[int] = []

    def always_loses(_core: Core, _store: Store, frames: Sequence[Frame], *_: object) -> None:
        commits.append(len(frames))
        raise Conflict("lost the race")

    monkeypatch.setattr(worker_module, "commit_batch", always_loses)
    replies = Replies()
    worker = worker_for(store, replies)
    for frame in frames(3):
        worker.submit(frame)
    worker.start()
    replies.wait(3)
    worker.stop()
    assert commits == [3]
    assert [r.reason for r in replies.results] == [reasons.INTERNAL_ERROR] * 3
    assert all(r.pattern == messages.RETRY for r in replies.results)


def test_the_worker_outlives_a_publish_that_fails(store: Store) -> None:
    replies = Replies()
    failed = threading.Event()

    def flaky_publish(outgoing: Sequence[Outgoing]) -> None:
        if not failed.is_set():
            failed.set()
            raise OSError("the broker client broke")
        replies.publish(outgoing)

    worker = DecisionWorker(Core(), store, flaky_publish, Metrics(), clock=lambda: NOON_MS)
    worker.start()
    first, second = frames(2)
    worker.submit(first)
    assert failed.wait(10)
    worker.submit(second)  # a dead worker would never answer this one
    replies.wait(1)
    worker.stop()
    assert store.count_taps() == 2


def test_readers_with_an_open_session_get_the_clock_periodically(store: Store) -> None:
    replies = Replies()
    worker = DecisionWorker(
        Core(),
        store,
        replies.publish,
        Metrics(),
        clock=lambda: NOON_MS,
        tick_s=0.02,
        time_sync_s=0.1,
    )
    for frame in (birth_frame("gate-1", 1), birth_frame("gate-2", 1), death_frame("gate-2", 1)):
        worker.submit(frame, session=True)
    worker.start()
    try:
        synced = wait_for(lambda: time_syncs(replies), lambda topics: len(topics) >= 5)
    finally:
        worker.stop()
    # One on each birth, then every interval only to the reader still online (the births'
    # band lists are other commands).
    assert synced[:2] == ["bl/1/gate-1/cmd", "bl/1/gate-2/cmd"]
    assert set(synced[2:]) == {"bl/1/gate-1/cmd"}


def time_syncs(replies: Replies) -> list[str]:
    """The topics of the TIME_SYNC commands published, in order (with the gateway's clock)."""
    found = []
    for reply in replies.others:
        command = decode(reply.payload)
        if isinstance(command, Command) and command.op == TIME_SYNC:
            assert command.time_ms == NOON_MS
            found.append(reply.topic)
    return found


def test_a_garbage_flood_logs_a_summary_not_a_line_per_frame(store: Store) -> None:
    """Issue: 20,000 garbage frames wrote 2.5 MB of log, a line each. Now the first few of an
    interval get a line each, and the rest one summary line per interval."""
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("bandlink.gateway")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    replies = Replies()
    # One interval for the whole flood, however slow the machine: one summary to count.
    worker = worker_for(store, replies, queue_size=30_000, flood_log_s=3600)
    garbage = [b"\xff\x00garbage", b"\xa1" * 40, dumps({0: 1, 1: 77}), b"\x9a\xff\xff\xff\xff"]
    try:
        for n in range(20_000):
            reader = f"gate-{1 + n % 3}"
            assert worker.submit(evt_frame(garbage[n % 4], reader=reader))
        worker.start()
        worker.submit(evt_frame(make_tap(BANDS[0])))  # and the gateway still decides
        replies.wait(1)
        worker.stop()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    log = written.getvalue()
    assert [r.reason for r in replies.results] == [reasons.OK]
    assert len(log.encode()) < 5_000, log[:2000]
    assert "dropped frame from gate-1: malformed" in log  # the first ones, one line each
    summary = re.search(r"dropped ([\d,]+) more frames in \d+ s: (.*)", log)
    assert summary is not None and int(summary[1].replace(",", "")) == 20_000 - 10
    assert "malformed" in summary[2] and "from gate-" in summary[2]
