"""The MQTT adapter: the only module that imports paho-mqtt.

It subscribes to every reader's topics through MQTT 5 shared subscriptions (so N gateway
processes split the readers' traffic) and to every gateway's liveness topic; it hands each
reader frame to the decision worker and publishes the replies the worker gives back. Nothing
slow runs on paho's network thread: a frame is queued (or, when the queue is full, answered
"busy") and the callback returns. TCP_NODELAY is set on the socket: with Nagle, a
request/response pays milliseconds and 40 ms delayed-ACK spikes per tap (FIELD-NOTES.md).

Liveness: this process keeps ``GatewayState`` retained on its own topic,
``bl/1/$gw/<gateway_id>/state``: online once connected, offline as its will and before a clean
disconnect. Readers hear "gateway gone" only when every gateway they know of says offline.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from bandlink.protocol import GatewayState, ProtocolError, decode, topics

from ..core.handler import Core, Frame, Outgoing
from ..core.limits import TokenBuckets
from ..metrics import Metrics
from ..worker import DecisionWorker, wall_ms

log = logging.getLogger("bandlink.gateway.mqtt")

_READER_TOPICS = (topics.EVENTS_SHARED, topics.BIRTHS_SHARED, topics.DEATHS_SHARED)
_SUBSCRIPTIONS = (*_READER_TOPICS, topics.GATEWAY_STATES)
_EVT_SUFFIX = "/" + topics.EVT
# QoS 1 replies waiting for the broker: beyond this, paho refuses (and we count) rather than
# letting an unbounded queue grow inside the client under a flood.
MAX_QUEUED_REPLIES = 10_000


class Bus:
    def __init__(
        self,
        core: Core,
        metrics: Metrics,
        *,
        host: str,
        port: int,
        gateway_id: str,
        user: str | None = None,
        password: str | None = None,
        limits: TokenBuckets | None = None,
    ) -> None:
        self._core = core
        self._metrics = metrics
        self._host, self._port = host, port
        self.gateway_id = gateway_id
        self.worker: DecisionWorker | None = None  # set by the composition root before start
        self._limits = limits or TokenBuckets(0, 1)  # per reader id, on this thread only
        self._connected = threading.Event()
        self._gateways_online: set[str] = set()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bandlink-{gateway_id}",
            protocol=mqtt.MQTTv5,
        )
        if user is not None:
            self._client.username_pw_set(user, password)
        self._client.max_queued_messages_set(MAX_QUEUED_REPLIES)
        self._client.on_socket_open = self._on_socket_open
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(min_delay=1, max_delay=8)

    def gateways_up(self) -> int:
        """Gateway processes whose retained state says online, this one included."""
        return len(self._gateways_online)

    def start(self) -> None:
        """Connect in the background; paho reconnects by itself if the broker goes away."""
        gone = self._core.state_frame(self.gateway_id, online=False, now_ms=wall_ms())
        self._client.will_set(gone.topic, gone.payload, qos=1, retain=True)
        self._client.connect_async(self._host, self._port, keepalive=30)
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def publish(self, replies: Sequence[Outgoing]) -> None:
        """Called from the decision worker; paho's publish is thread-safe."""
        for reply in replies:
            info = self._client.publish(reply.topic, reply.payload, qos=1, retain=reply.retain)
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                self._metrics.replies_dropped.inc()
                log.warning("reply to %s dropped: the broker client's queue is full", reply.topic)

    def stop_receiving(self, timeout: float = 2) -> None:
        """Leave the shared subscriptions, so the broker hands readers' frames to the other
        gateways while this one answers what it already took (a clean stop loses no tap)."""
        if self._connected.is_set():
            left = threading.Event()
            self._client.on_unsubscribe = lambda *_: left.set()
            self._client.unsubscribe(list(_READER_TOPICS))
            left.wait(timeout)

    def stop(self) -> None:
        """Say offline (a clean disconnect discards the will), then disconnect."""
        if self._connected.is_set():
            gone = self._core.state_frame(self.gateway_id, online=False, now_ms=wall_ms())
            self._client.publish(gone.topic, gone.payload, qos=1, retain=True).wait_for_publish(2)
        self._client.disconnect()
        self._client.loop_stop()

    # -- paho's callbacks, on its network thread ----------------------------------------------

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
        for topic in _SUBSCRIPTIONS:
            client.subscribe(topic, qos=1)
        here = self._core.state_frame(self.gateway_id, online=True, now_ms=wall_ms())
        client.publish(here.topic, here.payload, qos=1, retain=True)
        if self.worker is not None:
            self.worker.connected()  # every reader's Config, retained, again
        self._connected.set()
        log.info("connected to mqtt://%s:%d as %s", self._host, self._port, self.gateway_id)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        self._gateways_online.clear()  # the retained states come again on reconnect
        log.warning("broker connection lost (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        gateway = topics.parse_gateway_state(msg.topic)
        if gateway is not None:
            self._on_gateway_state(gateway, bytes(msg.payload))
            return
        frame = Frame(msg.topic, bytes(msg.payload), wall_ms(), time.monotonic_ns())
        assert self.worker is not None, "the composition root sets the worker before start()"
        # Only births and deaths arrive on reader topics other than evt (the core checks the
        # rest); they may use the queue's reserve, and are not rate limited.
        session = not msg.topic.endswith(_EVT_SUFFIX)
        if not session and not self._limits.allow(_reader_of(msg.topic), time.monotonic()):
            self._metrics.rate_limited.inc()
            self.worker.refuse(frame, "busy")
        elif not self.worker.submit(frame, session=session):
            self._metrics.refused_busy.inc()
            self.worker.refuse(frame, "busy")

    def _on_gateway_state(self, gateway: str, payload: bytes) -> None:
        try:
            state = decode(payload)
        except ProtocolError:
            state = None
        if isinstance(state, GatewayState) and state.online:
            self._gateways_online.add(gateway)
        else:  # offline, or an empty retained message clearing the topic
            self._gateways_online.discard(gateway)


def _reader_of(topic: str) -> str:
    """The reader level of ``bl/1/<reader>/evt`` (what the broker's ACL vouches for)."""
    parsed = topics.parse(topic)
    return parsed[0] if parsed is not None else topic
