"""The catalog in memory follows every change, whoever makes it, at the next decision."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import create_engine, text

from bandlink.gateway.settings import normalise_db_url
from bandlink.gateway.store import Store
from bandlink.gateway.store.view import FULL_RELOAD_AFTER
from bandlink.gateway.venue import DEMO_BANDS, DEMO_VENUE, SITE
from bandlink.protocol import reasons

from .pair import TODAY, Pair

ADA = DEMO_BANDS["Ada"]


def test_a_band_blocked_by_another_gateway_is_refused_at_the_next_tap(
    pair: Pair, store: Store, db_url: str
) -> None:
    assert pair.tap(ADA).reason == reasons.OK  # the view is loaded and in use
    other = Store(db_url)  # another gateway process, or an operator's tool
    other.load_venue(
        {
            "site": SITE,
            "guests": [
                {"id": "g-ada", "name": "Ada", "bands": [{"uid": ADA.hex(), "blocked": True}]}
            ],
        },
        today=TODAY,
    )
    other.close()
    # Exits still work: whoever holds a blocked band is let out, as nobody (issue 9: the band's
    # guest stays inside, for a blocked band may be in a finder's hand).
    out = pair.tap(ADA, reader="gate-2", direction=1)
    assert (out.granted, out.reason, out.name) == (True, reasons.NOT_INSIDE, None)
    assert pair.tap(ADA).reason == reasons.BAND_BLOCKED
    assert store.view.reloads == 1 and store.view.keys_reread > 0


def test_a_change_made_by_hand_in_sql_is_followed(pair: Pair, store: Store, db_url: str) -> None:
    assert pair.tap(DEMO_BANDS["Bo"]).reason == reasons.NO_VALID_TICKET
    engine = create_engine(normalise_db_url(db_url))
    with engine.begin() as conn:  # an operator extends Bo's ticket and renames him
        conn.execute(text("UPDATE tickets SET valid_until = :d WHERE id = 't-bo'"), {"d": TODAY})
        conn.execute(text("UPDATE guests SET first_name = 'Bob' WHERE id = 'g-bo'"))
        conn.execute(text("DELETE FROM readers WHERE id = 'gate-2'"))
    engine.dispose()
    welcome = pair.tap(DEMO_BANDS["Bo"])
    assert (welcome.reason, welcome.name) == (reasons.OK, "Bob")
    assert pair.tap(ADA, reader="gate-2", direction=1).reason == reasons.UNKNOWN_READER


def test_a_new_reader_and_guest_are_known_at_once(pair: Pair, store: Store) -> None:
    uid = bytes.fromhex("04777777777701")
    assert pair.tap(uid, reader="gate-9").reason == reasons.UNKNOWN_READER
    ticket = {"id": "t-new", "valid_from": "today", "valid_until": "today"}
    store.load_venue(
        {
            "site": SITE,
            "guests": [{"id": "g-new", "name": "Noor", "bands": [uid.hex()], "tickets": [ticket]}],
            "readers": [{"id": "gate-9", "role": "gate", "gate": "east"}],
        },
        today=TODAY,
    )
    result = pair.tap(uid, reader="gate-9")
    assert (result.reason, result.name) == (reasons.OK, "Noor")


def test_a_large_change_reloads_the_whole_view(pair: Pair, store: Store) -> None:
    pair.tap(ADA)
    guests = [
        {"id": f"g-{n}", "name": f"Guest {n}", "bands": [f"0466{n:010x}"]}
        for n in range(FULL_RELOAD_AFTER)
    ]
    store.load_venue({"site": SITE, "guests": guests}, today=TODAY)
    pair.tap(bytes.fromhex(f"0466{7:010x}"))
    assert store.view.reloads == 2
    assert store.view.band(bytes.fromhex(f"0466{7:010x}")) is not None


def test_reloading_an_unchanged_venue_logs_no_change(store: Store, db_url: str) -> None:
    """Every gateway start loads the venue: only real changes may reach the catalog log, or it
    would grow by the whole venue at each restart and make every other gateway reload."""
    engine = create_engine(normalise_db_url(db_url))

    def logged() -> int:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM catalog_log")).scalar_one())

    before = logged()
    store.load_venue(DEMO_VENUE, today=TODAY)
    assert logged() == before
    renamed = {"site": SITE, "guests": [{"id": "g-ada", "name": "Ada Okafor-Lee"}]}
    store.load_venue(renamed, today=TODAY)
    assert logged() > before
    engine.dispose()


def test_an_idle_gateway_follows_the_catalog_without_the_write_lock(
    store: Store, db_url: str
) -> None:
    """The idle worker followed the catalog in an empty write transaction, which on SQLite
    waits for the write lock of every other process (for up to its 10 s busy timeout). It
    reads: it sees what is committed while another process holds the lock. (PostgreSQL's
    writers never block a reader, so only SQLite can show it.)"""
    if not db_url.startswith("sqlite"):
        pytest.skip("only SQLite has one write lock for the whole database")
    engine = create_engine(normalise_db_url(db_url))
    done = threading.Event()

    def follow() -> None:
        store.follow_catalog()
        done.set()

    with engine.connect() as other:
        other.exec_driver_sql("BEGIN IMMEDIATE")  # another gateway, mid-decision
        follower = threading.Thread(target=follow)
        follower.start()
        followed = done.wait(5)
        other.rollback()
        follower.join()
    engine.dispose()
    assert followed, "following the catalog waited for another process's write lock"
