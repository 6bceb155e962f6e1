"""The fault runs of `bandlink chaos`, as tests: several real-firmware gates tapping
continuously while Mosquitto restarts, gateway processes are SIGKILLed (one with the other up,
then all), a reader is SIGKILLed mid-tap and booted again, or a reader is cut off from the
broker while it keeps deciding. After each, every light a guest saw is one record, none is
recorded twice, and the reconciliation report lists exactly the offline exceptions. On SQLite
and PostgreSQL; each run bounded (its load, then at most a minute for the journals to drain)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bandlink.tools.chaos import FAULTS, run_chaos

SECONDS = 8.0


@pytest.mark.parametrize("fault", FAULTS)
def test_every_light_a_guest_saw_is_recorded_exactly_once(
    fault: str, any_db_url: str, tmp_path: Path
) -> None:
    report = run_chaos(fault, readers=3, seconds=SECONDS, db_url=any_db_url, workdir=tmp_path)
    assert report.seen > 50, report  # the guests kept tapping throughout
    assert (report.lost, report.doubled) == (0, 0), report
    assert report.exceptions == report.exceptions_expected, report
    if fault == "reader-kill":
        assert report.reboots >= 1, report
    else:
        # The fault took the gateway away from at least one reader, which decided alone.
        assert report.offline > 0, report
