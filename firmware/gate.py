# The gate role: a band taps, the gateway decides (or, offline, the reader's band list does),
# the guest sees green or red.
#
# Online the reader never grants by itself: no reply before the deadline shows RETRY ("tap
# again"), never green, and the reader is offline from then until a gateway is heard again
# (app.py). Offline it decides alone from its band list (bandlist.py): a band listed with a
# ticket for today is let in, once per band at this reader until its journal is uploaded
# (anti-passback local to the reader: it cannot see the exits of other readers); an exit is
# never refused. The guest sees the light with the offline sound, and the decision is in the
# journal before the light: uploaded later, the gateway records it as it happened.
#
# A RETRY may hide a decision the gateway did make (its reply was lost). When the same band taps
# again within 30 s while online, the reader resends the *same* operation (same mid and
# timestamp), so the gateway answers with the decision it stored instead of deciding anew: the
# guest is not refused as "already inside" because of a lost green, and no entry is ever counted
# twice. Any other band gets a fresh mid, so this never lets a second person through on the
# first one's decision. The operations live in the journal on flash, so another band answered
# in between, or a reboot, does not lose them; an answered one is ended there at once.
import os

import feedback
import operation
import sun
from bandlist import ENTRY
from journal import PAYLOAD_AT, Cursor
from micropython import const

from protocol import GATE, IN, MID_SIZE, OUT, Tap, messages, reasons

_UID_MAX = const(10)


class Gate:
    def __init__(self, reader):
        self._reader = reader
        self._uid = bytearray(_UID_MAX)
        self._cursor = Cursor()
        self.band_list = reader.band_list
        self.unrecorded = 0  # decisions shown while the journal was full (SPEC: a gate goes on)
        # What the last look through the journal found for the band tapping: its unanswered
        # operation (journal id, or -1; and its mid, ts and direction), and whether this reader
        # let it in alone before, with the gateway not yet told.
        self._resend = -1
        self._resend_op: list = [b"", 0, 0]
        self._let_in = False

    async def run(self):
        reader = self._reader
        while True:
            length = await reader.board.wait_tag(self._uid)
            if not length:
                return  # the board has no more taps (a simulated antenna that closed)
            async with reader.busy:
                try:
                    await self._tap(bytes(self._uid[:length]))
                except MemoryError:
                    # A heap too fragmented for this tap: the guest taps again, the gate goes
                    # on (a dead role loop would stop the gate for good).
                    reader.out_of_memory += 1
                    reader.signal.show(feedback.RETRY, "Please tap again")
            reader.tidy()

    async def _tap(self, uid):
        reader = self._reader
        # None: the band left mid-read; RETRY is shown and nothing is recorded.
        proof = await sun.read(reader)
        if proof is None:
            return
        now = reader.wall_ms()
        self._look(uid, now)
        if reader.offline:
            self._decide_alone(uid, proof, now)
            return
        running = reader.running  # the gateway's Config, else config.json
        # A new operation (on flash before it is sent, SPEC), or the same band again soon after
        # no answer: the same operation, with a new deadline.
        fresh = self._resend < 0
        op = [os.urandom(MID_SIZE), now, running.direction] if fresh else self._resend_op
        tap = self._tap_of(uid, proof, op, now)
        sent = self._resend if self._resend >= 0 else self._record(tap, 0, 0)
        # A reply asking for RETRY (the gateway was busy, or the tap came stale, and nothing was
        # decided) is shown like no reply; the operation stays in the journal, to be resent if
        # the band taps again within the window, or uploaded as one the guest saw RETRY for.
        result = await reader.request(tap, running.deadline_ms)
        if result is None and reader.unsent:
            # It never left (the link went just now): nobody decided it, so the reader does.
            if fresh and sent >= 0:
                reader.journal.end(sent)
            self._decide_alone(uid, proof, now)
            return
        if result is None or result.pattern == messages.RETRY:
            reader.signal.show(feedback.RETRY, "Please tap again")
            return
        if sent >= 0:
            reader.journal.end(sent)
        if result.granted:
            reader.signal.show(feedback.GREEN, result.text or "Welcome")
        else:
            reader.signal.show(feedback.RED, result.text or reasons.name(result.reason))

    def _decide_alone(self, uid, proof, now):
        """No gateway to ask: the band list decides, the journal keeps it, the light says so."""
        running = self._reader.running
        if running.direction == OUT:
            granted, reason = True, reasons.OK  # exits are never refused: no look-up
        else:
            granted, reason = self._entry_alone(uid)
        # Always a fresh operation: if the gateway decided this band's unanswered one, that
        # decision stands as well, and the report shows both.
        tap = self._tap_of(uid, proof, [os.urandom(MID_SIZE), now, running.direction], now)
        state = operation.OFFLINE | (operation.GRANTED if granted else 0)
        self._record(tap, state, reason)
        self._reader.outbox.poke()
        if granted:
            self._reader.signal.show(feedback.OFFLINE_GREEN, "Welcome")
        else:
            self._reader.signal.show(feedback.OFFLINE_RED, reasons.name(reason))

    def _entry_alone(self, uid):
        """(granted, reason) of an entry decided from the band list."""
        flags = self.band_list.find(uid)  # -1: not listed
        if flags < 0 or not flags & ENTRY:
            return False, reasons.OFFLINE_NOT_LISTED
        if self._let_in:
            return False, reasons.ALREADY_INSIDE
        return True, reasons.OFFLINE_LIST

    def _tap_of(self, uid, proof, op, now):
        """The Tap of operation op ([mid, ts, direction]) sent now."""
        reader = self._reader
        return Tap(
            reader=reader.id,
            ts=op[1],
            mid=op[0],
            seq=reader.next_seq(),
            deadline=now + reader.running.deadline_ms,
            uid=uid,
            role=GATE,
            direction=op[2],
            gate=reader.running.gate,
            # This tap's own SUN read, on a resend too: the gateway answers a known mid from its
            # store, and a fresh read is never taken for a replay.
            picc=proof[0],
            file=proof[1],
            cmac=proof[2],
        )

    def _record(self, tap, state, reason):
        """The operation into the journal; its id, or -1 (counted) when the journal is full."""
        op = self._reader.record(tap, state, reason)
        if op < 0:
            self.unrecorded += 1
        return op

    def _look(self, uid, now):
        """Look through the journal for this band: its latest unanswered operation, resent if
        it is within the window (an older one never is: the band moved on from it), and
        whether this reader let the band in alone since the last upload."""
        journal, cursor, buf = self._reader.journal, self._cursor, self._reader.scratch
        self._resend, self._let_in = -1, False
        op = self._resend_op
        more = journal.first(cursor)
        while more:
            if operation.same_band(buf, PAYLOAD_AT, uid):
                state = operation.state(buf, PAYLOAD_AT)
                if not state & operation.OFFLINE:  # oldest first: the last one seen is latest
                    op[0] = operation.mid(buf, PAYLOAD_AT)
                    op[1] = operation.ts(buf, PAYLOAD_AT)
                    op[2] = operation.direction(buf, PAYLOAD_AT)
                    self._resend = cursor.id
                elif state & operation.GRANTED and operation.direction(buf, PAYLOAD_AT) == IN:
                    self._let_in = True
            more = journal.next(cursor)
        # A clock set back makes its age unknowable: then a fresh mid too (SPEC, Resending).
        if self._resend >= 0 and not 0 <= now - op[1] < operation.RESEND_WINDOW_MS:
            self._resend = -1


async def run(reader):
    await Gate(reader).run()
