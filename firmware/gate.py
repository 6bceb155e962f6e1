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
import os
import time

import feedback
from micropython import const

from protocol import GATE, IN, MID_SIZE, OUT, Tap, messages, reasons

_UID_MAX = const(10)
_RESEND_WINDOW_MS = const(30_000)  # how long an unanswered tap may be resent as the same one


class Gate:
    def __init__(self, reader):
        settings = reader.config["gate"]
        self._reader = reader
        self._direction = OUT if settings["direction"] == "out" else IN
        self._gate = settings.get("gate") or None
        self._uid = bytearray(_UID_MAX)
        # The last tap that got no reply, to resend as the same operation (uid None: none).
        self._unanswered_uid = None
        self._unanswered_mid = b""
        self._unanswered_ts = 0
        self._unanswered_at = time.ticks_ms()  # when its RETRY was shown

    async def run(self):
        while True:
            length = await self._reader.board.wait_tag(self._uid)
            if not length:
                return  # the board has no more taps (a simulated antenna that closed)
            await self._tap(bytes(self._uid[:length]))
            self._reader.tidy()

    async def _tap(self, uid):
        reader = self._reader
        deadline_ms = reader.config["deadline_ms"]
        mid, ts = self._operation(uid)
        tap = Tap(
            reader=reader.id,
            ts=ts,
            mid=mid,
            seq=reader.next_seq(),
            deadline=reader.wall_ms() + deadline_ms,
            uid=uid,
            role=GATE,
            direction=self._direction,
            gate=self._gate,
        )
        # Every gateway said it is offline (bl/1/$gw/+/state): ask for another tap now, not in a
        # second. A reply asking for RETRY (the gateway was busy and decided nothing) is shown
        # like no reply, and the same operation is resent if the band taps again.
        offline = reader.gateway_online is False
        result = None if offline else await reader.request(tap, deadline_ms)
        if result is None or result.pattern == messages.RETRY:
            self._unanswered_uid, self._unanswered_mid, self._unanswered_ts = uid, mid, ts
            self._unanswered_at = time.ticks_ms()
            reader.signal.show(feedback.RETRY, "Please tap again")
            return
        self._unanswered_uid = None
        if result.granted:
            reader.signal.show(feedback.GREEN, result.text or "Welcome")
        else:
            reader.signal.show(feedback.RED, result.text or reasons.name(result.reason))

    def _operation(self, uid):
        """(mid, ts) for this tap: the unanswered one's when the same band taps again soon."""
        age = time.ticks_diff(time.ticks_ms(), self._unanswered_at)
        if uid == self._unanswered_uid and age < _RESEND_WINDOW_MS:
            return self._unanswered_mid, self._unanswered_ts
        return os.urandom(MID_SIZE), self._reader.wall_ms()


async def run(reader):
    await Gate(reader).run()
