"""The gateway process's parts together (the composition root: settings, store, core, worker,
MQTT adapter) on a real Mosquitto that is locked down (password file and ACL, no anonymous
clients): what a reader gets from the gateway besides results, and a reader's flood."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bandlink.gateway.main import GatewayService
from bandlink.gateway.settings import load_settings
from bandlink.gateway.store import Store
from bandlink.gateway.venue import DEMO_BANDS, SITE
from bandlink.protocol import (
    GATE,
    Birth,
    Command,
    Config,
    Message,
    Result,
    Tap,
    decode,
    encode,
    reasons,
    topics,
)
from bandlink.protocol.messages import IN, LIST_SNAPSHOT, OUT, RETRY, TIME_SYNC
from bandlink.tools.broker import MosquittoBroker
from bandlink.tools.sunband import development_bands
from bandlink.tools.waiting import wait_for

from .pair import TODAY


@pytest.fixture
def locked_broker(broker: MosquittoBroker) -> MosquittoBroker:
    """The shared fixture's broker: locked (no anonymous client, an ACL per identity)."""
    return broker


@pytest.fixture
def gateway(locked_broker: MosquittoBroker, tmp_path: Path) -> Iterator[GatewayService]:
    login = locked_broker.gateway_login("gw-t")
    settings = load_settings(
        broker=locked_broker.url,
        db=f"sqlite:///{tmp_path / 'gw.db'}",
        venue="demo",
        gateway_id="gw-t",
        broker_user=login.user,
        broker_password=login.password,
        reader_rate=20,
        reader_burst=40,
    )
    service = GatewayService(settings)
    service.start()
    assert service.bus.wait_connected(5)
    yield service
    service.stop()


class Reader:
    """A reader's MQTT side as the ACL allows it: its own cfg and cmd, its own birth."""

    def __init__(self, broker: MosquittoBroker, reader_id: str) -> None:
        self.reader_id = reader_id
        self.received: list[tuple[str, bool, Message | None]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        login = broker.reader_login(reader_id)
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=reader_id)
        self.client.username_pw_set(login.user, login.password)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        kinds = (topics.CFG, topics.CMD, topics.RES)
        own = [(topics.reader_topic(reader_id, kind), 1) for kind in kinds]
        self.client.subscribe(own)
        self.client.loop_start()
        assert subscribed.wait(5)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        message = decode(msg.payload) if msg.payload else None
        with self._lock:
            self.received.append((msg.topic.rsplit("/", 1)[1], bool(msg.retain), message))

    def of(self, kind: type[Message]) -> list[Message]:
        with self._lock:
            return [m for _, _, m in self.received if isinstance(m, kind)]

    def tap(self, uid: bytes, direction: int = IN) -> bytes:
        tap = Tap(
            reader=self.reader_id,
            ts=1,
            mid=os.urandom(16),
            uid=uid,
            role=GATE,
            direction=direction,
            **development_bands().read(uid),
        )
        assert tap.mid is not None
        self.client.publish(topics.reader_topic(self.reader_id, topics.EVT), encode(tap), qos=1)
        return tap.mid

    def birth(self, bdseq: int) -> None:
        birth = Birth(reader=self.reader_id, ts=1, bdseq=bdseq, firmware="t", role=GATE)
        topic = topics.reader_topic(self.reader_id, topics.BIRTH)
        self.client.publish(topic, encode(birth), qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_a_reader_finds_its_config_retained_and_follows_changes(
    locked_broker: MosquittoBroker, gateway: GatewayService
) -> None:
    exit_reader = Reader(locked_broker, "gate-2")
    try:
        (config,) = wait_for(lambda: exit_reader.of(Config), lambda found: len(found) >= 1)
        assert isinstance(config, Config)
        assert (config.gate, config.direction) == ("north", OUT)
        assert exit_reader.received[0][1], "retained: there before the reader subscribed"
        # The venue changes while the gateway runs: the reader hears of it within a second.
        turned = {"id": "gate-2", "site": SITE, "role": "gate", "gate": "north", "direction": "in"}
        store = Store(gateway.settings.db)
        store.load_venue({"readers": [turned]}, today=TODAY)
        store.close()
        configs = wait_for(lambda: exit_reader.of(Config), lambda found: len(found) >= 2)
        latest = configs[-1]
        assert isinstance(latest, Config) and latest.direction == IN
        assert latest.version > config.version
    finally:
        exit_reader.close()


def test_a_birth_is_answered_with_the_gateways_clock(
    locked_broker: MosquittoBroker, gateway: GatewayService
) -> None:
    reader = Reader(locked_broker, "gate-1")
    try:
        reader.birth(1)
        command, *band_list = wait_for(lambda: reader.of(Command), lambda found: len(found) >= 2)
        assert isinstance(command, Command) and command.op == TIME_SYNC
        assert [c.op for c in band_list if isinstance(c, Command)] == [LIST_SNAPSHOT]
        assert command.time_ms is not None and command.time_ms > 1_700_000_000_000
    finally:
        reader.close()


def test_one_readers_flood_is_answered_busy_past_its_rate_and_others_are_decided(
    locked_broker: MosquittoBroker, gateway: GatewayService
) -> None:
    flooding, other = Reader(locked_broker, "gate-1"), Reader(locked_broker, "gate-3")
    try:
        started = time.monotonic()
        mids = [flooding.tap(DEMO_BANDS["Bo"]) for _ in range(300)]
        (mine,) = [other.tap(DEMO_BANDS["Ada"])]
        results = wait_for(lambda: flooding.of(Result), lambda found: len(found) >= 300)
        elapsed = time.monotonic() - started
        (answer,) = wait_for(lambda: other.of(Result), lambda found: len(found) >= 1)
    finally:
        flooding.close()
        other.close()
    assert {r.corr for r in results if isinstance(r, Result)} == set(mids)  # all answered
    busy = [r for r in results if isinstance(r, Result) and r.reason == reasons.BUSY]
    decided = len(results) - len(busy)
    print(f"flood: {len(results)} taps in {elapsed:.2f} s, {decided} decided, {len(busy)} busy")
    assert 40 <= decided <= 40 + 20 * elapsed + 5, (decided, elapsed)
    assert all(r.pattern == RETRY for r in busy)
    assert isinstance(answer, Result) and answer.corr == mine and answer.reason == reasons.OK
    limited = gateway.metrics.registry.get_sample_value("bandlink_rate_limited_total")
    assert limited == len(busy)
