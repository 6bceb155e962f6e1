# The reader's view of the gateways' liveness (firmware/app.py Reader) on the real MicroPython,
# against a live Mosquitto. Run by firmware/tests/test_liveness.py, one test per process:
# `micropython liveness_mqtt.py test_x`. The environment gives BANDLINK_TEST_BROKER_PORT, the
# simulated board's controller as BANDLINK_TEST_ANTENNA (host:port) and BANDLINK_TEST_STATE
# (the reader's session file), and the login of reader live-1 as BANDLINK_TEST_LOGIN ("user
# password", a test harness's: it publishes on bltest/ctl). A paho client on the CPython side
# plays the gateway processes: the reader publishes "<what> <gateway id>" to bltest/ctl/gw and
# paho publishes, retained, on bl/1/$gw/<gateway id>/state:
#   on | off        a GatewayState saying online or offline
#   garbage         bytes that are not CBOR
#   death           a valid message that is not a GatewayState
#   clear           an empty message: the broker forgets the retained state
#   many-on <n>     n gateways gw-0 .. gw-<n-1> online (off: many-off)
import asyncio
import gc
import os
import sys
from time import ticks_diff, ticks_ms

import app
import config
import mptest
from board import open_board

from protocol import GATE

PORT = int(os.getenv("BANDLINK_TEST_BROKER_PORT") or 0)
ANTENNA = os.getenv("BANDLINK_TEST_ANTENNA") or ""
STATE = os.getenv("BANDLINK_TEST_STATE") or ""
USER, _, PASSWORD = (os.getenv("BANDLINK_TEST_LOGIN") or "").partition(" ")
LONG_ID = "x" * 33  # one character more than a gateway id may have


class Delivered:
    """Stands between the link and the real Reader._on_message, counting the frames that came
    on the gateways' state topics, so a test knows when a state has been taken in."""

    def __init__(self, reader):
        self.reader = reader
        self.states = 0

    def __call__(self, topic, payload, retained):
        self.reader._on_message(topic, payload, retained)
        if topic.startswith("bl/1/$gw/"):
            self.states += 1


async def until(predicate, ms=5000):
    start = ticks_ms()
    while not predicate():
        assert ticks_diff(ticks_ms(), start) < ms, "condition not met in %d ms" % ms
        await asyncio.sleep_ms(5)


async def started_reader():
    settings = dict(config.DEFAULTS)
    settings.update(
        reader="live-1",
        board="sim",
        broker={"host": "127.0.0.1", "port": PORT, "user": USER, "password": PASSWORD},
        antenna=ANTENNA,
        state_file=STATE,
    )
    board = open_board(settings)
    await board.start()
    reader = app.Reader(settings, board, GATE)
    delivered = reader.link.on_message = Delivered(reader)
    task = asyncio.create_task(reader.link.keep_connected())
    await asyncio.wait_for_ms(reader.link.wait_connected(), 3000)
    return reader, delivered, task


async def gateways(reader, delivered, what, count=1):
    """Ask paho to publish the states in `what`, and wait until `count` of them came in."""
    expected = delivered.states + count
    await reader.link.publish(b"bltest/ctl/gw", what.encode(), 1)
    await until(lambda: delivered.states >= expected)


async def stop(reader, task):
    await reader.link.disconnect()
    await asyncio.wait_for_ms(task, 1000)


async def test_the_service_is_gone_only_when_every_gateway_says_offline():
    reader, delivered, task = await started_reader()
    await asyncio.sleep_ms(200)
    assert reader.gateway_online is None, "nothing retained yet: unknown"
    await gateways(reader, delivered, "on gw-a")
    await gateways(reader, delivered, "on gw-b")
    assert reader.gateway_online is True
    await gateways(reader, delivered, "off gw-a")
    assert reader.gateway_online is True, "gw-b still serves"
    await gateways(reader, delivered, "off gw-b")
    assert reader.gateway_online is False, "both gateways said offline"
    await gateways(reader, delivered, "on gw-b")
    assert reader.gateway_online is True, "gw-b is back"
    assert reader.bad_frames == 0

    await gateways(reader, delivered, "garbage gw-a")
    assert (reader.bad_frames, reader.gateway_online) == (1, True)
    await gateways(reader, delivered, "off gw-b")
    assert reader.gateway_online is False
    # An online state on a topic whose gateway level is no gateway id, and a message that is not
    # a GatewayState on a good topic: both counted, neither brings the service back.
    await gateways(reader, delivered, "on " + LONG_ID)
    await gateways(reader, delivered, "death gw-c")
    assert (reader.bad_frames, reader.gateway_online) == (3, False)
    await gateways(reader, delivered, "on gw-b")
    assert reader.gateway_online is True

    # Link down: the reader forgets everything, then learns it again from the retained states
    # (gw-a garbage, gw-b online, the bad topic, gw-c's death).
    reader.link._close()
    await until(lambda: reader.gateway_online is None, 1000)
    await until(lambda: reader.link.connected and reader.gateway_online is True)
    await until(lambda: reader.bad_frames == 6)

    # gw-b retires and its retained state is removed (an empty retained message: it does not
    # decode, so it is counted and changes nothing while the link lasts).
    states = delivered.states
    await gateways(reader, delivered, "clear gw-b")
    assert (reader.bad_frames, reader.gateway_online) == (7, True)
    reader.link._close()
    await until(lambda: reader.link.connected and delivered.states == states + 1 + 3)
    assert reader.gateway_online is None, "only the three bad frames are retained"
    await gateways(reader, delivered, "off gw-d")
    assert reader.gateway_online is False, "gw-b was forgotten with the link"
    await stop(reader, task)


async def test_more_gateways_than_tracked_stay_bounded():
    reader, delivered, task = await started_reader()
    await gateways(reader, delivered, "on gw-a")
    assert reader.gateway_online is True
    await asyncio.sleep_ms(50)
    gc.collect()
    before = gc.mem_alloc()
    await gateways(reader, delivered, "many-on 200", 200)
    gc.collect()
    grown = gc.mem_alloc() - before
    print("heap grown by", grown, "bytes over 200 more gateways")
    assert grown < 1024, grown  # 200 ids kept would take several KiB
    assert reader.untracked_gateways == 200 - 7, reader.untracked_gateways  # gw-a + 7 tracked
    assert reader.gateway_online is True
    await gateways(reader, delivered, "many-off 200", 200)
    await gateways(reader, delivered, "off gw-a")
    # Every tracked gateway said offline, but one left out said online and no more since:
    # nobody can tell it is gone, so the reader waits for replies rather than turn guests away.
    assert reader.gateway_online is None, reader.gateway_online
    assert reader.bad_frames == 0

    # Reconnected, the reader starts afresh from the retained states: all 201 say offline.
    reader.link._close()
    await until(lambda: reader.link.connected and reader.gateway_online is False)
    await until(lambda: delivered.states >= 402 + 201)
    assert reader.gateway_online is False
    await stop(reader, task)


if not (PORT and ANTENNA and STATE and PASSWORD):
    print("BANDLINK_TEST_* are not set: run through test_liveness.py")
    sys.exit(1)
mptest.main(globals())
