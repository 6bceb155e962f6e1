# The reader application: one board, one link to the broker, one role.
#
# Tasks (asyncio): the MQTT client's own reader and keep-connected tasks, the signal task that
# returns the lights to idle, and the role's loop. A role asks the gateway through `request`:
# the message is encoded into one preallocated buffer, published at QoS 1 without waiting for
# the PUBACK (the reply is the acknowledgement), and the reply is matched by its `corr`.
# What the guest sees is decided by the role; the app never shows green on its own.
#
# On every connection the reader subscribes, waiting for each SUBACK, to its cfg topic first
# (the retained Config then arrives before the other SUBACKs, so the Birth after them reports
# it), then res, cmd and the gateways' states, and only then publishes its Birth (SPEC, the
# reader's MQTT session). A Config newer than the one running is applied (running.py), stored
# on flash (<state_file>.cfg, reloaded at boot) and, if the Birth is out already, announced
# with a new Birth in the same session.
#
# Every tap the reader sends or decides alone is an operation in the journal on flash
# (journal.py, operation.py) before the guest sees its light; the outbox task (outbox.py)
# uploads what the gateway did not answer. The reader is offline, and a role decides alone,
# while its link is down, every gateway says it is offline, or two replies in a row missed their
# deadlines (until a Result or a gateway saying online is heard again). One missed reply is a
# hiccup the resend covers (the band taps again, the same operation goes again); two are an
# outage. Band list commands go to the reader's list (bandlist.py: a gate and a till decide from
# it alone); one it cannot apply makes the reader announce its list again (a new Birth), so the
# gateway sends it one it can.
import asyncio
import gc
import time

import feedback
import mqtt
import operation
from bandlist import BandList
from board import open_board
from flash import Stored
from journal import PAYLOAD_AT, Journal
from micropython import const
from outbox import Outbox
from running import Running
from session import Session

from protocol import (
    Command,
    Config,
    GatewayState,
    ProtocolError,
    Result,
    decode,
    encode_into,
    messages,
    topics,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from board import Board

# The largest message a reader sends today: a gate tap with every field at its largest (SUN data
# with 48 bytes of file data, a 24-character gate name of 4-byte characters) is 286 bytes; a
# plain gate tap 75.
_TX_SIZE = const(320)
# The MQTT client's receive buffer: the largest packet coming in today is a Config with three
# names of 4-byte characters, 455 bytes of PUBLISH body; and its transmit buffer: the largest going
# out is a tap's PUBLISH, 336 bytes with the room for its header, or the CONNECT
# (tests/test_buffers.py checks every message type at its largest, a band list chunk
# included). A larger one coming in is dropped and counted. 1 KiB each left the readers
# no room for SUN on the unix port's heap (docs/BENCHMARKS.md).
_LINK_BUFFER = const(464)
_LINK_TX = const(352)
# Gateway processes whose "online" the reader keeps at once; more are counted, not tracked.
_GATEWAYS_MAX = const(8)
# Operations the journal holds at most (offline decisions and unanswered taps): a gate deciding
# alone through an hour's outage at a busy lane; beyond it a gate counts what it cannot record.
_JOURNAL_CAPACITY = const(1024)
_ROLE = const(0)  # request() slots: the role's taps, and the outbox's uploads
_SLOTS = const(2)
_MISSED_OFFLINE = const(2)  # replies missed in a row that make the reader decide alone
_IDLE = const(0)
_HELD = const(1)
_STICKY = const(2)


class Signal:
    """What the guest sees: a pattern held for a while, then idle again.

    Idle shows ``idle_text`` (a pos reader's armed sale, else nothing), set through ``idle``.
    A pattern shown with ``hold=False`` (the PIN prompt) stays until the next one."""

    def __init__(self, board, running):
        self._board = board
        self._running = running  # its hold_ms: the gateway's Config may change it
        self._changed = asyncio.Event()
        self.idle_text = ""
        # What is on: _IDLE, _HELD (back to idle after hold_ms) or _STICKY (until the next).
        self._holding = _IDLE

    def show(self, pattern, text="", hold=True):
        self._board.show(pattern, text)
        self._holding = _HELD if hold else _STICKY
        self._changed.set()

    def idle(self, text):
        """What idle shows from now on; shown at once unless a pattern is being held (a prompt
        is not: it belonged to what idle replaces, a pos reader's sale)."""
        self.idle_text = text
        if self._holding != _HELD:
            self._holding = _IDLE
            self._board.show(feedback.IDLE, text)

    async def run(self):
        while True:
            await self._changed.wait()
            self._changed.clear()
            try:
                # A new pattern inside the hold time leaves the event set, so the loop comes
                # round at once and holds that one instead: only the last pattern times out.
                await asyncio.wait_for_ms(self._changed.wait(), self._running.hold_ms)
            except asyncio.TimeoutError:
                if self._holding == _HELD:
                    self._holding = _IDLE
                    self._board.show(feedback.IDLE, self.idle_text)


class Reader:
    def __init__(self, config, board: "Board", role_code):
        self.config = config
        self.id = config["reader"]
        self.board = board
        # gate, direction, deadline_ms, hold_ms: config.json's, until the gateway's Config.
        self.running = Running(config, role_code)
        self._config_file = Stored(config["state_file"] + ".cfg")
        self.ignored_configs = 0  # Configs for another reader or role, or with unusable values
        self._load_config()
        self.signal = Signal(board, self.running)
        self.session = Session(self.id, role_code, config["state_file"])
        # Whether the gateway service is up, from the gateways' retained states: True while at
        # least one gateway says online, False once states came and every one said offline,
        # None while nothing was heard since the link came up (the role then waits out its
        # deadline). gate.py reads it.
        self.gateway_online: bool | None = None
        self._gateways: list[str | None] = [None] * _GATEWAYS_MAX  # ids online now; None: free
        self._untracked = False  # an online gateway beyond _GATEWAYS_MAX since the link came up
        self.untracked_gateways = 0  # online states from gateways beyond _GATEWAYS_MAX, ignored
        self.clock_offset_ms = 0  # gateway clock minus ours, from the last time sync
        self.ignored_commands = 0
        # A role's own commands (pos: CHARGE, CANCEL): called with each Command this app does
        # not handle itself; returns whether it took it (else it counts as ignored).
        self.on_role_command = None
        broker = config["broker"]
        self.link = mqtt.ResilientClient(
            self.id,
            broker["host"],
            broker["port"],
            user=broker.get("user"),
            password=broker.get("password"),
            keepalive=config["keepalive_s"],
            will=self.session.will(self.wall_ms()),
            bufsize=_LINK_BUFFER,
            txsize=_LINK_TX,
        )
        self.link.on_message = self._on_message
        self.link.on_up = self._on_up
        self.link.on_down = self._on_down
        # Encoded once: a str topic would cost an encode() on every tap.
        self._evt_topic = topics.reader_topic(self.id, topics.EVT).encode()
        self._res_topic = topics.reader_topic(self.id, topics.RES)
        self._cmd_topic = topics.reader_topic(self.id, topics.CMD)
        self._cfg_topic = topics.reader_topic(self.id, topics.CFG)
        # The request being sent is encoded here; before that, the role reads the band's NDEF
        # into it (sun.read), and is done with it once the Tap is built: one buffer for both
        # leaves the heap ~300 bytes that a pos reader needs.
        # The journal reads its records into it too; a tap holds `busy` from its band read to
        # its light, the outbox while it collects and sends: never both at once.
        self.scratch = bytearray(_TX_SIZE)
        self._txv = memoryview(self.scratch)
        self.busy = asyncio.Lock()
        self.journal = Journal(
            config["state_file"] + ".journal", _JOURNAL_CAPACITY, buf=self.scratch
        )
        self.outbox = Outbox(self)
        # The band list a role decides from alone (gate and pos alike), which list commands
        # update; the gateway pushes it after the Birth that reports the version held.
        self.band_list = BandList(config["state_file"] + ".list")
        self._list_asked = -1  # the list version a refused chunk made us ask again for
        self.refused_lists = 0
        self.out_of_memory = 0  # taps a role could not handle for want of heap (shown RETRY)
        self._link_up = False
        self.unsent = False  # the last request() never left: the link was down
        self._missed = 0  # replies missed in a row since a gateway was last heard
        # Per request() slot: the mid whose reply is awaited, the reply, its event.
        self._awaited: list = [None] * _SLOTS
        self._replies: list = [None] * _SLOTS
        self._replied = (asyncio.Event(), asyncio.Event())
        self._seq = 0
        self.late_replies = 0  # replies that came after their deadline
        self.bad_frames = 0  # frames on our topics that were not valid messages (or topics)
        self._birth_task: asyncio.Task | None = None  # a REBIRTH's birth, held while sent
        self._born = False  # this connection's Birth is out: a new Config needs another

    def next_seq(self):
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def record(self, tap, state, reason, amount=0):
        """The operation of tap (operation.py's layout; amount: a pos sale's) into the journal,
        through the shared buffer (hold `busy`); its id, or -1 when the journal is full."""
        n = operation.pack(self.scratch, PAYLOAD_AT, state, reason, tap, amount=amount)
        return self.journal.append(self._txv[PAYLOAD_AT : PAYLOAD_AT + n])

    def tidy(self):
        """Collect garbage now, after the guest saw the light, so no collection lands inside
        the next tap; then report the heap (a simulated board prints it, a real one may not)."""
        gc.collect()
        self.board.heap(gc.mem_alloc(), gc.mem_free())

    def wall_ms(self):
        """Milliseconds since 1970 on the gateway's clock, as far as we know it."""
        return _local_ms() + self.clock_offset_ms

    @property
    def offline(self):
        """Whether a role decides alone now (the module comment says when)."""
        return not self._link_up or self.gateway_online is False or self._missed >= _MISSED_OFFLINE

    async def request(self, message, timeout_ms, slot=_ROLE):
        """Send a request; its Result, or None if no reply came within timeout_ms."""
        started = time.ticks_ms()
        self.unsent = not await self.send(message, slot)
        if self.unsent:
            return None
        return await self.reply(slot, timeout_ms - time.ticks_diff(time.ticks_ms(), started))

    async def send(self, message, slot=_ROLE):
        """Encode a request into scratch and publish it; False if the link is down. Raises
        ProtocolError if it does not fit the buffer. The caller holds `busy`."""
        length = encode_into(self.scratch, message)
        self._awaited[slot] = message.mid
        self._replies[slot] = None
        self._replied[slot].clear()
        try:
            await self.link.publish(self._evt_topic, self._txv[:length], 1)
        except OSError:
            self._awaited[slot] = None
            return False
        return True

    async def reply(self, slot, timeout_ms):
        """The Result for the request sent in slot, or None after timeout_ms."""
        try:
            await asyncio.wait_for_ms(self._replied[slot].wait(), max(timeout_ms, 0))
        except asyncio.TimeoutError:
            if slot == _ROLE:
                self._missed += 1  # two in a row: offline until a gateway is heard again
        self._awaited[slot] = None
        return self._replies[slot]

    def _on_message(self, topic, payload, retained):
        try:
            message = decode(payload)
        except ProtocolError as err:
            self.bad_frames += 1
            print("frame dropped on", topic, err.code, err.detail)
            return
        if topic == self._res_topic:
            self._on_result(message)
        elif topic == self._cmd_topic:
            if isinstance(message, Command):
                self._on_command(message)
        elif topic == self._cfg_topic:
            if isinstance(message, Config):
                self._on_config(message, payload)
            else:
                self.bad_frames += 1
                print("frame dropped on", topic, "not a config")
        else:  # the only other subscription: topics.GATEWAY_STATES
            gateway = topics.parse_gateway_state(topic)
            if gateway is None or not isinstance(message, GatewayState):
                self.bad_frames += 1
                print("frame dropped on", topic, "not a gateway state")
                return
            self._on_gateway_state(gateway, message.online)

    def _on_gateway_state(self, gateway, online):
        """One gateway process said it is online or offline (its own retained topic)."""
        slots = self._gateways
        if online:
            self._heard()
            if gateway not in slots:
                if None in slots:
                    slots[slots.index(None)] = gateway
                else:
                    self.untracked_gateways += 1
                    self._untracked = True
        elif gateway in slots:
            slots[slots.index(gateway)] = None
        if any(slots):
            self.gateway_online = True
        else:
            # Every tracked gateway is offline. If one went untracked, nobody can say it is
            # gone: stay unsure (the role waits for a reply) rather than turn guests away.
            self.gateway_online = None if self._untracked else False

    def _on_result(self, reply):
        if not isinstance(reply, Result):
            self.late_replies += 1
            return
        self._heard()
        for slot in range(_SLOTS):
            if self._awaited[slot] is not None and reply.corr == self._awaited[slot]:
                self._replies[slot] = reply
                self._replied[slot].set()
                return
        self.late_replies += 1  # its operation stays in the journal: the outbox uploads it

    def _heard(self):
        """A gateway answered or said it is online: online again, if the link is up."""
        if self._missed:
            self._missed = 0
            self.outbox.poke()

    def _on_command(self, command):
        if command.op == messages.REBIRTH:
            self._birth_task = asyncio.create_task(self._publish_birth())
        elif command.op == messages.TIME_SYNC:
            self.clock_offset_ms = command.time_ms - _local_ms()
        elif command.op in (messages.LIST_SNAPSHOT, messages.LIST_DELTA):
            self._on_list(command)
        elif self.on_role_command is None or not self.on_role_command(command):
            self.ignored_commands += 1  # lists, reboot, a role's commands for another role

    def _on_list(self, command):
        """A chunk of a band list; one the list cannot take (a chunk missed, a delta from
        another version) has the reader announce the list it holds, once per version asked."""
        band_list = self.band_list
        entries = command.entries or b""
        if command.op == messages.LIST_SNAPSHOT:
            args = (command.list_version, command.chunk, command.chunks, entries)
            taken = band_list.snapshot(*args)
        else:
            args = (command.chunk, command.chunks, entries, command.remove or ())
            taken = band_list.delta(command.list_version, command.base_version, *args)
        if taken:
            self._list_asked = -1
            return
        self.refused_lists += 1
        if command.list_version != self._list_asked and self._born:
            self._list_asked = command.list_version
            print("band list chunk refused: announcing list", band_list.version)
            self._birth_task = asyncio.create_task(self._publish_birth())

    def _on_config(self, config, payload):
        running = self.running
        if not running.newer(config):
            return  # the one running (retained: it comes again on every connection), or older
        why = running.refuses(config, self.id)
        if why is not None:
            self.ignored_configs += 1
            print("config version", config.version, "ignored:", why)
            return
        self._config_file.write(payload)  # first: applied, it must survive a reboot
        running.apply(config)
        print("config applied,", running.describe())
        if self._born:
            self._birth_task = asyncio.create_task(self._publish_birth())

    def _load_config(self):
        """The Config applied before the last reboot, if there is one this reader can run."""
        stored = self._config_file.read()
        if not stored:
            return
        try:
            config = decode(stored)
        except ProtocolError:
            config = None  # a torn temporary file (flash.py): as if none
        if isinstance(config, Config) and self.running.refuses(config, self.id) is None:
            self.running.apply(config)
            print("config from flash,", self.running.describe())
        else:
            print("config on flash ignored: not one this reader can run")

    async def _publish_birth(self):
        held = self.band_list.version
        birth = self.session.birth(self.wall_ms(), self.running.version, held or None)
        try:
            await self.link.publish(self.session.birth_topic, birth, 1)
        except OSError:
            pass  # the link dropped; the next connection publishes a new birth

    async def _on_up(self):
        for topic in (self._cfg_topic, self._res_topic, self._cmd_topic, topics.GATEWAY_STATES):
            await self.link.subscribe(topic, 1)
        # Born from here on: a Config applied while this birth is on its way was not in it,
        # and gets a birth of its own (the birth's contents are taken before its first await).
        self._born = True
        await self._publish_birth()
        self._link_up = True
        self.board.link(True)

    async def _on_down(self):
        self._born = False
        self._link_up = False
        self.board.link(False)
        self.gateway_online = None  # the retained states come again on the next subscribe
        for i in range(_GATEWAYS_MAX):
            self._gateways[i] = None
        self._untracked = False
        self.session.next()
        self.link.will = self.session.will(self.wall_ms())


def _local_ms():
    return time.time_ns() // 1_000_000


def _role(name):
    """The role's module and its code on the wire."""
    if name == "gate":
        import gate

        return gate, messages.GATE
    if name == "pos":
        import pos

        return pos, messages.POS
    raise ValueError("unknown role %r" % name)


async def _main(config):
    role, role_code = _role(config["role"])
    board = open_board(config)
    await board.start()
    reader = Reader(config, board, role_code)
    # Held for the reader's life: asyncio keeps only weak references to running tasks.
    tasks = (
        asyncio.create_task(reader.link.keep_connected()),
        asyncio.create_task(reader.signal.run()),
        asyncio.create_task(reader.outbox.run()),
    )
    gc.collect()  # start the role with a tidy heap; taps then allocate little
    await role.run(reader)
    for task in tasks:
        task.cancel()


def run(config):
    asyncio.run(_main(config))
