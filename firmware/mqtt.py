# MQTT 3.1.1 client for the reader, on MicroPython asyncio (ESP32; the unix port in tests).
#
# Theory of operation
# - MQTTClient is the protocol: one TCP link, one reader task that reads every packet and
#   dispatches it, one ping task, and the calls the application makes. It never retries: a
#   link error closes the link and surfaces as OSError.
# - ResilientClient is the policy (as in peterhinch's mqtt_as): keep_connected() connects,
#   calls on_up(), waits for the link to drop, calls on_down(), reconnects with backoff.
# - QoS 1 publishes do not wait for PUBACK: the application's reply is the real
#   acknowledgement; the broker's PUBACK only decrements `unacked`. No QoS 2: subscriptions
#   are capped at QoS 1.
# - RAM: one receive buffer of `bufsize` bytes and one transmit buffer of `txsize` (else
#   `bufsize`), allocated once. A packet is
#   built in the transmit buffer and handed to the socket with no await in between, so tasks
#   never share it; only a packet the socket took in part keeps it (`_rest`) until sent.
#   A QoS 0 or 1 publish with a bytes topic allocates nothing but its own coroutine.
# - on_message(topic: str, payload: memoryview, retained: bool) is called by the reader task.
#   `payload` points into the receive buffer: it is valid only during the call (copy it with
#   bytes(payload) to keep it). Incoming packets larger than bufsize, and PUBLISHes whose topic
#   is not UTF-8, are read, thrown away (acknowledged at QoS 1) and counted in `dropped`: one bad
#   packet from the broker costs that packet, not the link.
# - A refused or failed CONNECT says why in `last_error` (None once connected); the resilient
#   client prints each new reason, so a reader that never comes online is not silent about it.
import asyncio
import sys
from errno import ECONNRESET, ENOTCONN, ETIMEDOUT
from random import getrandbits
from time import ticks_diff, ticks_ms

from micropython import const

_CONNECT = const(0x10)
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBSCRIBE = const(0x82)  # SUBSCRIBE carries the fixed flags 0b0010
_SUBACK = const(0x90)
_PINGREQ = b"\xc0\x00"
_DISCONNECT = b"\xe0\x00"

_HEAD = const(5)  # room before a packet's body for its fixed header: type + 1..4 length bytes
_UNANSWERED = const(-2)  # _connack while a CONNECT we sent has had no answer at all
_HUNG_UP = const(-3)  # _connack when the broker closed the link instead of answering
_ANSWER_MS = const(5000)  # how long connect waits for CONNACK, and subscribe for SUBACK
_WRITE_POLL_MS = const(10)  # only while the socket's send buffer is full
_BACKOFF_MIN_MS = const(250)
_BACKOFF_MAX_MS = const(8000)
_IPPROTO_TCP = const(6)
_TCP_NODELAY = const(1)


class MQTTError(Exception):
    # The broker refused us: args[0] is the CONNACK return code or a short reason.
    pass


# CONNACK return codes 1..5 (MQTT 3.1.1 table 3.1), for last_error.
_REFUSALS = (
    "",
    "unacceptable protocol version",
    "identifier rejected",
    "server unavailable",
    "bad user name or password",
    "not authorized",
)


def _why(exc):
    # A refused or failed connect, in words.
    if isinstance(exc, MQTTError):
        code = exc.args[0] if exc.args else ""
        if isinstance(code, int) and 0 < code < len(_REFUSALS):
            return "refused by the broker: %d %s" % (code, _REFUSALS[code])
        return "refused by the broker: %s" % (code,)
    if isinstance(exc, OSError) and exc.args and exc.args[0] == ETIMEDOUT:
        return "no CONNACK within %d ms" % _ANSWER_MS
    return "no link: %r" % (exc,)


def _ignore(topic, payload, retained):
    pass


async def _nothing():
    pass


class MQTTClient:
    def __init__(
        self, client_id, server, port=1883, *, user=None, password=None, keepalive=30,
        will=None, bufsize=1024, txsize=None
    ):  # fmt: skip
        if password is not None and user is None:
            # MQTT-3.1.2-22: a password flag without the user name flag is a protocol violation;
            # a strict broker closes the link, and the reader would never come online.
            raise ValueError("MQTT: a password needs a user name (MQTT-3.1.2-22)")
        self.client_id = client_id
        self.server = server
        self.port = port
        self.user = user
        self.password = password
        self.keepalive = keepalive
        self.will = will  # (topic, payload, qos, retain)
        self.on_message = _ignore
        self.dropped = 0  # incoming packets thrown away: too large, malformed, topic not UTF-8
        self.last_error = None  # why the last connect failed (str); None once connected
        self.unacked = 0  # our QoS 1 publishes not PUBACKed yet
        # What comes in may be larger than what goes out (a reader receives Configs, sends
        # taps): txsize, when given, sizes the transmit buffer alone.
        self._tx = bytearray(max(txsize or bufsize, 64))
        self._rx = bytearray(max(bufsize, 64))
        self._rxv = memoryview(self._rx)
        self._rx1 = self._rxv[:1]  # views made once: slicing per packet would allocate
        self._rx2 = self._rxv[:2]
        self._sock = None  # the raw socket: we write to it directly (see _write)
        self._stream = None  # the asyncio stream over it, on which the reader waits
        self._up = False
        self._tasks = []  # reader and pinger of the current link
        self._rest = None  # the unsent end of a packet the socket took only in part
        self._sub_lock = asyncio.Lock()  # one SUBSCRIBE waiting for its SUBACK at a time
        self._answer = asyncio.Event()  # CONNACK or SUBACK arrived, or the link closed
        self._down = asyncio.Event()
        self._down.set()
        self._pid = 0
        self._connack = self._sub_pid = self._granted = -1
        self._last_rx = self._last_tx = ticks_ms()

    @property
    def connected(self):
        return self._up

    # ---- what the application calls ----

    async def connect(self, clean=True):
        # Open the link and log in. Raises OSError (no link, no answer) or MQTTError (refused).
        # After a timeout the half-open socket is left to the GC (ESP32 sockets have a finaliser).
        # last_error keeps the previous attempt's reason until this one ends: a watcher never
        # sees None while the reader is still failing to connect.
        self._close()
        self._connack = -1  # no CONNECT sent yet
        try:
            await self._within(self._handshake(clean))
        except Exception as exc:
            self._close()  # never leave a reader task or a socket behind
            if self._connack == _HUNG_UP:
                self.last_error = "the broker closed the link before its CONNACK"
            else:
                self.last_error = _why(exc)
            raise
        except BaseException:  # cancelled
            self._close()
            raise
        self.last_error = None

    async def publish(self, topic, payload, qos=0, retain=False):
        # One PUBLISH, one write; returns the packet id (0 for QoS 0). Raises OSError when the
        # link is down and ValueError when the packet does not fit in bufsize.
        if not self._up:
            raise OSError(ENOTCONN)
        if isinstance(topic, str):
            topic = topic.encode()  # pass a bytes topic to avoid even this allocation
        pid = self._next_pid() if qos else 0
        if self._rest is not None:
            await self._turn()
        at = self._put_str(_HEAD, topic)
        if pid:
            at = self._put_u16(at, pid)
        end = at + len(payload)
        if end > len(self._tx):
            raise ValueError("publish larger than bufsize")
        self._tx[at:end] = payload
        self.unacked += bool(pid)  # before the write: the PUBACK may beat us back here
        if not self._write(self._frame(_PUBLISH | bool(pid) << 1 | bool(retain), end), end):
            await self._drain()
        return pid

    async def subscribe(self, topic, qos=1):
        # Subscribe and wait for the SUBACK; returns the granted QoS.
        async with self._sub_lock:
            self._sub_pid, self._granted = self._next_pid(), -1
            self._answer.clear()
            await self._turn()
            at = self._put_str(self._put_u16(_HEAD, self._sub_pid), topic)
            self._tx[at] = min(qos, 1)
            await self._send(self._frame(_SUBSCRIBE, at + 1), at + 1)
            await self._within(self._answer.wait())
        if self._granted < 0:
            raise OSError(ENOTCONN)  # the link closed before the SUBACK came
        if self._granted == 0x80:
            raise MQTTError("subscription refused")
        return self._granted

    async def disconnect(self):
        # Say goodbye, so the broker discards the will, and close the link.
        if self._up:
            try:
                await self._turn()
                await self._send(0, 2, _DISCONNECT)
            except OSError:
                pass
        self._close()

    # ---- the link ----

    async def _handshake(self, clean):
        self._stream, writer = await asyncio.open_connection(self.server, self.port)
        self._sock = writer.s  # type: ignore[attr-defined]  # the Stream keeps its socket as .s
        try:  # else lwIP and Linux hold small packets back (Nagle) for up to ~40 ms
            self._sock.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
        except (OSError, AttributeError, TypeError):  # not every port, nor a TLS socket, has it
            pass
        self._last_rx = ticks_ms()
        self._connack = _UNANSWERED  # until a CONNACK or a hang-up (a timeout leaves it so)
        self._answer.clear()
        if clean:
            self.unacked = 0  # a clean session: the broker has forgotten them
        self._tasks.append(asyncio.create_task(self._reader()))
        end = self._connect_packet(clean)
        await self._send(self._frame(_CONNECT, end), end)
        await self._answer.wait()
        if self._connack < 0:
            # How a strict broker refuses a CONNECT it will not parse (a password without a user
            # name, a bad will topic): it closes the link without a CONNACK.
            self._connack = _HUNG_UP
            raise OSError(ECONNRESET)
        if self._connack:
            raise MQTTError(self._connack)
        self._up = True
        self._down.clear()
        if self.keepalive:
            self._tasks.append(asyncio.create_task(self._pinger()))

    @property
    def connect_unanswered(self):
        # A CONNECT went out and neither a CONNACK nor a hang-up came back: the broker may have
        # taken it, so to the broker a session (with our will) may be open. A field of its
        # own would grow every client's attribute table past its next size.
        return self._connack == _UNANSWERED

    def _close(self):
        # Drop the link at once: stop our tasks, close the socket, wake every waiter.
        self._up = False
        me = asyncio.current_task()
        for task in self._tasks:
            if task is not me:
                task.cancel()  # before the close: a task parked on a closed socket never wakes
        self._tasks.clear()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._stream = self._rest = None
        self._answer.set()
        self._down.set()

    async def _within(self, awaitable):
        # An answer that does not come in time is a link error like any other.
        try:
            await asyncio.wait_for_ms(awaitable, _ANSWER_MS)
        except asyncio.TimeoutError:
            raise OSError(ETIMEDOUT) from None

    def _write(self, start, end, buf=None):
        # Hand buf[start:end] (default: _tx) to the non-blocking socket in one write: with
        # TCP_NODELAY, one TCP segment. False if the socket took only part: then _drain().
        sock = self._sock
        if sock is None:
            raise OSError(ENOTCONN)
        buf = self._tx if buf is None else buf
        try:
            n = sock.write(buf, start, end - start) or 0  # (buf, offset, length): no slicing
        except OSError:
            self._close()
            raise
        self._last_tx = ticks_ms()
        if n < end - start:
            self._rest = memoryview(buf)[start + n : end]
            return False
        return True

    async def _drain(self):
        # Rare: the send buffer is full. We poll it rather than park in Stream.drain(): a task
        # parked in the poller on a socket that another task closes is never woken (measured on
        # the unix port), and _close() must release every waiter.
        sock = self._sock
        while self._rest:
            await asyncio.sleep_ms(_WRITE_POLL_MS)
            if sock is not self._sock or sock is None:
                raise OSError(ENOTCONN)
            try:
                n = sock.write(self._rest) or 0
            except OSError:
                self._close()
                raise
            self._rest = self._rest[n:] if n < len(self._rest) else None

    async def _turn(self):
        # Wait until no packet is half-written: only then may the caller build in _tx.
        while self._rest is not None:
            await asyncio.sleep_ms(_WRITE_POLL_MS)

    async def _send(self, start, end, buf=None):
        # For the rare packets (callers have awaited _turn and built the packet).
        if not self._write(start, end, buf):
            await self._drain()

    async def _pinger(self):
        # PINGREQ when we have sent nothing for keepalive/2 (the broker allows 1.5 x keepalive),
        # and also when we have received nothing for keepalive/2: the broker answers every
        # PINGREQ, so 1.5 x keepalive without a single packet means the link is dead.
        half = self.keepalive * 500
        while True:
            await asyncio.sleep_ms(half // 2)
            now = ticks_ms()
            if ticks_diff(now, self._last_rx) > 3 * half:
                self._close()
                return
            if ticks_diff(now, self._last_tx) >= half or ticks_diff(now, self._last_rx) >= half:
                try:
                    await self._turn()
                    await self._send(0, 2, _PINGREQ)
                except OSError:
                    return  # _write has closed the link

    def _next_pid(self):
        self._pid = self._pid % 65535 + 1
        return self._pid

    # ---- receiving: all in the reader task ----

    async def _reader(self):
        try:
            while True:
                kind, n = await self._read_packet()
                t = kind & 0xF0
                if t == _PUBLISH:
                    await self._on_publish(kind, n)
                elif t == _PUBACK:
                    self.unacked = max(0, self.unacked - 1)
                elif t == _CONNACK and n >= 2:
                    self._connack = self._rx[1]
                    self._answer.set()
                elif t == _SUBACK and n >= 3 and self._rx[0] << 8 | self._rx[1] == self._sub_pid:
                    self._granted = self._rx[2]
                    self._answer.set()
                # PINGRESP and the rest: arriving at all has refreshed _last_rx.
        except Exception:  # noqa: BLE001 - OSError, MQTTError...: either way the link is gone
            self._close()

    async def _read_into(self, buf):
        # Fill buf completely. Stream.readinto waits on the socket: no polling timer.
        got, stream = 0, self._stream
        while got < len(buf):
            if stream is None:
                raise OSError(ENOTCONN)
            n = await stream.readinto(buf[got:] if got else buf)
            if n == 0:
                raise OSError(ECONNRESET)  # the broker closed the connection
            got += n or 0  # None: woken without data
        self._last_rx = ticks_ms()

    async def _read_packet(self):
        # Read one packet; its body lands in _rx. Returns (first byte, body length); a packet
        # larger than _rx is read and thrown away, and comes back as length -1.
        rx = self._rxv
        await self._read_into(self._rx2)  # every packet has a type byte and a length byte
        kind, b = rx[0], rx[1]
        n, shift = b & 0x7F, 7
        while b & 0x80:
            if shift > 21:
                raise MQTTError("bad length")  # framing lost: nothing after this can be trusted
            await self._read_into(self._rx1)
            b = rx[0]
            n |= (b & 0x7F) << shift
            shift += 7
        if n <= len(rx):
            await self._read_into(rx[:n])
            return kind, n
        self.dropped += 1
        await self._read_into(rx)
        pid = self._publish_pid(kind, len(rx))  # ack it, or a persistent session redelivers it
        n -= len(rx)
        while n:
            chunk = min(n, len(rx))
            await self._read_into(rx[:chunk])
            n -= chunk
        if pid:
            await self._send_puback(pid)
        return kind, -1

    def _publish_pid(self, kind, n):
        # Offset of the payload of the PUBLISH in _rx, and its packet id (0: QoS 0, or garbage)
        at = 2 + (self._rx[0] << 8 | self._rx[1])
        if kind & 0xF6 != _PUBLISH | 2 or at + 2 > n:  # not QoS 1 (QoS 2 is never asked for)
            return 0
        return self._rx[at] << 8 | self._rx[at + 1]

    async def _on_publish(self, kind, n):
        if n < 0:
            return
        at = 2 + (self._rx[0] << 8 | self._rx[1])
        qos = kind >> 1 & 3
        pid = self._publish_pid(kind, n)
        if at > n or qos > 1 or (qos and not pid):
            self.dropped += 1  # malformed, or QoS 2 (never asked for)
            return
        try:
            topic = str(self._rxv[2:at], "utf-8")
        except UnicodeError:  # the broker should not have sent it; the frame goes, the link stays
            self.dropped += 1
            topic = None
        if topic is not None:
            try:
                self.on_message(topic, self._rxv[at + 2 * qos : n], bool(kind & 1))
            except Exception as exc:  # noqa: BLE001 - an application bug must not take the link down
                sys.print_exception(exc)
        if pid:
            await self._send_puback(pid)  # after the callback: at least once, never zero times

    async def _send_puback(self, pid):
        try:
            await self._turn()
            self._tx[0], self._tx[1] = _PUBACK, 2
            self._put_u16(2, pid)
            await self._send(0, 4)
        except OSError:
            pass  # the link is gone; the broker redelivers in the next session

    # ---- building packets in _tx; callers have awaited _turn() ----

    def _connect_packet(self, clean):
        will = self.will
        flags = 2 if clean else 0
        if will:
            flags |= 4 | min(will[2], 1) << 3 | (0x20 if will[3] else 0)
        flags |= (0x80 if self.user is not None else 0) | (0x40 if self.password is not None else 0)
        at = self._put_str(_HEAD, b"MQTT")
        self._tx[at], self._tx[at + 1] = 4, flags  # protocol level 4: MQTT 3.1.1
        at = self._put_str(self._put_u16(at + 2, self.keepalive), self.client_id)
        for field in (will[0], will[1]) if will else ():
            at = self._put_str(at, field)
        for field in (self.user, self.password):
            if field is not None:
                at = self._put_str(at, field)
        return at

    def _put_u16(self, at, value):
        self._tx[at], self._tx[at + 1] = value >> 8, value & 0xFF
        return at + 2

    def _put_str(self, at, data):
        if isinstance(data, str):
            data = data.encode()
        end = at + 2 + len(data)
        if end > len(self._tx):
            raise ValueError("packet larger than bufsize")
        self._put_u16(at, len(data))
        self._tx[at + 2 : end] = data
        return end

    def _frame(self, first, end):
        # Put the fixed header just before the body (_HEAD..end); return where the packet starts.
        n = end - _HEAD
        start = _HEAD - 2 - (n > 0x7F) - (n > 0x3FFF) - (n > 0x1FFFFF)
        self._tx[start] = first
        at = start + 1
        while at < _HEAD:  # remaining length: base 128, least significant digit first
            self._tx[at] = n & 0x7F | (0x80 if at < _HEAD - 1 else 0)
            n >>= 7
            at += 1
        return start


class ResilientClient(MQTTClient):
    # MQTTClient that stays connected: run keep_connected() as a task. on_up() (async) runs
    # after every connect: resubscribe and publish the birth there. on_down() (async) runs
    # after every drop. publish() while down raises OSError at once: the application decides.

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.on_up = _nothing
        self.on_down = _nothing
        self._ready = asyncio.Event()
        self._stopping = False

    async def wait_connected(self):
        # Returns once the link is up and on_up() has run.
        await self._ready.wait()

    async def disconnect(self):
        self._stopping = True  # keep_connected returns instead of reconnecting
        await super().disconnect()

    async def keep_connected(self, clean=True):
        # Connect, and reconnect after every drop, until disconnect(). Never raises: a broker
        # vanishing is this loop's ordinary business. Cancelling it drops the link without
        # DISCONNECT (so the broker publishes the will).
        self._stopping = False
        delay = _BACKOFF_MIN_MS
        try:
            while not self._stopping:
                if await self._session(clean) > _BACKOFF_MAX_MS:
                    delay = _BACKOFF_MIN_MS  # that was a real session, not a flapping one
                if not self._stopping:
                    # Jitter up to +25 %, so a fleet of readers does not reconnect in step.
                    await asyncio.sleep_ms(delay + (delay * getrandbits(8) >> 10))
                    delay = min(2 * delay, _BACKOFF_MAX_MS)
        finally:
            self._ready.clear()
            self._close()

    async def _session(self, clean):
        # One connection's life; returns how long it was up in ms (0: it never came up).
        said = self.last_error
        try:
            await self.connect(clean)
        except Exception:  # noqa: BLE001 - broker away or refusing: retry later, never raise
            if self.last_error != said:  # each new reason once, not every backoff round
                print("mqtt: cannot connect to %s:%d:" % (self.server, self.port), self.last_error)
            if self.connect_unanswered:
                # Only the CONNACK may have been lost: the broker may hold that session, and
                # publish its will when the next one takes over. That was a session too.
                await self._went_down()
            return 0
        if said is not None:
            print("mqtt: connected to %s:%d" % (self.server, self.port))
        since = ticks_ms()
        try:
            await self.on_up()
            self._ready.set()
        except Exception as exc:  # noqa: BLE001 - the application's, reported, then reconnect
            if not isinstance(exc, OSError):  # an OSError: the link dropped during on_up
                sys.print_exception(exc)
            self._close()
        await self._down.wait()
        self._ready.clear()
        await self._went_down()
        return max(1, ticks_diff(ticks_ms(), since))

    async def _went_down(self):
        try:
            await self.on_down()
        except Exception as exc:  # noqa: BLE001 - the application's: report, keep going
            sys.print_exception(exc)
