# The gate role: a band taps, the gateway decides, the guest sees green or red.
#
# The reader never grants entry by itself here: no reply before the deadline shows RETRY ("tap
# again"), never green. Offline decisions from a band list on flash come with the offline journal.
#
# A RETRY may hide a decision the gateway did make (its reply was lost). When the same band taps
# again soon after, the reader resends the *same* operation (same mid and timestamp), so the
# gateway answers with the decision it stored instead of deciding anew: the guest is not refused
# as "already inside" because of a lost green, and no entry is ever counted twice. Any other band
# gets a fresh mid, so this never lets a second person through on the first one's decision.
# The unanswered operations live on flash, one per band (unanswered.py): another band answered
# in between, or a reboot, does not lose them.
import os

import feedback
import sun
from micropython import const
from unanswered import Unanswered

from protocol import GATE, MID_SIZE, Tap, messages, reasons

_UID_MAX = const(10)


class Gate:
    def __init__(self, reader):
        self._reader = reader
        self._uid = bytearray(_UID_MAX)
        self._unanswered = Unanswered(reader.config["state_file"] + ".taps")

    async def run(self):
        while True:
            length = await self._reader.board.wait_tag(self._uid)
            if not length:
                return  # the board has no more taps (a simulated antenna that closed)
            await self._tap(bytes(self._uid[:length]))
            self._reader.tidy()

    async def _tap(self, uid):
        reader = self._reader
        # None: the band left mid-read, or every gateway said it is offline; RETRY is shown and
        # nothing is sent, so the band's unanswered operation, if it has one, stays as it was.
        proof = await sun.read(reader)
        if proof is None:
            return
        running = reader.running  # the gateway's Config, else config.json
        deadline_ms = running.deadline_ms
        now = reader.wall_ms()
        table = self._unanswered
        slot = table.find(uid, now)
        if slot < 0:  # a new operation, on flash before it is sent (SPEC: mid persisted first)
            mid, ts, direction = os.urandom(MID_SIZE), now, running.direction
            slot = table.add(uid, mid, ts, direction)
        else:  # the same band again soon after no answer: the same operation, a new deadline
            mid, ts, direction = table.mid(slot), table.ts(slot), table.direction(slot)
        tap = Tap(
            reader=reader.id,
            ts=ts,
            mid=mid,
            seq=reader.next_seq(),
            deadline=now + deadline_ms,
            uid=uid,
            role=GATE,
            direction=direction,
            gate=running.gate,
            # This tap's own SUN read, on a resend too: the gateway answers a known mid from its
            # store, and a fresh read is never taken for a replay.
            picc=proof[0],
            file=proof[1],
            cmac=proof[2],
        )
        # A reply asking for RETRY (the gateway was busy, or the tap came stale, and nothing was
        # decided) is shown like no reply; the operation stays in the table, to be resent if the
        # band taps again within the window.
        result = await reader.request(tap, deadline_ms)
        if result is None or result.pattern == messages.RETRY:
            reader.signal.show(feedback.RETRY, "Please tap again")
            return
        table.answered(slot)
        if result.granted:
            reader.signal.show(feedback.GREEN, result.text or "Welcome")
        else:
            reader.signal.show(feedback.RED, result.text or reasons.name(result.reason))


async def run(reader):
    await Gate(reader).run()
