# firmware/mqtt.py against a live Mosquitto, on the real MicroPython. Run by
# firmware/tests/test_mqtt_client.py, one test per process: `micropython broker_mqtt.py test_x`.
# The broker's port comes in BANDLINK_TEST_BROKER_PORT, and every client's credentials in
# BANDLINK_TEST_LOGINS, "name user password,...", made by test_mqtt_client.py for each name this
# file passes to client(), connected_client() or login() (the broker makes the user name the
# client id). Tests named test_reader_* log in as readers, under the venue ACL (SPEC,
# Transport); the others as test harnesses, which may use topics of their own. A paho client
# on the CPython side listens on bltest/ctl/... and acts on the broker for us (see
# test_mqtt_client.py):
#   bltest/ctl/restart         restart the broker on the same port
#   bltest/ctl/freeze          SIGSTOP the broker for <payload> ms, then SIGCONT
#   bltest/ctl/paho            paho publishes b"from paho" at QoS 1 to the topic in the payload
import asyncio
import os
import sys
from time import ticks_diff, ticks_ms

import mptest
from mqtt import MQTTClient, MQTTError, ResilientClient

PORT = int(os.getenv("BANDLINK_TEST_BROKER_PORT") or 0)
HOST = "127.0.0.1"
_LOGINS = "," + (os.getenv("BANDLINK_TEST_LOGINS") or "") + ","  # parsed on use: 64 KiB heap


def login(name):
    """The credentials of identity `name`, as MQTTClient keywords."""
    at = _LOGINS.find("," + name + " ")
    if at < 0:
        raise KeyError(name)
    _, user, password = _LOGINS[at + 1 : _LOGINS.find(",", at + 1)].split(" ")
    return {"user": user, "password": password}


def client(name, port=PORT, kind=MQTTClient, **kwargs):
    """A client logged in as `name`, with that name as its client id."""
    kwargs.update(login(name))
    return kind(name, HOST, port, **kwargs)


class Inbox:
    """Collects what on_message delivers (copied: the payload view dies after the call)."""

    def __init__(self):
        self.got = []
        self.event = asyncio.Event()

    def __call__(self, topic, payload, retained):
        self.got.append((topic, bytes(payload), retained))
        self.event.set()

    async def wait(self, count, ms=3000):
        start = ticks_ms()
        while len(self.got) < count:
            left = ms - ticks_diff(ticks_ms(), start)
            assert left > 0, "timed out with %r" % (self.got,)
            self.event.clear()
            try:
                await asyncio.wait_for_ms(self.event.wait(), left)
            except asyncio.TimeoutError:
                pass
        return self.got


async def until(predicate, ms=5000):
    start = ticks_ms()
    while not predicate():
        assert ticks_diff(ticks_ms(), start) < ms, "condition not met in %d ms" % ms
        await asyncio.sleep_ms(10)


async def connected_client(name, **kwargs):
    c = client(name, **kwargs)
    c.on_message = Inbox()
    await c.connect()
    return c


async def test_roundtrip_qos0_and_qos1():
    c = await connected_client("rt")
    assert c.connected
    assert await c.subscribe("rt/#", 1) == 1
    assert await c.publish("rt/a", b"zero") == 0
    pid = await c.publish("rt/b", bytearray(b"one"), qos=1)
    assert pid > 0
    await c.publish(b"rt/c", memoryview(b"xview")[1:], qos=1)
    got = await c.on_message.wait(3)
    assert got == [("rt/a", b"zero", False), ("rt/b", b"one", False), ("rt/c", b"view", False)], got
    await until(lambda: not c.unacked)  # the broker PUBACKed both
    await c.publish("rt/retained", b"kept", retain=True)
    await c.subscribe("rt/retained")  # a new subscription gets the retained copy
    got = await c.on_message.wait(5)
    assert got[4] == ("rt/retained", b"kept", True), got
    await c.publish("rt/retained", b"", retain=True)  # an empty retained message clears it
    try:
        await c.publish("rt/big", bytes(1100))
        raise AssertionError("a publish larger than bufsize did not raise")
    except ValueError:
        pass
    await c.disconnect()
    assert not c.connected


class Trickle:
    """Stands in for the socket: takes at most 7 bytes per write, like a full send buffer."""

    def __init__(self, sock):
        self.sock = sock

    def write(self, buf, start=0, length=None):
        if length is None:
            length = len(buf) - start
        return self.sock.write(buf, start, min(length, 7))

    def close(self):
        self.sock.close()


async def test_partial_writes_complete_in_order():
    c = await connected_client("trickle")
    await c.subscribe("trickle/#", 1)
    c._sock = Trickle(c._sock)

    async def sender(name):
        for i in range(5):
            await c.publish("trickle/" + name, ("%s-%d" % (name, i)).encode(), qos=i % 2)

    await asyncio.gather(sender("a"), sender("b"), sender("c"))
    got = await c.on_message.wait(15)
    for name in ("a", "b", "c"):
        mine = [payload for topic, payload, _ in got if topic == "trickle/" + name]
        assert mine == [("%s-%d" % (name, i)).encode() for i in range(5)], got
    await c.disconnect()


async def test_publish_while_down_raises_at_once():
    c = client("down")
    start = ticks_ms()
    try:
        await c.publish("x", b"y")
        raise AssertionError("publish while down did not raise")
    except OSError:
        pass
    assert ticks_diff(ticks_ms(), start) < 50


async def test_connect_refused_raises_oserror():
    c = client("refused", port=1)  # nothing listens on port 1
    try:
        await c.connect()
        raise AssertionError("connect did not raise")
    except OSError:
        pass
    assert not c.connected


async def test_an_empty_client_id_is_refused_with_its_code():
    # A protocol-level refusal (test_locked_* has the bad passwords): an empty client id with
    # clean=False must be refused (return code 2, identifier rejected).
    c = MQTTClient("", HOST, PORT, **login("empty-id"))
    try:
        await c.connect(clean=False)
        raise AssertionError("connect did not raise")
    except MQTTError as exc:
        assert exc.args[0] == 2, exc.args


async def test_qos1_from_paho_is_acked():
    # With a persistent session the broker redelivers every QoS 1 message that was not
    # PUBACKed when the client comes back. So: receive, go away, come back, expect nothing.
    c = client("acker")
    inbox = c.on_message = Inbox()
    await c.connect(clean=False)
    await c.subscribe("paho/acker", 1)
    await c.publish("bltest/ctl/paho", b"paho/acker")
    got = await inbox.wait(1)
    assert got == [("paho/acker", b"from paho", False)], got
    await c.disconnect()
    await c.connect(clean=False)
    await asyncio.sleep_ms(500)
    assert len(inbox.got) == 1, inbox.got
    await c.disconnect()

    # Control: the same with the PUBACK suppressed must be redelivered, or the test proves nothing.
    n = client("non-acker")
    inbox = n.on_message = Inbox()

    async def no_puback(pid):
        pass

    n._send_puback = no_puback
    await n.connect(clean=False)
    await n.subscribe("paho/non-acker", 1)
    await n.publish("bltest/ctl/paho", b"paho/non-acker")
    await inbox.wait(1)
    await n.disconnect()
    await n.connect(clean=False)
    await inbox.wait(2)
    await n.disconnect()


async def test_oversize_incoming_is_dropped_and_counted():
    small = await connected_client("small", bufsize=128)
    big = await connected_client("big")
    await small.subscribe("size/#", 1)
    await big.publish("size/huge", bytes(600), qos=1)  # larger than small's buffer
    await big.publish("size/huge0", bytes(300), qos=0)
    await big.publish("size/ok", b"fits", qos=1)
    got = await small.on_message.wait(1)
    assert got == [("size/ok", b"fits", False)], got
    assert small.dropped == 2
    assert small.connected
    await small.publish("size/after", b"still works")
    await small.on_message.wait(2)
    await small.disconnect()
    await big.disconnect()


async def test_restart_reconnects_and_resubscribes():
    c = client("phoenix", kind=ResilientClient, keepalive=5)
    inbox = c.on_message = Inbox()
    ups = []
    downs = []

    async def on_up():
        ups.append(ticks_ms())
        await c.subscribe("phoenix/#")

    async def on_down():
        downs.append(ticks_ms())
        try:  # publish while down fails fast: the application decides what to do
            await c.publish("phoenix/lost", b"x")
            raise AssertionError("publish while down did not raise")
        except OSError:
            pass

    c.on_up, c.on_down = on_up, on_down
    task = asyncio.create_task(c.keep_connected())
    await asyncio.wait_for_ms(c.wait_connected(), 3000)
    await c.publish("bltest/ctl/restart", b"")
    await until(lambda: len(ups) == 2, 8000)
    assert len(downs) == 1
    await c.wait_connected()
    await c.publish("phoenix/after", b"back")
    got = await inbox.wait(1)
    assert got == [("phoenix/after", b"back", False)], got
    await c.disconnect()
    await asyncio.wait_for_ms(task, 1000)  # keep_connected returns after disconnect()
    assert len(downs) == 2


async def test_keep_connected_survives_no_broker():
    c = client("lonely", port=1, kind=ResilientClient)
    task = asyncio.create_task(c.keep_connected())
    await asyncio.sleep_ms(1200)  # several refused attempts with backoff
    assert not task.done(), "keep_connected ended"
    assert not c.connected
    task.cancel()
    await asyncio.sleep_ms(10)


async def test_will_published_when_socket_dies():
    watcher = await connected_client("watcher")
    await watcher.subscribe("will/#", 1)
    polite = await connected_client("polite", will=("will/polite", b"gone", 1, False))
    await polite.disconnect()  # DISCONNECT: the broker must discard the will
    rude = await connected_client("rude", will=("will/rude", "gone", 1, False))
    rude._close()  # the socket dies without DISCONNECT, as when a reader loses power
    got = await watcher.on_message.wait(1)
    assert got == [("will/rude", b"gone", False)], got
    await asyncio.sleep_ms(200)
    assert len(watcher.on_message.got) == 1
    await watcher.disconnect()


async def test_pings_keep_an_idle_link_up():
    # Mosquitto 2.0.11 checks keepalives only every ~6 s (measured: a silent client with
    # keepalive 1 is dropped 1.5-7.5 s after its last packet), so rather than idling that long
    # this counts the PINGREQs, and checks that the PINGRESPs keep the link alive.
    c = await connected_client("idle", keepalive=1)
    await c.subscribe("idle/#")
    pings = []
    write = c._write

    def counting_write(start, end, buf=None):
        if buf == b"\xc0\x00":
            pings.append(ticks_ms())
        return write(start, end, buf)

    c._write = counting_write
    await asyncio.sleep_ms(3000)
    assert c.connected
    assert 4 <= len(pings) <= 7, pings  # one per keepalive/2 of silence
    await c.publish("idle/x", b"awake")
    await c.on_message.wait(1)
    await c.disconnect()


async def test_silent_broker_is_declared_dead():
    c = client("watchful", kind=ResilientClient, keepalive=1)
    downs = []

    async def on_down():
        downs.append(ticks_ms())

    c.on_down = on_down
    task = asyncio.create_task(c.keep_connected())
    await asyncio.wait_for_ms(c.wait_connected(), 3000)
    frozen = ticks_ms()
    await c.publish("bltest/ctl/freeze", b"2500")
    await until(lambda: downs, 4000)
    took = ticks_diff(downs[0], frozen)
    assert 1000 <= took <= 2500, took  # 1.5 x keepalive, plus the ping task's tick
    await asyncio.wait_for_ms(c.wait_connected(), 8000)  # back after the broker thaws
    await c.disconnect()
    await asyncio.wait_for_ms(task, 1000)


# ---- logged in as a reader: the venue ACL ----


async def test_reader_with_its_login_comes_up():
    c = await connected_client("gate-9")
    assert await c.subscribe("bl/1/gate-9/cmd") == 1
    await c.publish("bl/1/gate-9/evt", b"x", qos=1)
    await until(lambda: not c.unacked)
    await c.disconnect()


async def test_reader_with_a_wrong_password_is_refused_and_said():
    c = ResilientClient("gate-9", HOST, PORT, user="gate-9", password="not-the-password")
    task = asyncio.create_task(c.keep_connected())
    await until(lambda: c.last_error is not None)
    assert c.last_error == "refused by the broker: 5 not authorized", c.last_error
    assert not c.connected
    task.cancel()
    await asyncio.sleep_ms(10)


async def test_reader_without_a_login_is_refused():
    c = MQTTClient("anonymous", HOST, PORT)
    try:
        await c.connect()
        raise AssertionError("an anonymous client came in")
    except MQTTError as exc:
        assert exc.args[0] == 5, exc.args
    assert c.last_error == "refused by the broker: 5 not authorized", c.last_error


if not PORT:
    print("BANDLINK_TEST_BROKER_PORT is not set: run through test_mqtt_client.py")
    sys.exit(1)
mptest.main(globals())
