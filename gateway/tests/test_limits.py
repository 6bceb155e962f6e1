"""Token buckets per reader (hypothesis over random arrival times) and the flood log."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandlink.gateway.core.limits import FloodLog, TokenBuckets

RATES = st.sampled_from([1.0, 5.0, 20.0])
BURSTS = st.integers(1, 50)


@given(RATES, BURSTS, st.lists(st.floats(0, 0.5, allow_nan=False), max_size=300))
def test_a_key_never_gets_more_than_burst_plus_rate_times_time(
    rate: float, burst: int, gaps: list[float]
) -> None:
    buckets = TokenBuckets(rate, burst)
    now, allowed = 0.0, []
    for gap in gaps:
        now += gap
        if buckets.allow("gate-1", now):
            allowed.append(now)
    # Every window [start, end] of allowed taps holds at most burst + rate x its length.
    for i, start in enumerate(allowed):
        for j in range(i, len(allowed)):
            assert j - i + 1 <= burst + rate * (allowed[j] - start) + 1e-6


@given(RATES, BURSTS, st.integers(1, 200))
def test_taps_at_the_rate_are_never_refused(rate: float, burst: int, count: int) -> None:
    buckets = TokenBuckets(rate, burst)
    assert all(buckets.allow("gate-1", n / rate) for n in range(count))


def test_one_readers_flood_leaves_the_others_alone() -> None:
    buckets = TokenBuckets(20, 40)
    flood = [buckets.allow("gate-1", 0.001 * n) for n in range(1000)]  # 1,000 taps in 1 s
    assert 40 <= sum(flood) <= 40 + 20 + 1
    assert buckets.allow("gate-2", 1.0)


def test_no_limit_at_rate_zero_and_bad_limits_refused() -> None:
    assert all(TokenBuckets(0, 1).allow("gate-1", 0) for _ in range(100))
    with pytest.raises(ValueError, match="burst"):
        TokenBuckets(20, 0)


def test_buckets_are_bounded() -> None:
    buckets = TokenBuckets(20, 40, max_keys=100)
    for n in range(1000):
        buckets.allow(f"reader-{n}", n / 1000)
    assert len(buckets._buckets) <= 101


def test_a_flood_is_summarised_not_logged_line_by_line(caplog: pytest.LogCaptureFixture) -> None:
    flood = FloodLog(logging.getLogger("test.flood"), interval_s=10, lines=3)
    with caplog.at_level(logging.WARNING, "test.flood"):
        for n in range(20_000):
            reader = "gate-1" if n % 5 else "gate-2"
            code = "malformed" if n % 2 else "too_deep"
            flood.note(code, reader, f"dropped frame from {reader}: {code}", n * 0.0004)
        flood.flush(10.0, force=True)
    lines = [record.getMessage() for record in caplog.records]
    assert lines[:3] == [
        "dropped frame from gate-2: too_deep",
        "dropped frame from gate-1: malformed",
        "dropped frame from gate-1: too_deep",
    ]
    assert len(lines) <= 3 + 2  # the first interval's summary, then the rest's
    assert any(line.startswith("dropped ") and " more frames in " in line for line in lines[3:])
    assert "dropped 19,997 more frames in 10 s: malformed 7,999 from gate-1" in lines[3]
