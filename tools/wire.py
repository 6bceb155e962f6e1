"""Paho clients posing as readers on the wire, each logged in as the reader it poses as: they
send the frames a test chooses (valid taps or garbage) on their own event topics and collect
every Result the gateways publish to them. For the end-to-end tests that attack or race the
gateways without the firmware in the way.

``connect`` is the one way the tools open a test client: with a login (or none, as a stranger
might), a client id of its choice, MQTT 3.1.1 or 5, and a will; it returns the client, running
its network loop, and the broker's answer to the CONNECT."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from bandlink.protocol import GATE, Result, Tap, decode, encode, topics

from .access import Login
from .broker import MosquittoBroker
from .sunband import development_bands

_CONNECT_TIMEOUT_S = 5


class Connected:
    """A client and the broker's CONNACK: ``refused`` if it did not let the client in."""

    def __init__(self, client: paho.Client, reason: ReasonCode | None) -> None:
        self.client = client
        self.reason = reason

    @property
    def refused(self) -> bool:
        return self.reason is None or self.reason.is_failure

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def connect(
    broker: MosquittoBroker,
    login: Login | None,
    *,
    client_id: str = "",
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311,
    will: tuple[str, bytes, bool] | None = None,
    on_message: Any = None,
) -> Connected:
    """A paho client connected (or refused) as ``login`` (None: anonymous), loop running.
    ``will`` is (topic, payload, retain), sent at QoS 1."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    if login is not None:
        client.username_pw_set(login.user, login.password)
    if will is not None:
        client.will_set(will[0], will[1], qos=1, retain=will[2])
    answered = threading.Event()
    reasons: list[ReasonCode] = []

    def on_connect(_c: paho.Client, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
        reasons.append(reason)
        answered.set()

    client.on_connect = on_connect
    if on_message is not None:
        client.on_message = on_message
    client.connect(broker.host, broker.port, keepalive=30)
    client.loop_start()
    answered.wait(_CONNECT_TIMEOUT_S)
    connected = Connected(client, reasons[0] if reasons else None)
    if connected.refused:
        client.loop_stop()  # paho would otherwise retry with the same refused credentials
    return connected


class WireReaders:
    """``readers`` (reader ids), one connection and identity each, subscribed to their own
    ``res``. ``publish``/``send`` as one of them; answers to all are collected together."""

    def __init__(self, broker: MosquittoBroker, readers: Sequence[str] = ("gate-1", "gate-2")):
        self.results: dict[bytes, Result] = {}  # by corr: the latest answer to each mid
        self.answers: list[Result] = []  # every answer, in arrival order (duplicates too)
        self._lock = threading.Condition()
        self._clients: dict[str, Connected] = {}
        try:
            for reader, login in zip(readers, broker.reader_logins(readers), strict=True):
                self._clients[reader] = self._open(broker, reader, login)
        except BaseException:
            self.close()
            raise

    def _open(self, broker: MosquittoBroker, reader: str, login: Login) -> Connected:
        link = connect(broker, login, on_message=self._on_message)
        assert not link.refused, f"{reader}: the broker refused its login: {link.reason}"
        subscribed = threading.Event()
        link.client.on_subscribe = lambda *_: subscribed.set()
        link.client.subscribe(topics.reader_topic(reader, topics.RES), qos=1)
        assert subscribed.wait(5), "no SUBACK from the broker"
        return link

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        result = decode(msg.payload)
        assert isinstance(result, Result) and result.corr is not None
        with self._lock:
            self.results[result.corr] = result
            self.answers.append(result)
            self._lock.notify_all()

    def publish(self, reader: str, payload: bytes) -> None:
        """Any bytes on the reader's event topic, once the broker has them."""
        topic = topics.reader_topic(reader, topics.EVT)
        self._clients[reader].client.publish(topic, payload, qos=1).wait_for_publish(5)

    def send(self, reader: str, uid: bytes, direction: int) -> bytes:
        """A fresh gate tap with a fresh reading of the band, without waiting; its mid."""
        reading = development_bands().read(uid)
        tap = Tap(
            reader=reader,
            ts=1,
            mid=os.urandom(16),
            uid=uid,
            role=GATE,
            direction=direction,
            **reading,
        )
        assert tap.mid is not None
        topic = topics.reader_topic(reader, topics.EVT)
        self._clients[reader].client.publish(topic, encode(tap), qos=1)
        return tap.mid

    def wait(self, mids: list[bytes], timeout: float = 10) -> list[Result]:
        with self._lock:
            self._lock.wait_for(lambda: all(m in self.results for m in mids), timeout)
            return [self.results[m] for m in mids]

    def wait_answers(self, count: int, timeout: float = 5) -> list[Result]:
        with self._lock:
            self._lock.wait_for(lambda: len(self.answers) >= count, timeout)
            return list(self.answers)

    def close(self) -> None:
        for link in self._clients.values():
            link.close()
