"""firmware/mqtt.py on the real MicroPython (64 KiB heap) against a private Mosquitto.

Each ``test_*`` of ``broker_mqtt.py`` runs in its own micropython process with a fresh broker.
A paho client stands in for the outside world: it listens on ``bltest/ctl/#`` and restarts or
freezes the broker, or publishes to the reader, when the MicroPython side asks.

Every client logs in: each name broker_mqtt.py gives a client gets its own identity, a reader's
in ``test_reader_*`` (the venue ACL applies), a test harness's in the others (their topics are
their own), and paho a harness's too.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from gateway_double import paho_harness

from bandlink.tools.broker import MosquittoBroker
from bandlink.tools.micropython import REPO_ROOT, run_micropython

SCRIPT = Path(__file__).with_name("broker_mqtt.py")
# Each test's body, by name: from its def to the next line at column 0.
BODIES = dict(
    re.findall(r"^(?:async )?def (test_\w+)(.*?)(?=^\S)", SCRIPT.read_text(), re.MULTILINE | re.S)
)
TESTS = list(BODIES)
NAMES = [name for name in TESTS if not name.startswith("test_reader_")]
AS_READER = [name for name in TESTS if name.startswith("test_reader_")]
HEAP = "64k"


def clients(test: str) -> list[str]:
    """The client names a test gives (client("rt"), MQTTClient("down", ...), login("x"))."""
    found = re.findall(
        r"(?:client|login|MQTTClient|ResilientClient)\(\s*\"([\w.-]+)\"", BODIES[test]
    )
    return sorted(set(found))


class Controller:
    """paho on the CPython side, acting on the broker when the reader publishes to bltest/ctl/."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.broker = broker
        self.threads: list[threading.Thread] = []
        self.subscribed = threading.Event()
        self.client = paho_harness(broker, "bltest-ctl")
        self.client.on_connect = lambda c, *_: c.subscribe("bltest/ctl/#", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self.subscribed.wait(5), "paho did not subscribe"

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        action = msg.topic.rsplit("/", 1)[-1]
        if action == "paho":
            client.publish(msg.payload.decode(), b"from paho", qos=1)
        elif action == "restart":  # not on paho's thread: it is the one the restart cuts off
            self._spawn(self.broker.restart)
        elif action == "freeze":
            self._spawn(self._freeze, int(msg.payload) / 1000)

    def _freeze(self, seconds: float) -> None:
        pid = self.broker.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            threading.Event().wait(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def close(self) -> None:
        for thread in self.threads:
            thread.join(10)
        self.client.disconnect()  # first: then loop_stop() need not wait out its select()
        self.client.loop_stop()


@pytest.fixture
def controller(broker: MosquittoBroker) -> Iterator[Controller]:
    ctl = Controller(broker)
    yield ctl
    ctl.close()


def run_script(name: str, broker: MosquittoBroker, as_reader: bool = False) -> None:
    make = broker.reader_login if as_reader else broker.harness_login
    logins = ",".join(
        f"{c} {login.user} {login.password}" for c in clients(name) for login in [make(c)]
    )
    done = run_micropython(
        str(SCRIPT.relative_to(REPO_ROOT)),
        name,
        heap=HEAP,
        env={"BANDLINK_TEST_BROKER_PORT": str(broker.port), "BANDLINK_TEST_LOGINS": logins},
        timeout=60,
    )
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, output + "\n--- mosquitto log ---\n" + broker.log()
    assert "1 passed, 0 failed" in output, output


@pytest.mark.parametrize("name", NAMES)
def test_on_micropython(name: str, broker: MosquittoBroker, controller: Controller) -> None:
    run_script(name, broker)


@pytest.mark.parametrize("name", AS_READER)
def test_on_micropython_as_a_reader(name: str, broker: MosquittoBroker) -> None:
    run_script(name, broker, as_reader=True)


def test_script_has_tests() -> None:
    assert len(NAMES) >= 8, NAMES
    assert len(AS_READER) >= 3, AS_READER
    assert clients("test_will_published_when_socket_dies") == ["polite", "rude", "watcher"]
    assert clients("test_an_empty_client_id_is_refused_with_its_code") == ["empty-id"]
