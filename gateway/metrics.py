"""Prometheus metrics of one gateway process, in a registry of its own (several gateways in one
test process must not share counters), served on the settings' ``metrics`` address."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Decision latency, frame arrival to reply handed to the broker client: sub-millisecond when
# idle, a few ms under group commit, seconds only when something is wrong.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.taps = Counter(
            "bandlink_taps", "Taps answered, by role and reason", ["role", "reason"], registry=r
        )
        self.decision_seconds = Histogram(
            "bandlink_decision_seconds",
            "Frame arrival to reply published",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "bandlink_batch_size",
            "Frames decided per transaction",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "bandlink_queue_depth", "Frames waiting for the decision worker", registry=r
        )
        self.dropped = Counter(
            "bandlink_frames_dropped", "Frames dropped, by error code", ["code"], registry=r
        )
        self.ignored = Counter(
            "bandlink_frames_ignored", "Valid messages not acted on yet", ["kind"], registry=r
        )
        self.refused_busy = Counter(
            "bandlink_refused_busy", "Taps answered busy: the decision queue was full", registry=r
        )
        self.rate_limited = Counter(
            "bandlink_rate_limited",
            "Taps answered busy: their reader was over its rate limit",
            registry=r,
        )
        self.replies_dropped = Counter(
            "bandlink_replies_dropped", "Replies the broker client's queue refused", registry=r
        )
        self.retries = Counter(
            "bandlink_batch_retries", "Transactions run again after losing a race", registry=r
        )
        self.failures = Counter(
            "bandlink_decision_failures", "Frames answered internal_error", registry=r
        )
        self.readers_online = Gauge(
            "bandlink_readers_online", "Readers whose session is open (all gateways)", registry=r
        )
        self.gateways_up = Gauge(
            "bandlink_gateways_up", "Gateway processes online on the broker", registry=r
        )

    def follow(self, readers_online: Callable[[], float], gateways_up: Callable[[], float]) -> None:
        """Gauges read at scrape time from where the truth lives."""
        self.readers_online.set_function(readers_online)
        self.gateways_up.set_function(gateways_up)

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)
