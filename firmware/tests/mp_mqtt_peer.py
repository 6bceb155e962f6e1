# firmware/mqtt.py on the real MicroPython against a scripted peer in the same process: a raw
# TCP server that plays a broker doing what Mosquitto will not (a PUBLISH whose topic is not
# UTF-8), or refusing the way a strict broker does (closing the link on a bad CONNECT). Run by
# test_unix_port.py; broker_mqtt.py has the tests against a real Mosquitto.
import asyncio
from random import getrandbits
from time import ticks_diff, ticks_ms

import mptest
import mqtt
from mqtt import MQTTClient, ResilientClient

HOST = "127.0.0.1"


class Peer:
    """A one-script broker: `script(peer)` runs for each connection, with read()/send()."""

    def __init__(self, script):
        self.script = script
        self.packets = []  # (first byte, body) of every packet the client sent
        self.connections = 0
        self.port = 0
        self._server = None
        self._reader = self._writer = None

    async def start(self):
        for _ in range(20):  # the unix port cannot tell a port-0 server's port: pick one
            port = 20000 + getrandbits(14)
            try:
                self._server = await asyncio.start_server(self._serve, HOST, port)
            except OSError:
                continue
            self.port = port
            return self
        raise AssertionError("no free port")

    async def _serve(self, reader, writer):
        self.connections += 1
        self._reader, self._writer = reader, writer
        try:
            await self.script(self)
        except (OSError, EOFError):
            pass
        writer.close()
        await writer.wait_closed()  # MicroPython's close() does nothing; this closes the socket

    async def read(self):
        head = await self._reader.readexactly(2)
        n, shift, b = head[1] & 0x7F, 7, head[1]
        while b & 0x80:
            b = (await self._reader.readexactly(1))[0]
            n |= (b & 0x7F) << shift
            shift += 7
        packet = (head[0], await self._reader.readexactly(n) if n else b"")
        self.packets.append(packet)
        return packet

    async def send(self, first, body):
        self._writer.write(bytes((first, len(body))) + body)  # bodies here are < 128 bytes
        await self._writer.drain()

    def close(self):
        self._server.close()


def publish(topic, payload, pid=0):
    body = bytes((len(topic) >> 8, len(topic) & 0xFF)) + topic
    if pid:
        body += bytes((pid >> 8, pid & 0xFF))
    return (0x30 | (2 if pid else 0), body + payload)


class Inbox:
    def __init__(self):
        self.got = []

    def __call__(self, topic, payload, retained):
        self.got.append((topic, bytes(payload), retained))


class Said:
    """Stands in for print() in mqtt.py: what the client told its console."""

    def __init__(self):
        self.lines = []

    def __call__(self, *args):
        self.lines.append(" ".join(str(a) for a in args))

    def __enter__(self):
        mqtt.print = self  # module globals come before the builtins
        return self

    def __exit__(self, *exc):
        del mqtt.print


async def until(predicate, ms=5000):
    start = ticks_ms()
    while not predicate():
        assert ticks_diff(ticks_ms(), start) < ms, "condition not met in %d ms" % ms
        await asyncio.sleep_ms(10)


async def test_a_publish_whose_topic_is_not_utf8_is_dropped_and_the_link_kept():
    async def script(peer):
        await peer.read()  # CONNECT
        await peer.send(0x20, b"\x00\x00")
        await peer.send(*publish(b"bl/\xff\xfe/res", b"bad", pid=7))
        await peer.send(*publish(b"bl/ok", b"fine"))
        await peer.read()  # the PUBACK
        await asyncio.sleep_ms(1000)

    peer = await Peer(script).start()
    c = MQTTClient("utf8", HOST, peer.port, keepalive=0)
    inbox = c.on_message = Inbox()
    await c.connect()
    await until(lambda: len(peer.packets) == 2)
    assert inbox.got == [("bl/ok", b"fine", False)], inbox.got
    assert c.dropped == 1
    assert c.connected, "one bad frame from the broker must not cost the link"
    assert peer.packets[1] == (0x40, b"\x00\x07"), peer.packets  # acknowledged all the same
    await c.disconnect()
    peer.close()


async def test_a_password_without_a_user_name_is_refused_at_construction():
    err = mptest.raises(ValueError, lambda: MQTTClient("x", HOST, 1, password="secret"))
    assert "user name" in str(err), err
    MQTTClient("x", HOST, 1, user="x")  # a user name alone is fine (MQTT-3.1.2-19)


async def test_user_and_password_travel_in_the_connect():
    async def script(peer):
        await peer.read()
        await peer.send(0x20, b"\x00\x00")
        await peer.read()  # DISCONNECT

    peer = await Peer(script).start()
    c = MQTTClient("gate-1", HOST, peer.port, user="gate-1", password="pw", keepalive=0)
    await c.connect()
    await c.disconnect()
    await until(lambda: len(peer.packets) == 2)
    first, body = peer.packets[0]
    assert first == 0x10
    assert body[7] == 0x80 | 0x40 | 0x02, hex(body[7])  # user name, password, clean session
    assert body.endswith(b"\x00\x06gate-1\x00\x06gate-1\x00\x02pw"), body
    peer.close()


def count_downs(client):
    """client.on_down counts its calls: each is a session the application must close."""
    downs = [0]

    async def on_down():
        downs[0] += 1

    client.on_down = on_down
    return downs


async def test_a_connect_whose_answer_never_came_counts_as_a_session():
    """The broker may have taken a CONNECT whose CONNACK was lost, and will publish that
    session's will when the next connection takes over: the next one must be a new session
    (the reader's on_down moves its bdSeq and will on), or that will would end it."""

    async def script(peer):
        await peer.read()
        await asyncio.sleep_ms(30_000)  # never answers

    peer = await Peer(script).start()
    c = ResilientClient("unanswered", HOST, peer.port)
    downs = count_downs(c)
    with Said():
        task = asyncio.create_task(c.keep_connected())
        await until(lambda: downs[0] >= 1, ms=8000)  # after the 5 s wait for the CONNACK
        task.cancel()
        await asyncio.sleep_ms(10)
    assert c.connect_unanswered and not c.connected
    peer.close()


async def test_a_connect_the_broker_closes_is_reported_not_swallowed():
    async def script(peer):
        await peer.read()  # a strict broker that does not like this CONNECT: it hangs up

    peer = await Peer(script).start()
    c = ResilientClient("strict", HOST, peer.port)
    downs = count_downs(c)
    with Said() as said:
        task = asyncio.create_task(c.keep_connected())
        await until(lambda: peer.connections >= 3)  # several attempts, with backoff
        task.cancel()
        await asyncio.sleep_ms(10)
    assert c.last_error == "the broker closed the link before its CONNACK", c.last_error
    assert not c.connected
    expected = "mqtt: cannot connect to %s:%d: %s" % (HOST, peer.port, c.last_error)
    assert said.lines == [expected], said.lines  # once, not once per attempt
    assert downs == [0]  # a hang-up before the CONNACK: no session was opened
    peer.close()


async def test_a_refused_connect_keeps_its_return_code_until_the_link_comes_up():
    refuse = [True]
    answer = asyncio.Event()  # the second attempt's CONNACK waits for it

    async def script(peer):
        await peer.read()
        if peer.connections >= 2:
            await answer.wait()
        await peer.send(0x20, b"\x00\x05" if refuse[0] else b"\x00\x00")
        while not refuse[0]:
            await peer.read()  # serve the pings until the client goes

    peer = await Peer(script).start()
    c = ResilientClient("refused", HOST, peer.port, user="u", password="wrong")
    with Said() as said:
        task = asyncio.create_task(c.keep_connected())
        await until(lambda: len(peer.packets) >= 2)  # the second CONNECT, not yet answered
        assert c.last_error == "refused by the broker: 5 not authorized", c.last_error
        answer.set()
        await until(lambda: peer.connections >= 3)
        assert c.last_error == "refused by the broker: 5 not authorized", c.last_error
        assert not c.connected
        refuse[0] = False
        await asyncio.wait_for_ms(c.wait_connected(), 5000)
        assert c.last_error is None
        await c.disconnect()
        await asyncio.wait_for_ms(task, 1000)
    assert said.lines == [
        "mqtt: cannot connect to %s:%d: refused by the broker: 5 not authorized"
        % (HOST, peer.port),
        "mqtt: connected to %s:%d" % (HOST, peer.port),
    ], said.lines
    peer.close()


async def test_a_connect_to_nothing_says_so():
    c = MQTTClient("lonely", HOST, 1)
    try:
        await c.connect()
        raise AssertionError("connect did not raise")
    except OSError:
        pass
    assert c.last_error is not None and c.last_error.startswith("no link:"), c.last_error


mptest.main(globals())
