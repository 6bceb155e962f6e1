"""Each registered reader's retained Config: built from the catalog, published when it changes
(whoever changed it), cleared when the reader leaves the catalog, all again after a reconnect."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from bandlink.gateway.core.configs import ConfigPublisher
from bandlink.gateway.core.handler import Core
from bandlink.gateway.metrics import Metrics
from bandlink.gateway.settings import normalise_db_url
from bandlink.gateway.store import Store
from bandlink.gateway.venue import DEMO_VENUE, SITE
from bandlink.gateway.worker import DecisionWorker
from bandlink.protocol import GATE, IN, OUT, Config, decode
from bandlink.tools.waiting import wait_for

from .pair import NOON_MS, TODAY
from .test_worker import Replies


def configs(store: Store, publisher: ConfigPublisher) -> dict[str, Config | None]:
    with store.transaction():  # the view follows the catalog, as in a decision transaction
        pass
    found: dict[str, Config | None] = {}
    for topic, payload in publisher.changes(store.view, NOON_MS):
        message = decode(payload) if payload else None
        assert message is None or isinstance(message, Config)
        found[topic] = message
    return found


def test_every_reader_gets_its_config_then_only_changes_go_out(store: Store, db_url: str) -> None:
    publisher = ConfigPublisher()
    first = configs(store, publisher)
    assert set(first) == {f"bl/1/{reader['id']}/cfg" for reader in DEMO_VENUE["readers"]}
    entry, leaving = first["bl/1/gate-1/cfg"], first["bl/1/gate-2/cfg"]
    assert entry is not None and leaving is not None
    assert (entry.reader, entry.role, entry.gate, entry.direction) == ("gate-1", GATE, "north", IN)
    assert (entry.deadline_ms, entry.hold_ms, leaving.direction) == (800, 1500, OUT)
    assert configs(store, publisher) == {}  # nothing changed
    moved = {"id": "gate-3", "site": SITE, "role": "gate", "gate": "south", "direction": "out"}
    store.load_venue({"readers": [moved]}, today=TODAY)
    (changed,) = configs(store, publisher).values()
    assert changed is not None and (changed.reader, changed.direction) == ("gate-3", OUT)
    assert changed.version > entry.version
    engine = create_engine(normalise_db_url(db_url))  # by hand, in SQL: it counts too
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM readers WHERE id = 'gate-3'"))
    engine.dispose()
    assert configs(store, publisher) == {"bl/1/gate-3/cfg": None}  # cleared
    publisher.forget()
    others = {f"bl/1/{reader['id']}/cfg" for reader in DEMO_VENUE["readers"]} - {"bl/1/gate-3/cfg"}
    assert set(configs(store, publisher)) == others


def test_an_idle_worker_publishes_a_changed_config_retained(store: Store) -> None:
    replies = Replies()
    worker = DecisionWorker(
        Core(), store, replies.publish, Metrics(), clock=lambda: NOON_MS, tick_s=0.05
    )
    worker.start()
    try:
        every = len(DEMO_VENUE["readers"])
        wait_for(lambda: len(replies.others), lambda n: n >= every)
        assert all(reply.retain for reply in replies.others)
        moved = {"id": "gate-1", "site": SITE, "role": "gate", "gate": "north", "hold_ms": 700}
        store.load_venue({"readers": [moved]}, today=TODAY)
        wait_for(lambda: len(replies.others), lambda n: n >= every + 1)
        published = [decode(reply.payload) for reply in replies.others]
        first = next(c for c in published[:every] if isinstance(c, Config) and c.reader == "gate-1")
        latest = published[-1]
        assert isinstance(first, Config) and isinstance(latest, Config)
        assert (latest.reader, latest.hold_ms) == ("gate-1", 700)
        assert latest.version > first.version
        worker.connected()  # a reconnection: all of them again
        wait_for(lambda: len(replies.others), lambda n: n >= 2 * every + 1)
    finally:
        worker.stop()
