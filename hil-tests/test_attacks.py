"""Issue 7's attacks, from outside: a stranger on the venue network against the real Mosquitto
(locked: tools/broker.py), two real gateway processes and the real firmware on MicroPython.

A stranger is either anonymous, or holds a valid identity of some other reader (a reader's
config.json lifted from a board, say). Each test shows what a guest or an operator would
notice: the light the reader shows, the reader staying online, the clock in the taps the store
records. Deliveries are what count: Mosquitto's plain acl_file answered a SUBSCRIBE it would
never deliver on "granted" (FIELD-NOTES); its access plugin, which the broker runs now, refuses
it in the SUBACK, and the share-group test checks both.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from bandlink.gateway.store import Store
from bandlink.gateway.venue import DEMO_BANDS, UNKNOWN_BAND_UID
from bandlink.protocol import (
    GATE,
    IN,
    OUT,
    Command,
    GatewayState,
    Result,
    Tap,
    decode,
    encode,
    messages,
    reasons,
    topics,
)
from bandlink.tools.access import Login
from bandlink.tools.broker import MESSAGE_SIZE_LIMIT, MosquittoBroker
from bandlink.tools.gatewayproc import GatewayGroup
from bandlink.tools.simreader import SimReader
from bandlink.tools.waiting import wait_for
from bandlink.tools.wire import Connected, WireReaders, connect

ADA = DEMO_BANDS["Ada"]
REFUSED_BANDS = {  # band -> why the gateway refuses it
    DEMO_BANDS["Dara"]: "band_blocked",
    UNKNOWN_BAND_UID: "unknown_band",
    DEMO_BANDS["Bo"]: "no_valid_ticket",
}
STRANGER_ID = "gate-2"  # the exit reader of the demo venue: a real reader's identity
SETTLE_S = 0.3  # for a frame the broker took (PUBACK) to reach every subscriber
DAY_MS = 86_400_000
HOUR_MS = 3_600_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Stranger:
    """A client of the stranger's: records everything delivered to it; ``forge`` answers every
    tap it sees with a green Result, as the issue's attacker did."""

    def __init__(self, broker: MosquittoBroker, login: Login | None, **options: object) -> None:
        self.delivered: list[paho.MQTTMessage] = []
        self.forge = False
        self.forged = 0
        self._lock = threading.Lock()
        self.link: Connected = connect(broker, login, on_message=self._on_message, **options)  # type: ignore[arg-type]

    @property
    def client(self) -> paho.Client:
        return self.link.client

    def subscribe(self, *filters: str) -> list[bool]:
        """Subscribe; for each filter, whether the broker granted it (from the SUBACK)."""
        done = threading.Event()
        granted: list[bool] = []

        def on_subscribe(_c: object, _u: object, _mid: int, codes: list[Any], _p: object) -> None:
            granted.extend(not code.is_failure for code in codes)
            done.set()

        self.client.on_subscribe = on_subscribe
        self.client.subscribe([(f, 1) for f in filters])
        assert done.wait(5), "no SUBACK"
        return granted

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish and wait for the broker's PUBACK: it has taken (or dropped) the frame."""
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def taps_seen(self) -> list[Tap]:
        with self._lock:
            frames = [decode(m.payload) for m in self.delivered if m.topic.endswith("/evt")]
        return [f for f in frames if isinstance(f, Tap)]

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.delivered.append(msg)
        if not self.forge or not msg.topic.endswith("/evt"):
            return
        tap = decode(msg.payload)
        if isinstance(tap, Tap) and tap.reader is not None:
            green = Result(
                reader=tap.reader,
                ts=now_ms(),
                corr=tap.mid,
                granted=True,
                reason=0,
                pattern=messages.GREEN,
            )
            client.publish(topics.reader_topic(tap.reader, topics.RES), encode(green), qos=1)
            self.forged += 1

    def close(self) -> None:
        self.link.close()


@pytest.fixture
def stranger(broker: MosquittoBroker) -> Iterator[Stranger]:
    """A stranger holding gate-2's identity, on MQTT 5 (as the gateways, for $share)."""
    login = broker.reader_login(STRANGER_ID)
    one = Stranger(broker, login, protocol=MQTTProtocolVersion.MQTTv5)
    assert not one.link.refused, one.link.reason
    yield one
    one.close()


def anonymous_is_refused(broker: MosquittoBroker, **options: object) -> None:
    link = connect(broker, None, **options)  # type: ignore[arg-type]
    try:
        assert link.refused and link.reason is not None, "an anonymous client got in"
        assert str(link.reason) == "Not authorized"
    finally:
        link.close()


def recorded(store: Store) -> list[tuple[str, bool, str | None, str]]:
    """(reader, granted, direction, reason) of every tap recorded, oldest first."""
    taps = reversed(store.recent_taps(1000))
    return [(t.reader_id, t.granted, t.direction, t.reason) for t in taps]


# -- who may connect --------------------------------------------------------------------------


def test_no_anonymous_client_and_no_wrong_password_gets_in(broker: MosquittoBroker) -> None:
    anonymous_is_refused(broker)
    anonymous_is_refused(broker, client_id="gate-1")
    anonymous_is_refused(broker, protocol=MQTTProtocolVersion.MQTTv5)
    real = broker.reader_login("gate-1")
    for wrong in (Login("gate-1", real.password[:-1] + "x"), Login("gate-7", real.password)):
        link = connect(broker, wrong)
        assert link.refused, f"{wrong.user} got in with a wrong password"
        link.close()
    ok = connect(broker, real)
    assert not ok.refused, ok.reason
    ok.close()


# -- issue 7: answering taps from the shared subscription ------------------------------------


def test_a_stranger_cannot_answer_taps_so_refused_bands_stay_red(
    broker: MosquittoBroker,
    gateway: GatewayGroup,
    store: Store,
    entry_reader: SimReader,
    stranger: Stranger,
) -> None:
    """Issue: joining $share/gateway/... and answering green gave refused bands 22 greens in
    30 taps. Now the stranger (any reader's identity) is handed no tap to answer, and its blind
    green answers on gate-1's res never reach gate-1: no refused band is ever shown green."""
    anonymous_is_refused(broker, protocol=MQTTProtocolVersion.MQTTv5)
    stranger.forge = True
    stranger.subscribe(topics.EVENTS_SHARED, topics.reader_topic("+", topics.EVT), "bl/1/#")
    blind = Result(
        reader="gate-1",
        ts=now_ms(),
        corr=os.urandom(16),
        granted=True,
        reason=0,
        pattern=messages.GREEN,
    )
    stranger.publish(topics.reader_topic("gate-1", topics.RES), encode(blind))
    bands = list(REFUSED_BANDS) * 10
    shown = [entry_reader.tap(band).pattern for band in bands]
    assert shown == ["red"] * 30  # not one "try again": no tap went to the stranger either
    assert stranger.taps_seen() == [] and stranger.forged == 0
    # Every tap reached a real gateway, and each was refused for its own reason.
    assert recorded(store) == [("gate-1", False, "in", REFUSED_BANDS[b]) for b in bands]


def test_a_reader_identity_cannot_join_the_gateways_share_group(
    broker: MosquittoBroker, gateway: GatewayGroup, stranger: Stranger
) -> None:
    """Mosquitto's plain acl_file let this subscription in (and then dropped, unread, each tap
    the broker handed the stranger: 1 in N+1 went unanswered, "try again"); the broker's
    access plugin refuses it, so every tap reaches a gateway and is answered."""
    assert stranger.subscribe(topics.EVENTS_SHARED, topics.BIRTHS_SHARED) == [False, False]
    gate_1 = WireReaders(broker, ["gate-1"])
    try:
        mids = [gate_1.send("gate-1", ADA, n % 2) for n in range(20)]
        answered = wait_for(
            lambda: [m for m in mids if m in gate_1.results], lambda got: len(got) == len(mids)
        )
    finally:
        gate_1.close()
    assert len(answered) == 20, f"{20 - len(answered)} of 20 taps swallowed"


def test_a_reader_identity_gets_no_other_readers_taps_or_results(
    broker: MosquittoBroker, gateway: GatewayGroup, stranger: Stranger
) -> None:
    """Deliveries, not SUBACKs: gate-1's taps are answered (so they flowed past the stranger's
    subscriptions) while nothing of gate-1's is delivered to the stranger."""
    stranger.subscribe(
        topics.reader_topic("+", topics.EVT),
        topics.reader_topic("gate-1", topics.EVT),
        topics.reader_topic("gate-1", topics.RES),
        topics.reader_topic("+", topics.RES),
        "$share/elsewhere/bl/1/+/evt",  # a share group of its own gets no copies either
        "#",
    )
    gate_1 = WireReaders(broker, ["gate-1"])
    try:
        answers = [gate_1.wait([gate_1.send("gate-1", ADA, IN)])[0] for _ in range(10)]
    finally:
        gate_1.close()
    # gate-1 is an entry gate: Ada is let in once, then refused as inside, by a real gateway.
    assert [a.reason for a in answers] == [reasons.OK] + [reasons.ALREADY_INSIDE] * 9
    time.sleep(SETTLE_S)
    foreign = [m.topic for m in stranger.delivered if not m.topic.startswith("bl/1/$gw/")]
    assert foreign == []


# -- issue 7: a forged exit -------------------------------------------------------------------


def test_a_forged_exit_does_not_let_a_band_in_twice(
    broker: MosquittoBroker,
    gateway: GatewayGroup,
    store: Store,
    entry_reader: SimReader,
) -> None:
    """Issue: publishing an exit on the exit reader's evt let a band in twice. A stranger with
    an entry gate's identity (gate-3) tries it on gate-2's topic (the broker drops it), on its
    own topic in gate-2's name (the gateway drops it), and as itself (refused: not an exit
    gate of this venue). Ada, inside, stays inside: her second entry is red."""
    login = broker.reader_login("gate-3")
    thief = Stranger(broker, login)
    thief.subscribe(topics.reader_topic("gate-3", topics.RES))
    try:
        assert entry_reader.tap(ADA).pattern == "green"
        forged = Tap(
            reader="gate-2", ts=now_ms(), mid=os.urandom(16), uid=ADA, role=GATE, direction=OUT
        )
        thief.publish(topics.reader_topic("gate-2", topics.EVT), encode(forged))
        thief.publish(topics.reader_topic("gate-3", topics.EVT), encode(forged))
        wait_for(gateway.log, lambda log: "dropped frame from gate-3: reader_mismatch" in log)
        as_itself = Tap(
            reader="gate-3", ts=now_ms(), mid=os.urandom(16), uid=ADA, role=GATE, direction=OUT
        )
        thief.publish(topics.reader_topic("gate-3", topics.EVT), encode(as_itself))
        wait_for(lambda: len(thief.delivered), lambda n: n >= 1)
        (answer,) = (decode(m.payload) for m in thief.delivered)
        assert isinstance(answer, Result) and not answer.granted
        anonymous_is_refused(broker)
        seen = entry_reader.tap(ADA)
    finally:
        thief.close()
    assert (seen.pattern, seen.text) == ("red", "Already inside")
    taps = recorded(store)
    assert [t for t in taps if t[0] == "gate-1"] == [
        ("gate-1", True, "in", "ok"),
        ("gate-1", False, "in", "already_inside"),
    ]
    assert not any(granted and direction == "out" for _, granted, direction, _ in taps)


# -- issue 7: a retained "gateway offline" -----------------------------------------------------


def _retained_states(broker: MosquittoBroker) -> dict[str, bool]:
    """What a reader connecting now is told about each gateway: the retained states."""
    spy = Stranger(broker, broker.reader_login("gate-9"))
    try:
        spy.subscribe(topics.GATEWAY_STATES)
        time.sleep(SETTLE_S)
        states = {}
        for message in spy.delivered:
            state = decode(message.payload)
            assert isinstance(state, GatewayState) and message.retain
            states[message.topic] = state.online
        return states
    finally:
        spy.close()


def test_a_stranger_cannot_say_the_gateways_are_offline(
    broker: MosquittoBroker,
    gateway: GatewayGroup,
    entry_reader: SimReader,
    stranger: Stranger,
    tmp_path: Path,
) -> None:
    """Issue: a retained "offline" on bl/1/$gw/<id>/state made every reader show "try again"
    while the gateway ran. The stranger publishes one for each gateway, and for a made-up one,
    retained, and leaves one as its will (then vanishes without a goodbye). The readers, the
    one running and one that starts afterwards, still get their green."""
    offline = encode(GatewayState(ts=now_ms(), online=False))
    targets = [*(topics.gateway_state_topic(m.gateway_id) for m in gateway.members)]
    targets.append(topics.gateway_state_topic("gw-9"))
    for topic in targets:
        stranger.publish(topic, offline, retain=True)
    will = Stranger(broker, broker.reader_login("gate-3"), will=(targets[0], offline, True))
    assert not will.link.refused  # a valid identity: its will is what is tried here
    will.client.loop_stop()
    sock = will.client.socket()
    assert sock is not None
    sock.close()  # no DISCONNECT: the broker publishes the will (where the ACL lets it)
    anonymous_is_refused(broker, will=(targets[1], offline, True))
    stranger.close()  # gate-2's identity goes back to its reader, which starts below
    time.sleep(SETTLE_S)
    assert _retained_states(broker) == {t: True for t in targets[:2]}
    assert entry_reader.tap(ADA).pattern == "green"
    login = broker.reader_login("gate-2")
    with SimReader("gate-2", broker.url, tmp_path, direction="out", login=login) as newcomer:
        newcomer.wait_online()
        assert newcomer.tap(ADA).pattern == "green"  # decided, not "try again"


# -- issue 7: TIME_SYNC ------------------------------------------------------------------------


def _time_sync(time_ms: int) -> bytes:
    sync = Command(
        reader="gate-1", ts=now_ms(), mid=os.urandom(16), op=messages.TIME_SYNC, time_ms=time_ms
    )
    return encode(sync)


def test_a_stranger_cannot_set_a_readers_clock(
    broker: MosquittoBroker,
    gateway: GatewayGroup,
    store: Store,
    entry_reader: SimReader,
    stranger: Stranger,
) -> None:
    """Issue: anyone's TIME_SYNC on bl/1/<reader>/cmd set the reader's clock. A day back would
    make every tap stale ("try again", nothing recorded). The stranger's is dropped: the taps
    keep the true time. The same command from a gateway's identity does move the clock (a
    harmless hour ahead here), so the test can see a change when there is one."""
    command_topic = topics.reader_topic("gate-1", topics.CMD)
    stranger.publish(command_topic, _time_sync(now_ms() - DAY_MS))
    anonymous_is_refused(broker)
    time.sleep(SETTLE_S)
    before = now_ms()
    assert entry_reader.tap(ADA).pattern == "green"
    (first,) = store.recent_taps(1)
    assert abs(first.reader_ts_ms - before) < 5_000

    real_gateway = Stranger(broker, broker.gateway_login("gw-1b"))
    try:
        real_gateway.publish(command_topic, _time_sync(now_ms() + HOUR_MS))
    finally:
        real_gateway.close()
    time.sleep(SETTLE_S)
    before = now_ms()
    assert entry_reader.tap(DEMO_BANDS["Emil"]).pattern == "green"
    (second,) = store.recent_taps(1)
    assert abs(second.reader_ts_ms - (before + HOUR_MS)) < 5_000


# -- issue 7: taking over a reader's session ----------------------------------------------------


def test_a_stranger_cannot_knock_a_reader_off_with_its_client_id(
    broker: MosquittoBroker, gateway: GatewayGroup, entry_reader: SimReader
) -> None:
    """Issue: connecting with client id gate-1 knocked the real reader off. The broker makes
    the client id the user name, so the stranger's gate-1 is its own gate-2 session, and an
    anonymous one is refused; the real gate-1 stays online and serves its guests."""
    impostor = connect(broker, broker.reader_login("gate-3"), client_id="gate-1")
    assert not impostor.refused
    time.sleep(SETTLE_S)
    anonymous_is_refused(broker, client_id="gate-1")
    attempts = [connect(broker, broker.reader_login(STRANGER_ID), client_id="gate-1")]
    time.sleep(SETTLE_S)
    try:
        assert entry_reader.link_up.is_set() and entry_reader.link_downs == 0
        assert entry_reader.tap(ADA).pattern == "green"
        assert entry_reader.link_downs == 0
    finally:
        impostor.close()
        for attempt in attempts:
            attempt.close()
    assert "gate-1 already connected" not in broker.log()


# -- the message size limit -------------------------------------------------------------------


def test_an_oversize_message_never_reaches_a_gateway(
    broker: MosquittoBroker, gateway: GatewayGroup
) -> None:
    """Frames over the protocol's 4096 bytes are dropped by the broker. Small garbage sent
    after them, by the same client, reaches both gateways (the broker keeps one client's
    frames in order, per subscriber): anything big would have arrived before it."""
    sender = WireReaders(broker, [STRANGER_ID])
    try:
        for size in (MESSAGE_SIZE_LIMIT + 1, 5_000, 256 * 1024):
            sender.publish(STRANGER_ID, bytes([0xA1]) * size)
        marker = f"dropped frame from {STRANGER_ID}: malformed"

        def both_saw_a_marker() -> bool:
            sender.publish(STRANGER_ID, b"\xff\x00garbage")
            return all(marker in m.log() for m in gateway.members)

        assert wait_for(both_saw_a_marker, bool)
    finally:
        sender.close()
    assert "too_large" not in gateway.log()
    time.sleep(SETTLE_S)
    assert sender.answers == []


def test_a_gateway_identity_speaks_only_for_itself(
    broker: MosquittoBroker, gateway: GatewayGroup, entry_reader: SimReader
) -> None:
    """A gateway's credentials, lifted, still cannot say the OTHER gateways are offline."""
    rogue = Stranger(broker, broker.gateway_login("gw-9"))
    try:
        offline = encode(GatewayState(ts=now_ms(), online=False))
        for member in gateway.members:
            rogue.publish(topics.gateway_state_topic(member.gateway_id), offline, retain=True)
    finally:
        rogue.close()
    time.sleep(SETTLE_S)
    assert set(_retained_states(broker).values()) == {True}
    assert entry_reader.tap(ADA).pattern == "green"
