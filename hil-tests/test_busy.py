"""A gateway that is too busy to decide answers "busy" with the RETRY pattern: the real firmware
asks the guest to tap again at once, and resends the same operation when the band comes back."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from bandlink.gateway.core.handler import Core, Frame
from bandlink.gateway.venue import DEMO_BANDS
from bandlink.protocol import Tap, decode
from bandlink.tools.broker import MosquittoBroker
from bandlink.tools.simreader import SimReader

DEADLINE_MS = 800


class BusyGateway:
    """Plays a gateway whose decision queue is full: every tap gets the core's busy refusal."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.mids: list[bytes] = []
        self.core = Core()
        ready = threading.Event()
        login = broker.gateway_login("gw-busy")
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        self.client.username_pw_set(login.user, login.password)
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        online = self.core.state_frame("gw-busy", online=True, now_ms=1)
        self.client.publish(online.topic, online.payload, qos=1, retain=True)
        self.client.subscribe("bl/1/+/evt", qos=1)
        self.client.loop_start()
        assert ready.wait(5)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        tap = decode(msg.payload)
        if isinstance(tap, Tap) and tap.mid is not None:
            self.mids.append(tap.mid)
        for reply in self.core.refuse(Frame(msg.topic, msg.payload, 1), "busy", 1).replies:
            client.publish(reply.topic, reply.payload, qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def busy(broker: MosquittoBroker) -> Iterator[BusyGateway]:
    gateway = BusyGateway(broker)
    yield gateway
    gateway.close()


def test_busy_means_tap_again_now_and_the_same_operation_is_resent(
    busy: BusyGateway, broker: MosquittoBroker, tmp_path: Path
) -> None:
    login = broker.reader_login("gate-1")
    with SimReader("gate-1", broker.url, tmp_path, deadline_ms=DEADLINE_MS, login=login) as reader:
        reader.wait_online()
        first = reader.tap(DEMO_BANDS["Ada"])
        second = reader.tap(DEMO_BANDS["Ada"])
    assert (first.pattern, second.pattern) == ("retry", "retry")
    assert first.ms < DEADLINE_MS / 2  # answered, not timed out
    assert len(busy.mids) == 2 and busy.mids[0] == busy.mids[1]
