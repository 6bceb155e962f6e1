"""The fault runs of `bandlink chaos`, as tests: several real-firmware gates tapping
continuously while Mosquitto restarts, gateway processes are SIGKILLed (one with the other up,
then all), a reader is SIGKILLed mid-tap and booted again, or a reader is cut off from the
broker while it keeps deciding. After each, every light a guest saw is one record, none is
recorded twice, and the reconciliation report lists exactly the offline exceptions.

Each fault runs on SQLite and on PostgreSQL at the same time (two rigs, each its own broker,
gateways and readers): most of a run is waiting, for its load and then for the journals to
drain (an unanswered tap waits out its 30 s resend window before it is uploaded)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bandlink.tools.chaos import FAULTS, ChaosReport, run_chaos

SECONDS = 6.0


@pytest.mark.parametrize("fault", FAULTS)
def test_every_light_a_guest_saw_is_recorded_exactly_once(
    fault: str, pg_url: str, tmp_path: Path
) -> None:
    stores = {"sqlite": f"sqlite:///{tmp_path / 'chaos.db'}", "postgresql": pg_url}
    with ThreadPoolExecutor(len(stores)) as pool:
        running = {
            name: pool.submit(_run, fault, url, tmp_path / name) for name, url in stores.items()
        }
        reports = {name: future.result() for name, future in running.items()}
    for name, report in reports.items():
        assert report.seen > 40, (name, report)  # the guests kept tapping throughout
        assert (report.lost, report.doubled) == (0, 0), (name, report)
        assert report.exceptions == report.exceptions_expected, (name, report)
        if fault == "reader-kill":
            assert report.reboots >= 1, (name, report)
        else:
            # The fault took the gateway away from at least one reader: it decided alone.
            assert report.offline > 0, (name, report)


def _run(fault: str, db_url: str, workdir: Path) -> ChaosReport:
    workdir.mkdir()
    return run_chaos(fault, readers=3, seconds=SECONDS, db_url=db_url, workdir=workdir)
