"""``bandlink bench taps``: tap-to-light round trips on the demo rig, as fast as taps come.

The time is taken from the moment the band is placed on the simulated antenna to the moment the
reader reports its light: the firmware's whole tap path (poll, encode, MQTT publish, wait for
the reply, decode, show) plus the broker and the gateway's decision and durable write. Taps are
sequential (one guest at a gate at a time), so there is no queueing to hide.
"""

from __future__ import annotations

import statistics

from .demo import VAR, script
from .rig import venue_rig


def _percentile(sorted_ms: list[float], fraction: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(fraction * len(sorted_ms)))]


def bench_taps(count: int) -> int:
    times: list[float] = []
    with venue_rig(VAR / "bench", say=lambda _: None) as rig:
        taps = script()
        for _ in range(count):
            reader_id, uid = next(taps)
            times.append(rig.readers[reader_id].tap(uid).ms)
        heap = rig.heap_used_max()
        recorded = rig.store.count_taps()
    ordered = sorted(times)
    print(f"taps {count}, recorded by the gateway {recorded}")
    print(
        f"tap-to-light ms: p50 {statistics.median(ordered):.2f}  "
        f"p90 {_percentile(ordered, 0.9):.2f}  p99 {_percentile(ordered, 0.99):.2f}  "
        f"max {ordered[-1]:.2f}  (first tap {times[0]:.2f})"
    )
    print(f"firmware heap in use after a tap, at most {heap} bytes")
    return 0
