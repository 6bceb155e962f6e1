"""Flood limits: a token bucket per reader, and a log that summarises floods.

Theory of operation: each reader id (its topic's level, which the broker's ACL vouches for)
has a bucket of at most ``burst`` tokens, refilled at ``rate`` tokens a second; a tap takes
one, and a tap finding the bucket empty is refused "busy" (RETRY) without being decided. So
one reader (a faulty one, or a hostile one) can cost the decision worker at most ``burst`` +
``rate`` x seconds taps, and the others are decided as usual. Invariant (tested with
hypothesis): over any interval of T seconds a key is allowed at most burst + rate x T taps,
and taps spaced 1/rate apart are never refused.

``FloodLog`` writes the first ``lines`` drops of each interval one line each (a stray frame
is worth a line) and counts the rest, which it summarises in one line when the interval ends
("dropped 19,996 frames in 10 s: malformed 12,000 from gate-1, ..."): a flood of garbage must
not turn into megabytes of log.

Pure apart from the logger: the caller passes the time.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

MAX_KEYS = 10_000  # buckets kept at most; full ones (idle readers) are forgotten first


class TokenBuckets:
    """Used by one thread (the MQTT network thread)."""

    def __init__(self, rate: float, burst: int, *, max_keys: int = MAX_KEYS) -> None:
        if rate < 0 or burst < 1:
            raise ValueError("rate must be >= 0 and burst >= 1")
        self.rate = rate  # 0: no limit
        self.burst = burst
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)

    def allow(self, key: str, now_s: float) -> bool:
        """Take a token from ``key``'s bucket; False when it is empty."""
        if self.rate == 0:
            return True
        tokens, then = self._buckets.get(key, (float(self.burst), now_s))
        tokens = min(float(self.burst), tokens + max(0.0, now_s - then) * self.rate)
        allowed = tokens >= 1 - 1e-9  # a tap exactly on time, give or take rounding
        self._buckets[key] = (tokens - 1 if allowed else tokens, now_s)
        if len(self._buckets) > self._max_keys:
            self._forget_full(now_s)
        return allowed

    def _forget_full(self, now_s: float) -> None:
        full = [
            key
            for key, (tokens, then) in self._buckets.items()
            if tokens + (now_s - then) * self.rate >= self.burst
        ]
        for key in full or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[key]


class FloodLog:
    """Thread-safe: drops are noted by the network thread and the decision worker."""

    def __init__(
        self, logger: logging.Logger, *, interval_s: float = 10.0, lines: int = 10
    ) -> None:
        self._log = logger
        self.interval_s = interval_s
        self._lines = lines
        self._lock = threading.Lock()
        self._started: float | None = None
        self._written = 0
        self._counted: Counter[tuple[str, str]] = Counter()  # (what, reader) -> frames

    def note(self, what: str, reader: str, line: str, now_s: float) -> None:
        """One frame dropped (or refused) for ``what`` from ``reader``; ``line`` is its own
        log line, written while this interval has lines left."""
        with self._lock:
            self._roll(now_s)
            if self._written < self._lines:
                self._written += 1
                self._log.warning("%s", line)
            else:
                self._counted[(what, reader)] += 1

    def flush(self, now_s: float, *, force: bool = False) -> None:
        """End the interval if it is over (or ``force``): one summary line for what it counted."""
        with self._lock:
            self._roll(now_s, force=force)

    def _roll(self, now_s: float, *, force: bool = False) -> None:
        if self._started is None:
            self._started = now_s
            return
        elapsed = now_s - self._started
        if elapsed < self.interval_s and not force:
            return
        if self._counted:
            total = sum(self._counted.values())
            top = self._counted.most_common(5)
            parts = [f"{what} {count:,} from {reader}" for (what, reader), count in top]
            if len(self._counted) > len(top):
                rest = total - sum(count for _, count in top)
                parts.append(f"{rest:,} more from {len(self._counted) - len(top)} others")
            self._log.warning(
                "dropped %s more frames in %.0f s: %s", f"{total:,}", elapsed, ", ".join(parts)
            )
        self._started, self._written = now_s, 0
        self._counted.clear()
