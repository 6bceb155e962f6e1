# The pos role: the till asks the gateway for a charge, the gateway arms this reader with it
# (Command CHARGE), a band taps, the gateway decides, the guest sees green or red.
#
# One charge is armed at a time: a new CHARGE replaces it, a CANCEL for it (only for it) ends
# it. While armed the display's idle text is the charge's label; a band tapping with nothing
# armed is told so, and nothing is sent. When the charge asks for a PIN the guest types it on
# the keypad; it travels sealed in a PIN block bound to the charge (pinblock.py), never plain.
#
# Every tap is an operation in the journal on flash before it is sent (as on a gate: app.py,
# journal.py), ended once the gateway answers. As on a gate, no reply before the deadline shows
# RETRY, never green. A RETRY may hide a charge the gateway did make (its reply was lost): when
# the same band taps again for the same charge within the resend window, the reader resends the
# *same* operation (mid, ts and PIN block), so the gateway answers with the decision it stored
# and never charges twice. Another band, or the window passed, gets a fresh mid; the old one
# stays in the journal, and the outbox uploads it as one the guest was asked to tap again for
# (no_reply). The PIN block lives in RAM only, never on flash: after a reboot (arming does not
# survive one either: CHARGE is not retained) there is nothing left to resend it for.
#
# Offline (app.py says when), or when a tap never left (the link went as it was sent), the till
# decides alone the sale it is armed with, by the SPEC's table ("A till deciding alone"): a full
# journal refuses it (journal_full, the one decision not kept: a sale is never granted that
# cannot be kept); then the band list (bandlist.py) must list the band with PAY; the amount must
# be within the Config's offline_floor, and with the band's offline sales still in the journal
# within its offline_cap (no floor or cap: no offline sale); a band whose entry has PIN types
# the PIN, checked against the entry's offline PIN check (pinblock.py). A wrong PIN keeps the
# sale armed, the third for one armed sale ends it; a granted sale ends it; other refusals keep
# it armed (offline no new CHARGE can come, and the guest may pay with another band). Each
# decision is journalled before its light (the offline one), and the outbox is poked.
#
# Few names on purpose (pinblock.py says why): the pending operation is one list, not fields.
import asyncio
import os
import time
from binascii import unhexlify

import feedback
import operation
import sun
from bandlist import PAY, PIN
from hmac256 import HmacSha256
from journal import PAYLOAD_AT, Cursor
from micropython import const
from pinblock import PIN_MIN, PinBlock

from protocol import MID_SIZE, POS, Tap, messages, reasons

_UID_MAX = const(10)
_BLOCK = const(16)
_PIN_TIMEOUT_MS = const(30_000)  # without a key: the guest walked away
_ENTER = const(35)  # ord("#")
_WRONG_PINS_MAX = const(3)  # offline: the third wrong PIN for one armed sale ends it
_CHECK = const(12)  # a list entry's PIN check, 2 bytes (SPEC, "The band list")
_SALT = const(14)  # and its PIN salt, 2 bytes
# The pending operation's list: what is resent as it was.
_UID = const(0)
_CHARGE = const(1)
_MID = const(2)
_TS = const(3)
_WITH_PIN = const(4)
_KEPT = const(5)  # its journal id (-1: the journal was full)


class Pos:
    def __init__(self, reader):
        self._reader = reader
        self._uid = bytearray(_UID_MAX)
        self.pin = PinBlock(unhexlify(reader.config["pin_key"]))
        offline_key = reader.config.get("offline_pin_key")
        self._offline_mac = HmacSha256(unhexlify(offline_key)) if offline_key else None
        # The armed charge's id (None: nothing armed; a new CHARGE is a new object, so a PIN
        # prompt notices a replacement by identity), its amount, whether it needs a PIN, and the
        # wrong PINs typed for it offline.
        self.charge = None
        self.amount = 0
        self.pin_required = False
        self.wrong_pins = 0
        # The operation sent without an answer (no reply, or RETRY): [uid, charge, mid, ts,
        # with PIN, journal id], and its PIN block, preallocated.
        self._op: list | None = None
        self._sent = bytearray(_BLOCK)
        # The band's list entry: whether it asks for the PIN, and its PIN check and salt, copied
        # out of the list's buffer at the look-up (a list chunk taken while the guest types
        # overwrites that buffer).
        self._entry_asks_pin = False
        self._check = bytearray(2)
        self._salt = bytearray(2)
        self._cursor = Cursor()
        # The PIN prompt, a task of its own while it runs: a CANCEL or a new CHARGE cancels it
        # at once, instead of the prompt waking now and then to look.
        self._prompt: asyncio.Task | None = None
        reader.on_role_command = self._on_command

    async def run(self):
        board = self._reader.board
        while True:
            length = await board.wait_tag(self._uid)
            if not length:
                return  # the board has no more taps (a simulated antenna that closed)
            await self._tap(bytes(self._uid[:length]))
            self._reader.tidy()

    def _on_command(self, command):
        op = command.op
        if op == messages.CHARGE:
            self._disarm(command.label or "")  # the gateway always sends a label
            self.charge = command.charge
            self.amount = command.amount
            self.pin_required = bool(command.pin_required)
            return True
        if op == messages.CANCEL:
            # A CANCEL for a charge no longer armed has nothing to end.
            if self.charge is not None and command.charge == self.charge:
                self._disarm()
                self._reader.signal.show(feedback.RED, "Cancelled")
            return True
        return False

    def _disarm(self, idle_text=""):
        """Nothing armed, nothing pending; the display shows idle_text when idle. A pending
        operation stays in the journal: the outbox uploads it."""
        if self._prompt is not None:
            self._prompt.cancel()
        self.charge = None
        self.amount = 0
        self.pin_required = False
        self.wrong_pins = 0
        self._op = None
        sent = self._sent
        for i in range(_BLOCK):
            sent[i] = 0
        self._reader.signal.idle(idle_text)

    async def _tap(self, uid):
        reader = self._reader
        charge = self.charge
        if charge is None:
            reader.signal.show(feedback.RED, "No sale open")
            return
        # None: the band left mid-read (RETRY shown); nothing is sent or decided, the pending
        # operation stays as it was.
        async with reader.busy:  # the band's NDEF goes into the shared buffer (app.py)
            proof = await sun.read(reader)
        if proof is None:
            return
        if reader.offline:
            await self._decide_alone(uid, charge, proof)
        else:
            await self._ask_gateway(uid, charge, proof)

    async def _ask_gateway(self, uid, charge, proof):
        reader = self._reader
        op = self._op
        # The same band for the same charge after no answer, within the window: the same
        # operation, no new PIN. (A clock set back makes its age unknowable: a fresh one.)
        fresh = (
            op is None
            or op[_UID] != uid
            or op[_CHARGE] is not charge
            or not 0 <= reader.wall_ms() - op[_TS] < operation.RESEND_WINDOW_MS
        )
        while True:
            if fresh or op is None:  # (op is None only when fresh: said for mypy)
                with_pin = self.pin_required
                if with_pin:
                    if not await self._typed_pin():
                        return
                    self.pin.seal(charge, self._sent)  # the digits are zeroed by it
                op = self._op = self._new_op(uid, charge, with_pin)
            tap = self._tap_of(op, proof)
            async with reader.busy:
                if fresh:  # on flash before it is sent (SPEC); the PIN block never is
                    op[_KEPT] = reader.record(tap, 0, 0, self.amount)
                reply = await reader.request(tap, reader.running.deadline_ms)
                never_left = reply is None and reader.unsent
                answered = reply is not None and reply.pattern != messages.RETRY
                if op[_KEPT] >= 0 and (answered or (never_left and fresh)):
                    reader.journal.end(op[_KEPT])
            if never_left:
                # The link went as it was sent: nobody decided it, so the reader does.
                if fresh:
                    self._op = None
                await self._decide_alone(uid, charge, proof)
                return
            if reply is None or not answered:
                # Nothing decided, or nothing heard: the operation stays, to be resent as is.
                reader.signal.show(feedback.RETRY, "Please tap again")
                return
            self._op = None
            if not self._answered(reply, charge):
                return
            # The gateway declined the tap without a PIN (recorded so): this charge needs one
            # from now on; ask for it and send it as a new operation.
            self.pin_required = fresh = True

    def _answered(self, reply, charge):
        """Show the gateway's decision and end the sale if it ends it; False, unless the
        gateway asks for the PIN (the sale goes on with a new operation)."""
        signal = self._reader.signal
        text = reply.text or reasons.name(reply.reason)
        if self.charge is not charge:
            # Cancelled or replaced while the tap was on its way: the decision is shown, the
            # arming stays as the command left it.
            signal.show(feedback.GREEN if reply.granted else feedback.RED, text)
            return False
        if reply.granted:
            self._disarm()
            signal.show(feedback.GREEN, text)
            return False
        if reply.reason == reasons.PIN_REQUIRED:
            return True
        if reply.reason != reasons.WRONG_PIN:
            self._disarm()  # declined: the till opens a new sale if it wants
        # A wrong PIN keeps the sale open: the guest may try again (the gateway locks the band
        # after a few).
        signal.show(feedback.RED, text)
        return False

    async def _decide_alone(self, uid, charge, proof):
        """No gateway to ask: the SPEC's table decides, the journal keeps it, the light says so."""
        reader = self._reader
        async with reader.busy:  # the journal is read through the shared buffer
            reason = self._refusal(uid)
        if reason == reasons.JOURNAL_FULL:
            # Not journalled, so not granted either: a sale the reader could lose.
            reader.signal.show(feedback.OFFLINE_RED, reasons.name(reason))
            return
        if reason < 0 and self._entry_asks_pin:
            if not await self._typed_pin():
                return  # no PIN, nothing decided: the sale stays armed
            if self.charge is not charge:
                self.pin.clear()
                return  # cancelled or replaced while the guest typed: the command showed it
            if not self.pin.check(self._offline_mac, self._salt, self._check):  # digits zeroed
                reason = reasons.WRONG_PIN
        granted = reason < 0
        if granted:
            reason = reasons.OFFLINE_LIST
        # Always a fresh operation: if the gateway decided this band's unanswered one, that
        # decision stands as well, and the report shows both.
        tap = self._tap_of(self._new_op(uid, charge, False), proof)
        state = operation.OFFLINE | (operation.GRANTED if granted else 0)
        async with reader.busy:
            kept = reader.record(tap, state, reason, self.amount)
        if kept < 0:  # filled while the guest typed: refused, as row 1 would have
            reader.signal.show(feedback.OFFLINE_RED, reasons.name(reasons.JOURNAL_FULL))
            return
        reader.outbox.poke()
        if granted:
            self._disarm()
            reader.signal.show(feedback.OFFLINE_GREEN, "Paid")
            return
        if reason == reasons.WRONG_PIN:
            self.wrong_pins += 1
            if self.wrong_pins >= _WRONG_PINS_MAX:
                self._disarm()
        reader.signal.show(feedback.OFFLINE_RED, reasons.name(reason))

    def _refusal(self, uid):
        """Rows 1 to 3 of the SPEC's table for this band's sale: the reason it is refused, or
        -1 (then _entry_asks_pin says whether row 4, the PIN, applies). Hold `busy`."""
        reader = self._reader
        journal = reader.journal
        if journal.pending >= journal.capacity:
            return reasons.JOURNAL_FULL
        band_list = reader.band_list
        flags = band_list.find(uid)
        if flags < 0 or not flags & PAY:
            return reasons.OFFLINE_NOT_LISTED
        found = band_list.found()
        for i in range(2):
            self._check[i] = found[_CHECK + i]
            self._salt[i] = found[_SALT + i]
        self._entry_asks_pin = bool(flags & PIN)
        running = reader.running
        floor, cap = running.offline_floor, running.offline_cap
        if floor is None or cap is None or self.amount > floor:
            return reasons.OFFLINE_LIMIT
        if self._spent_alone(uid) + self.amount > cap:
            return reasons.OFFLINE_LIMIT
        if self._entry_asks_pin and self._offline_mac is None:
            return reasons.OFFLINE_LIMIT  # no offline PIN key (config.json): no PIN to check
        return -1

    def _spent_alone(self, uid):
        """What the band paid at this reader alone, not yet acknowledged by the gateway: its
        granted offline sales still in the journal."""
        journal, cursor, buf = self._reader.journal, self._cursor, self._reader.scratch
        total = 0
        more = journal.first(cursor)
        while more:
            if (
                operation.state(buf, PAYLOAD_AT) == operation.OFFLINE | operation.GRANTED
                and operation.role(buf, PAYLOAD_AT) == POS
                and operation.same_band(buf, PAYLOAD_AT, uid)
            ):
                total += operation.amount(buf, PAYLOAD_AT)
            more = journal.next(cursor)
        return total

    def _new_op(self, uid, charge, with_pin):
        """A fresh operation: [uid, charge, mid, ts, with PIN, journal id (none yet)]."""
        return [uid, charge, os.urandom(MID_SIZE), self._reader.wall_ms(), with_pin, -1]

    def _tap_of(self, op, proof):
        """The Tap of operation op, sent now (a new seq and deadline on every send)."""
        reader = self._reader
        return Tap(
            reader=reader.id,
            ts=op[_TS],
            mid=op[_MID],
            seq=reader.next_seq(),
            deadline=reader.wall_ms() + reader.running.deadline_ms,
            uid=op[_UID],
            role=POS,
            charge=op[_CHARGE],
            pin=self._sent if op[_WITH_PIN] else None,
            # This tap's SUN read, also when the gateway asked for a PIN: the band may be
            # gone while the guest types, and the gateway takes the read again by design.
            picc=proof[0],
            file=proof[1],
            cmac=proof[2],
        )

    async def _typed_pin(self):
        """Prompt for the PIN; True once 4 to 12 digits are typed, left in self.pin for the
        caller to seal or check (either zeroes them); False (zeroed) if none came, or the
        prompt was cancelled (a CANCEL or a new CHARGE: the command showed what happened)."""
        self._prompt = asyncio.create_task(self._ask_pin())
        try:
            typed = await self._prompt
        except asyncio.CancelledError:
            typed = False
        self._prompt = None
        if not typed:
            self.pin.clear()
        return typed

    async def _ask_pin(self):
        signal = self._reader.signal
        board = self._reader.board
        pin = self.pin
        pin.clear()
        signal.show(feedback.PIN, "Enter PIN", False)
        while True:
            asked = time.ticks_ms()
            key = await board.wait_key(_PIN_TIMEOUT_MS)
            if key is None:
                if time.ticks_diff(time.ticks_ms(), asked) < _PIN_TIMEOUT_MS // 2:
                    # wait_key came back at once: this board has no keypad (or it closed).
                    signal.show(feedback.RED, "No PIN keypad")
                else:
                    signal.show(feedback.RETRY, "PIN timed out")
                return False
            if ord(key) != _ENTER:
                pin.add(key)
            elif pin.length >= PIN_MIN:
                return True
            else:  # too short: start again
                pin.clear()
                signal.show(feedback.PIN, "PIN of 4 to 12 digits", False)


async def run(reader):
    await Pos(reader).run()
