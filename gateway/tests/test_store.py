"""The store against real SQLite files: migrations, venue loading, idempotent taps, races."""

from __future__ import annotations

import itertools
import multiprocessing
import sqlite3
import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine

from bandlink.gateway.entry import Presence, Ticket, decide_entry
from bandlink.gateway.store import Store, TapRecord, metadata
from bandlink.gateway.venue import DEMO_BANDS, DEMO_VENUE, SITE, UNKNOWN_BAND_UID, resolve_date

TODAY = date(2026, 7, 1)
ADA = DEMO_BANDS["Ada"]


def open_store(path: Path) -> Store:
    store = Store(f"sqlite:///{path}")
    store.migrate()
    store.load_venue(DEMO_VENUE, today=TODAY)
    return store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path / "gw.db")
    yield s
    s.close()


def make_tap(mid: bytes, *, granted: bool = True, reason: str = "ok", at: int = 0) -> TapRecord:
    return TapRecord(mid, "gate-1", ADA, "in", at, at + 1, granted, reason, "g-ada", 0)


def inside(changed_ms: int, gate: str = "north") -> Presence:
    return Presence("g-ada", SITE, True, gate, changed_ms)


# -- schema ---------------------------------------------------------------------------------


def test_migrate_is_idempotent_and_matches_the_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gw.db'}"
    store = Store(url)
    store.migrate()
    store.migrate()
    store.close()
    with create_engine(url).connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_server_default": True})
        assert context.get_current_revision() == "0001"
        # The hand-written migration and store.py's Table objects describe the same schema.
        assert compare_metadata(context, metadata) == []


def test_sqlite_file_is_in_wal_mode_with_foreign_keys(store: Store, tmp_path: Path) -> None:
    raw = sqlite3.connect(tmp_path / "gw.db")
    assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    raw.close()
    with store._engine.connect() as conn:  # per-connection pragma: ask the store's own
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


# -- venue ----------------------------------------------------------------------------------


def test_load_venue_roundtrip(store: Store) -> None:
    reader = store.reader("gate-2")
    assert reader is not None and (reader.site, reader.role, reader.gate) == (SITE, "gate", "north")
    assert store.reader("gate-404") is None
    band = store.band(ADA)
    assert band is not None and (band.guest_id, band.blocked) == ("g-ada", False)
    dara = store.band(DEMO_BANDS["Dara"])
    assert dara is not None and dara.blocked
    assert store.band(UNKNOWN_BAND_UID) is None
    assert store.guest_name("g-ada") == "Ada"
    assert store.guest_name("g-nobody") is None
    assert store.tickets_for("g-bo") == [
        Ticket("t-bo", "g-bo", SITE, date(2026, 6, 28), date(2026, 6, 30))
    ]
    assert store.tickets_for("g-chen")[0].site == "riverside"


def test_load_venue_twice_updates_in_place(store: Store) -> None:
    store.load_venue(
        {
            "site": SITE,
            "guests": [
                {"id": "g-ada", "name": "Ada O.", "bands": [{"uid": ADA.hex(), "blocked": True}]}
            ],
        },
        today=TODAY,
    )
    band = store.band(ADA)
    assert band is not None and band.blocked
    assert store.guest_name("g-ada") == "Ada O."
    assert len(store.tickets_for("g-ada")) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("today", TODAY),
        ("today+2", date(2026, 7, 3)),
        ("today-1", date(2026, 6, 30)),
        ("2026-01-05", date(2026, 1, 5)),
        (date(2020, 2, 2), date(2020, 2, 2)),
    ],
)
def test_resolve_date(text: str | date, expected: date) -> None:
    assert resolve_date(text, today=TODAY) == expected


# -- taps -----------------------------------------------------------------------------------


def test_tap_record_needs_a_16_byte_mid() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        make_tap(b"short")


def test_duplicate_mid_gets_the_stored_record_and_applies_presence_once(store: Store) -> None:
    mid = bytes(range(16))
    first = make_tap(mid, at=100)
    assert store.record_tap(first, inside(100)) == first
    # A redelivery decided differently (say, now "already_inside") must not win or apply.
    again = make_tap(mid, granted=False, reason="already_inside", at=200)
    outside = Presence("g-ada", SITE, False, "north", 200)
    assert store.record_tap(again, outside) == first
    assert store.count_taps() == 1
    assert store.tap_by_mid(mid) == first
    assert store.presence("g-ada", SITE) == inside(100)


def test_tap_without_presence_change_leaves_presence_alone(store: Store) -> None:
    refused = make_tap(b"\x01" * 16, granted=False, reason="band_blocked")
    store.record_tap(refused, None)
    assert store.presence("g-ada", SITE) is None
    assert store.tap_by_mid(b"\x01" * 16) == refused
    assert store.tap_by_mid(b"\x02" * 16) is None


def test_recent_taps_newest_first(store: Store) -> None:
    for i in range(5):
        store.record_tap(make_tap(bytes([i]) * 16, at=i * 10), None)
    assert [t.received_ms for t in store.recent_taps(3)] == [41, 31, 21]


def _race(path: Path, mid: bytes, n: int) -> list[TapRecord]:
    """n threads, each with its own Store (own connections, like processes), one mid."""
    barrier = threading.Barrier(n)
    results: list[TapRecord] = []
    stores = [Store(f"sqlite:///{path}") for _ in range(n)]

    def contender(i: int) -> None:
        barrier.wait()
        results.append(stores[i].record_tap(make_tap(mid, at=i), inside(i, gate=f"g{i}")))

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    return results


def test_racing_threads_record_one_mid_once(store: Store, tmp_path: Path) -> None:
    for k in range(5):
        mid = bytes([k]) * 16
        results = _race(tmp_path / "gw.db", mid, n=6)
        winner = store.tap_by_mid(mid)
        assert winner is not None and results == [winner] * 6
        # The presence written is the winner's, and only the winner's.
        assert store.presence("g-ada", SITE) == inside(
            winner.reader_ts_ms, f"g{winner.reader_ts_ms}"
        )
    assert store.count_taps() == 5


def _process_contender(url: str, mid: bytes, i: int, barrier: object, out: object) -> None:
    store = Store(url)
    barrier.wait()  # type: ignore[attr-defined]
    out.put(store.record_tap(make_tap(mid, at=i), inside(i)))  # type: ignore[attr-defined]
    store.close()


def test_racing_processes_record_one_mid_once(store: Store, tmp_path: Path) -> None:
    # fork: the children build their own Store; nothing of the parent's connections is used.
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    url, mid = f"sqlite:///{tmp_path / 'gw.db'}", b"\x07" * 16
    procs = [
        ctx.Process(target=_process_contender, args=(url, mid, i, barrier, out)) for i in (0, 1)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert results[0] == results[1] == store.tap_by_mid(mid)
    assert store.count_taps() == 1


# -- the core and the store together --------------------------------------------------------

GATE_TAPS = st.lists(
    st.tuples(
        st.sampled_from(["in", "out"]),
        st.sampled_from(["gate-1", "gate-2", "gate-s"]),
        st.integers(0, 25_000),
        # Re-send the earlier tap with this index (modulo), as a QoS 1 redelivery would.
        st.one_of(st.none(), st.integers(0, 100)),
    ),
    max_size=25,
)


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = open_store(tmp_path_factory.mktemp("hyp") / "gw.db")
    s.load_venue(
        {"readers": [{"id": "gate-s", "site": SITE, "role": "gate", "gate": "south"}]}, today=TODAY
    )
    yield s
    s.close()


_guests = itertools.count()
_mids = itertools.count()


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(taps=GATE_TAPS)
def test_store_presence_follows_a_model(
    shared_store: Store, taps: list[tuple[str, str, int, int | None]]
) -> None:
    n = next(_guests)
    store, guest, uid = shared_store, f"g-hyp-{n}", (0x05 << 48 | n).to_bytes(7, "big")
    venue = {
        "guests": [
            {
                "id": guest,
                "name": "H",
                "bands": [uid.hex()],
                "tickets": [
                    {
                        "id": f"t-{guest}",
                        "site": SITE,
                        "valid_from": "today",
                        "valid_until": "today",
                    }
                ],
            }
        ]
    }
    store.load_venue(venue, today=TODAY)
    model: Presence | None = None
    sent: list[TapRecord] = []
    now = 0
    for direction, reader_id, step, resend in taps:
        now += step
        if resend is not None and sent:
            old = sent[resend % len(sent)]
            # A resend carrying a presence change of its own: it must come back with the stored
            # answer and change nothing (the check below fails if the change were applied).
            flipped = Presence(guest, SITE, not (model is not None and model.inside), "x", now)
            assert store.record_tap(old, flipped) == old
        else:
            tap, change = _tap_through(
                store, guest=guest, uid=uid, direction=direction, reader_id=reader_id, now=now
            )
            sent.append(tap)
            model = change or model
        assert store.presence(guest, SITE) == model


def _tap_through(
    store: Store, *, guest: str, uid: bytes, direction: str, reader_id: str, now: int
) -> tuple[TapRecord, Presence | None]:
    """One tap the way the gateway handles it: read, decide, record."""
    reader = store.reader(reader_id)
    assert reader is not None
    decision = decide_entry(
        reader=reader,
        band=store.band(uid),
        tickets=store.tickets_for(guest),
        presence=store.presence(guest, SITE),
        direction=direction,
        today=TODAY,
        now_ms=now,
    )
    mid = next(_mids).to_bytes(16, "big")
    tap = TapRecord(
        mid, reader_id, uid, direction, now, now, decision.granted, decision.reason, guest, 0
    )
    assert store.record_tap(tap, decision.presence) == tap
    return tap, decision.presence
