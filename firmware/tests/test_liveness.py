"""One liveness topic per gateway process: the reader considers the gateway service gone only
when every gateway it has heard from says offline.

A paho client plays two (or more) gateway processes, publishing retained GatewayState frames on
``bl/1/$gw/<gateway>/state``; no gateway process runs. Two levels, both on the real MicroPython
against a private Mosquitto:

- ``liveness_mqtt.py``: the real ``app.Reader`` with its real MQTT link, one test per process,
  checking ``Reader.gateway_online``, ``bad_frames`` and the heap directly (logged in as test
  harnesses: the reader steers the test on ``bltest/ctl/gw``, and one paho client plays 200
  gateways);
- the whole firmware through ``SimReader``: what a guest sees, "try again" at once only when no
  gateway is online, and after the deadline while one still is (the reader logged in as itself,
  each gateway's state from a client logged in as that gateway, as the venue ACL requires).
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from gateway_double import paho_gateway, paho_harness, sim_reader

from bandlink.protocol import Command, Death, GatewayState, encode, messages, topics
from bandlink.tools.broker import MosquittoBroker
from bandlink.tools.micropython import REPO_ROOT, run_micropython
from bandlink.tools.simreader import Feedback
from bandlink.tools.waiting import wait_for

SCRIPT = Path(__file__).with_name("liveness_mqtt.py")
NAMES = re.findall(r"^(?:async )?def (test_\w+)", SCRIPT.read_text(), re.MULTILINE)
TS = 1_795_000_000_000
READER = "gate-1"
BAND = bytes.fromhex("04a1b2c3d4e5f6")
DEADLINE_MS = 400


def state_topic(gateway: str) -> str:
    # Built by hand, not with topics.gateway_state_topic: the tests also need invalid ids.
    return "bl/1/$gw/" + gateway + "/state"


class Gateways:
    """paho, publishing the gateway processes' retained states; on request of the MicroPython
    side (bltest/ctl/gw, see liveness_mqtt.py) or of the test itself: a harness client. With
    own_logins, each gateway's state comes from a client logged in as that gateway, as the ACL
    requires of real gateways (SPEC, Transport); else all from the harness client."""

    def __init__(self, broker: MosquittoBroker, own_logins: bool = False) -> None:
        self.broker = broker
        self.own_logins = own_logins
        self._clients: dict[str, paho.Client] = {}  # gateway id -> its own client
        self.births = 0
        self._lock = threading.Condition()
        self._subscribed = threading.Event()
        self.client = paho_harness(broker, "bltest-gateways")
        self.client.on_connect = lambda c, *_: c.subscribe(
            [("bltest/ctl/gw", 1), (topics.reader_topic(READER, topics.BIRTH), 1)]
        )
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._subscribed.wait(5), "paho did not subscribe"

    def publish(self, gateway: str, payload: bytes, wait: bool = True) -> None:
        """Retained on the gateway's state topic; wait=False on paho's own thread."""
        client = self._client_of(gateway) if self.own_logins else self.client
        info = client.publish(state_topic(gateway), payload, qos=1, retain=True)
        if wait:
            info.wait_for_publish(5)

    def state(self, gateway: str, online: bool, wait: bool = True) -> None:
        self.publish(gateway, encode(GatewayState(ts=TS, online=online)), wait)

    def barrier(self, timeout: float = 5) -> None:
        """Return once the reader has taken in everything published before: a REBIRTH command
        after it, answered by a birth (the broker keeps one client's messages in order)."""
        with self._lock:
            seen = self.births
        command = Command(reader=READER, ts=TS, mid=os.urandom(16), op=messages.REBIRTH)
        self.client.publish(topics.reader_topic(READER, topics.CMD), encode(command), qos=1)
        with self._lock:
            assert self._lock.wait_for(lambda: self.births > seen, timeout), "no birth"

    def wait_birth(self, timeout: float = 5) -> None:
        with self._lock:
            assert self._lock.wait_for(lambda: self.births > 0, timeout), "no birth"

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        if msg.topic != "bltest/ctl/gw":
            with self._lock:
                self.births += 1
                self._lock.notify_all()
            return
        what, gateway = msg.payload.decode().split(" ", 1)
        if what in ("on", "off"):
            self.state(gateway, what == "on", wait=False)
        elif what == "garbage":
            self.publish(gateway, b"\xff\x00garbage", wait=False)
        elif what == "clear":
            self.publish(gateway, b"", wait=False)
        elif what == "death":
            self.publish(gateway, encode(Death(reader=READER, ts=TS, bdseq=1)), wait=False)
        elif what in ("many-on", "many-off"):
            for i in range(int(gateway)):
                self.state("gw-%d" % i, what == "many-on", wait=False)
        else:
            raise AssertionError(what)

    def _client_of(self, gateway: str) -> paho.Client:
        client = self._clients.get(gateway)
        if client is None:
            client = self._clients[gateway] = paho_gateway(self.broker, gateway)
            client.connect(self.broker.host, self.broker.port)
            client.loop_start()
        return client

    def close(self) -> None:
        for client in (self.client, *self._clients.values()):
            client.disconnect()
            client.loop_stop()


@pytest.fixture
def gateways(broker: MosquittoBroker) -> Iterator[Gateways]:
    played = Gateways(broker)
    yield played
    played.close()


@pytest.fixture
def real_gateways(broker: MosquittoBroker) -> Iterator[Gateways]:
    played = Gateways(broker, own_logins=True)
    yield played
    played.close()


class Antenna:
    """The controller end of the simulated board (firmware/board/sim.py): takes its lines."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = "127.0.0.1:%d" % self.server.getsockname()[1]
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.server.accept()
        except OSError:
            return  # closed before the reader came
        with conn, conn.makefile("r", encoding="utf-8", errors="replace") as stream:
            self.lines.extend(line.rstrip("\n") for line in stream)

    def close(self) -> None:
        self.server.close()
        self._thread.join(5)


@pytest.mark.parametrize("name", NAMES)
def test_reader_on_micropython(
    name: str, broker: MosquittoBroker, gateways: Gateways, tmp_path: Path
) -> None:
    antenna = Antenna()
    login = broker.harness_login("live-1")  # reader live-1, steering the test on bltest/ctl
    try:
        done = run_micropython(
            str(SCRIPT.relative_to(REPO_ROOT)),
            name,
            env={
                "BANDLINK_TEST_BROKER_PORT": str(broker.port),
                "BANDLINK_TEST_ANTENNA": antenna.address,
                "BANDLINK_TEST_STATE": str(tmp_path / "reader.state"),
                "BANDLINK_TEST_LOGIN": login.user + " " + login.password,
            },
            timeout=60,
            # The script is compiled from source into the heap, beside the reader it drives:
            # 8k for its own code. The reader alone runs at DEFAULT_HEAP (SimReader, hil-tests).
            heap="168k",
        )
    finally:
        antenna.close()
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, output + "\n--- mosquitto log ---\n" + broker.log()
    assert "1 passed, 0 failed" in output, output
    assert "link up" in antenna.lines, antenna.lines  # the real simulated board was driven


def test_script_has_tests() -> None:
    assert len(NAMES) >= 2, NAMES


def at_once(seen: Feedback) -> bool:
    """The reader knew the gateway service is gone: it decided alone without waiting for a
    reply (red: this reader holds no band list)."""
    return seen.pattern == "red-offline" and seen.ms < DEADLINE_MS / 2


def waited(seen: Feedback) -> bool:
    """The reader asked a gateway (none answers here) and waited out its deadline."""
    return seen.pattern == "retry" and seen.ms >= DEADLINE_MS


def test_a_gate_decides_alone_at_once_only_when_no_gateway_is_online(
    broker: MosquittoBroker, real_gateways: Gateways, tmp_path: Path
) -> None:
    gateways = real_gateways
    gateways.state("gw-a", True)
    gateways.state("gw-b", True)
    with sim_reader(READER, broker, tmp_path, deadline_ms=DEADLINE_MS) as reader:
        reader.wait_online()
        gateways.wait_birth()
        gateways.barrier()
        assert waited(seen := reader.tap(BAND)), seen  # both online (retained before it came)

        gateways.state("gw-a", False)
        gateways.barrier()
        assert waited(seen := reader.tap(BAND)), seen  # gw-b still serves

        gateways.state("gw-b", False)
        assert at_once(seen := wait_for(lambda: reader.tap(BAND), at_once)), seen

        gateways.state("gw-b", True)
        gateways.barrier()
        assert waited(seen := reader.tap(BAND)), seen  # gw-b is back

        gateways.publish("gw-a", b"\xff\x00garbage")
        gateways.barrier()
        assert waited(seen := reader.tap(BAND)), seen  # garbage changes nothing

        gateways.state("gw-b", False)
        assert at_once(seen := wait_for(lambda: reader.tap(BAND), at_once)), seen
        gateways.publish("gw-b", b"\xff\x00garbage")
        gateways.barrier()
        assert at_once(seen := reader.tap(BAND)), seen  # still gone: garbage changes nothing
    assert "frame dropped on bl/1/$gw/gw-a/state malformed" in reader.log()
