"""The fault runs of `bandlink chaos`, as tests: several real-firmware gates and a till tapping
continuously while Mosquitto restarts, gateway processes are SIGKILLed (one with the other up,
then all), a reader is SIGKILLed mid-tap and booted again, or a reader is cut off from the
broker while it keeps deciding. After each, every light a guest saw is one record, none is
recorded twice, the reconciliation report lists exactly the offline exceptions, and the till's
money adds up (no sale paid twice, the ledger at zero, overdrafts only where reported).

Each fault runs on SQLite and on PostgreSQL, two faults at a time (four rigs at once, each its
own broker, gateways and readers): most of a run is waiting, for its load and then for the
journals to drain (an unanswered tap waits out its 30 s resend window before it is uploaded)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bandlink.tools.chaos import FAULTS, ChaosReport, run_chaos
from bandlink.tools.postgres import PostgresCluster

SECONDS = 6.0
# The partition: a reader cut off for a minute while it keeps deciding (its journal
# holds the minute's taps: a few hundred, of 1024). The other faults last half of SECONDS.
OUTAGES = {"partition": 60.0}


# Two faults at a time, each on both stores: four rigs at once, most of their time spent waiting.
PAIRS = [FAULTS[0::2], FAULTS[1::2]]


@pytest.mark.parametrize("faults", PAIRS, ids=["-".join(pair) for pair in PAIRS])
def test_every_light_a_guest_saw_is_recorded_exactly_once(
    faults: tuple[str, ...], pg_url: str, postgres: PostgresCluster, tmp_path: Path
) -> None:
    runs = []
    for fault in faults:
        runs.append((fault, "sqlite", f"sqlite:///{tmp_path / fault}.db"))
        runs.append((fault, "postgresql", pg_url if fault == faults[0] else _second(postgres)))
    with ThreadPoolExecutor(len(runs)) as pool:
        reports = [
            (fault, store, pool.submit(_run, fault, url, tmp_path / f"{fault}-{store}"))
            for fault, store, url in runs
        ]
        for fault, store, future in reports:
            _check(fault, store, future.result())


def _second(postgres: PostgresCluster) -> str:
    """A second fresh database on the session's cluster (the cluster goes with the session)."""
    return postgres.create_database(f"chaos_{uuid.uuid4().hex[:12]}")


def _check(fault: str, store: str, report: ChaosReport) -> None:
    where = (fault, store, report)
    assert report.seen > 40, where  # the guests kept tapping throughout
    assert (report.lost, report.doubled) == (0, 0), where
    assert report.exceptions == report.exceptions_expected, where
    # The till: sales went on, none paid twice, every green one paid or on the report, the
    # ledger sums to zero, and every wallet below zero is a reported overdraft.
    assert report.sales > 0, where
    assert (report.paid_twice, report.unpaid_greens, report.ledger_total) == (0, 0, 0), where
    assert report.overdrawn <= report.overdrafts_reported, where
    if fault == "reader-kill":
        assert report.reboots >= 1, where
    else:
        # The fault took the gateway away from at least one reader: it decided alone.
        assert report.offline > 0, where


def _run(fault: str, db_url: str, workdir: Path) -> ChaosReport:
    workdir.mkdir()
    return run_chaos(
        fault,
        readers=3,
        seconds=SECONDS,
        outage_s=OUTAGES.get(fault),
        db_url=db_url,
        workdir=workdir,
    )
