"""A paho client posing as readers on the wire: it sends the frames a test chooses (valid taps
or garbage) on readers' event topics and collects every Result the gateways publish. For the
end-to-end tests that attack or race the gateways without the firmware in the way."""

from __future__ import annotations

import os
import threading

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bandlink.protocol import GATE, Result, Tap, decode, encode, topics

from .broker import MosquittoBroker


class WireReaders:
    def __init__(self, broker: MosquittoBroker) -> None:
        self.results: dict[bytes, Result] = {}  # by corr: the latest answer to each mid
        self.answers: list[Result] = []  # every answer, in arrival order (duplicates too)
        self._lock = threading.Condition()
        subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="wire-readers")
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(topics.reader_topic("+", topics.RES), qos=1)
        self.client.loop_start()
        assert subscribed.wait(5), "no SUBACK from the broker"

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
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def send(self, reader: str, uid: bytes, direction: int) -> bytes:
        """A fresh gate tap, without waiting; its mid."""
        tap = Tap(reader=reader, ts=1, mid=os.urandom(16), uid=uid, role=GATE, direction=direction)
        assert tap.mid is not None
        self.client.publish(topics.reader_topic(reader, topics.EVT), encode(tap), qos=1)
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
        self.client.loop_stop()
        self.client.disconnect()
