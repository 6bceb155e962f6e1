"""A gateway played by paho, for tests of the real firmware (``SimReader``, the MicroPython unix
port) against a private Mosquitto: it records what the reader sends, answers the taps it is told
to answer, and publishes Configs and Commands. No gateway process and no store run.

Every tap is recorded as it arrives, with the reader's flash files read at that moment
(``Arrival.taps_file``): what the reader had on flash before it published. Every Journal is
recorded and acknowledged (unless ``ack_journals`` is False), as the gateway does once its taps
are on record.

Every client logs in (SPEC, Transport: the broker refuses anonymous clients): paho as a gateway
identity, the reader as its reader id.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bandlink.protocol import (
    Birth,
    Command,
    Config,
    GatewayState,
    Journal,
    Result,
    Tap,
    decode,
    encode,
    messages,
    topics,
)
from bandlink.tools.broker import Login, MosquittoBroker
from bandlink.tools.simreader import SimReader

TS = 1_795_000_000_000


@dataclass(frozen=True)
class Arrival:
    tap: Tap
    at_ms: int  # this machine's wall clock when it came
    taps_file: bytes  # the reader's journal of operations, read when the tap came


def sim_reader(
    reader_id: str, broker: MosquittoBroker, workdir: Path, **settings: object
) -> SimReader:
    """The real firmware as a simulated reader (a gate unless ``role`` says otherwise) on this
    broker, logged in as itself."""
    login = broker.reader_login(reader_id)
    return SimReader(reader_id, broker.url, workdir, login=login, **settings)


def paho_gateway(broker: MosquittoBroker, gateway_id: str) -> paho.Client:
    """A paho client logged in as gateway process gateway_id (client id = its user name)."""
    return paho_as(broker.gateway_login(gateway_id))


def paho_harness(broker: MosquittoBroker, name: str) -> paho.Client:
    """A paho client logged in as test harness name: any bandlink or test topic."""
    return paho_as(broker.harness_login(name))


def paho_as(login: Login) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=login.user)
    client.username_pw_set(login.user, login.password)
    return client


class PlayedGateway:
    def __init__(self, broker: MosquittoBroker, reader_id: str, workdir: Path) -> None:
        self.reader_id = reader_id
        self.taps_path = workdir / f"{reader_id}.state.journal"  # SimReader's state_file + .journal
        self.answer: Callable[[Tap], Result | None] = lambda tap: None  # None: stay silent
        self.arrivals: list[Arrival] = []
        self.births: list[Birth] = []
        self.journals: list[Journal] = []
        self.ack_journals = True
        self.gateway_id = "bltest-gw"
        self._lock = threading.Condition()
        subscribed = threading.Event()
        self.client = paho_gateway(broker, self.gateway_id)
        self.client.on_connect = lambda c, *_: c.subscribe(
            [(self._topic(topics.EVT), 1), (self._topic(topics.BIRTH), 1)]
        )
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert subscribed.wait(5), "paho did not subscribe"

    def _topic(self, kind: str) -> str:
        return topics.reader_topic(self.reader_id, kind)

    # ---- what the reader sent ----

    def taps(self) -> list[Tap]:
        with self._lock:
            return [arrival.tap for arrival in self.arrivals]

    def sent(self, count: int, timeout: float = 2) -> list[Tap]:
        """The taps on the wire, once there are count (and no more a moment later)."""
        deadline = time.monotonic() + timeout
        while len(self.taps()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)
        taps = self.taps()
        assert len(taps) == count, taps
        return taps

    def wait_births(self, count: int, timeout: float = 10) -> Birth:
        """The count-th birth since this gateway started (waits for it)."""
        with self._lock:
            ok = self._lock.wait_for(lambda: len(self.births) >= count, timeout)
            assert ok, f"{len(self.births)} births, expected {count}"
            return self.births[count - 1]

    def uploaded(self, count: int, timeout: float = 10) -> list[Tap]:
        """The offline taps of every Journal, in order, once there are at least count."""

        def taps() -> list[Tap]:
            return [tap for journal in self.journals for tap in journal.taps]

        with self._lock:
            assert self._lock.wait_for(lambda: len(taps()) >= count, timeout), taps()
            return taps()

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        message = decode(msg.payload)
        if isinstance(message, Birth):
            with self._lock:
                self.births.append(message)
                self._lock.notify_all()
            return
        if isinstance(message, Journal):
            with self._lock:
                self.journals.append(message)
                self._lock.notify_all()
            if self.ack_journals:
                ack = Result(reader=self.reader_id, ts=TS, corr=message.mid, granted=True, reason=0)
                client.publish(self._topic(topics.RES), encode(ack), qos=1)
            return
        assert isinstance(message, Tap), message
        taps_file = self.taps_path.read_bytes() if self.taps_path.exists() else b""
        with self._lock:
            self.arrivals.append(Arrival(message, time.time_ns() // 1_000_000, taps_file))
        reply = self.answer(message)
        if reply is not None:
            client.publish(self._topic(topics.RES), encode(reply), qos=1)

    # ---- what the gateway sends ----

    def config(self, **fields: object) -> None:
        """A retained Config for the reader (version and role given by the caller)."""
        config = Config(reader=self.reader_id, ts=TS, **fields)
        info = self.client.publish(self._topic(topics.CFG), encode(config), qos=1, retain=True)
        info.wait_for_publish(5)

    def command(self, op: int, **fields: object) -> None:
        command = Command(reader=self.reader_id, ts=TS, mid=os.urandom(16), op=op, **fields)
        self.client.publish(self._topic(topics.CMD), encode(command), qos=1).wait_for_publish(5)

    def online(self, online: bool) -> None:
        """This gateway process's retained state: offline, the reader decides alone (it hears
        no other gateway); online again, it uploads its journal."""
        topic = topics.gateway_state_topic(self.gateway_id)
        state = GatewayState(ts=TS, online=online)
        self.client.publish(topic, encode(state), qos=1, retain=True).wait_for_publish(5)

    def rebirth(self, timeout: float = 10) -> Birth:
        """Ask for a birth and return it: a barrier, since the broker keeps our order."""
        with self._lock:
            seen = len(self.births)
        self.command(messages.REBIRTH)
        return self.wait_births(seen + 1, timeout)

    def next_session(self, bdseq: int, timeout: float = 20) -> Birth:
        """A birth of a session after bdseq (the reader reconnected); asks until one comes, as
        a birth published while this client was itself reconnecting is lost."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.client.is_connected():
                time.sleep(0.05)  # paho reconnects by itself; a publish now would only queue
                continue
            try:
                birth = self.rebirth(timeout=1)
            except (AssertionError, RuntimeError):
                continue  # the REBIRTH came before the reader was back, or paho dropped again
            if birth.bdseq is not None and birth.bdseq > bdseq:
                return birth
        raise AssertionError(f"no birth after session {bdseq} in {timeout} s")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def answer(tap: Tap, *, granted: bool, reason: int, pattern: int, **fields: object) -> Result:
    """The gateway's Result for ``tap`` (text, balance: as a real one would send them)."""
    return Result(
        reader=tap.reader,
        ts=TS,
        corr=tap.mid,
        seq=tap.seq,
        granted=granted,
        reason=reason,
        pattern=pattern,
        **fields,  # type: ignore[arg-type]
    )


def grant(tap: Tap, text: str = "Welcome") -> Result:
    return answer(tap, granted=True, reason=0, pattern=messages.GREEN, text=text)


def retry(tap: Tap) -> Result:
    """The busy refusal: nothing decided, tap again."""
    return answer(tap, granted=False, reason=24, pattern=messages.RETRY)


def refuse(tap: Tap, reason: int, text: str, pattern: int = messages.RED) -> Result:
    """A decision against the tap, with the reason code and the text the guest reads."""
    return answer(tap, granted=False, reason=reason, pattern=pattern, text=text)


def paid(tap: Tap, text: str, balance: int) -> Result:
    """A pos tap's charge made: the text the guest reads and the wallet's balance after it."""
    return answer(tap, granted=True, reason=0, pattern=messages.GREEN, text=text, balance=balance)
