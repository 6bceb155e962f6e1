"""The MQTT adapter: the only module that imports paho-mqtt.

It subscribes to every reader's event topic through an MQTT 5 shared subscription (so several
gateway processes split the readers' traffic), hands each frame to ``Gateway.handle`` and
publishes what it returns. TCP_NODELAY is set on the socket: with Nagle, a request/response
pays milliseconds and 40 ms delayed-ACK spikes per tap (FIELD-NOTES.md).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from bandlink.protocol import topics

from .service import Gateway

log = logging.getLogger("bandlink.gateway.bus")


def parse_broker_url(url: str) -> tuple[str, int]:
    """``mqtt://host:port`` -> (host, port); port 1883 when omitted."""
    parsed = urlparse(url)
    if parsed.scheme != "mqtt" or not parsed.hostname:
        raise ValueError(f"broker URL must look like mqtt://host:port, not {url!r}")
    return parsed.hostname, parsed.port or 1883


class Bus:
    def __init__(self, gateway: Gateway, broker_url: str, *, client_id: str | None = None) -> None:
        self._gateway = gateway
        self._host, self._port = parse_broker_url(broker_url)
        self._connected = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"bandlink-gw-{os.getpid()}",
            protocol=mqtt.MQTTv5,
        )
        self._client.on_socket_open = self._on_socket_open
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(min_delay=1, max_delay=8)

    def start(self) -> None:
        """Connect in the background; paho reconnects by itself if the broker goes away."""
        # Readers learn the gateway is gone from its will, retained on $gw/state.
        gone = self._gateway.state_frame(online=False, now_ms=_now_ms())
        self._client.will_set(gone.topic, gone.payload, qos=1, retain=True)
        self._client.connect_async(self._host, self._port, keepalive=30)
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self) -> None:
        """Say offline (a clean disconnect discards the will), then disconnect."""
        if self._connected.is_set():
            gone = self._gateway.state_frame(online=False, now_ms=_now_ms())
            self._client.publish(gone.topic, gone.payload, qos=1, retain=True).wait_for_publish(2)
        self._client.disconnect()
        self._client.loop_stop()

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        for topic in (topics.EVENTS_SHARED, topics.BIRTHS_SHARED, topics.DEATHS_SHARED):
            client.subscribe(topic, qos=1)
        here = self._gateway.state_frame(online=True, now_ms=_now_ms())
        client.publish(here.topic, here.payload, qos=1, retain=True)
        self._connected.set()
        log.info("connected to mqtt://%s:%d", self._host, self._port)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        log.warning("broker connection lost (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            replies = self._gateway.handle(msg.topic, msg.payload, _now_ms())
        except Exception:
            # A bug or a store failure on one tap must not take the gateway down with it; the
            # reader gets no reply and shows "try again".
            log.exception("failed to handle a frame on %s", msg.topic)
            return
        for reply in replies:
            client.publish(reply.topic, reply.payload, qos=1)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
