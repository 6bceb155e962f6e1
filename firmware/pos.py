# The pos role: the till asks the gateway for a charge, the gateway arms this reader with it
# (Command CHARGE), a band taps, the gateway decides, the guest sees green or red.
#
# One charge is armed at a time: a new CHARGE replaces it, a CANCEL for it (only for it) ends
# it. While armed the display's idle text is the charge's label; a band tapping with nothing
# armed is told so, and nothing is sent. When the charge asks for a PIN the guest types it on
# the keypad; it travels sealed in a PIN block bound to the charge (pinblock.py), never plain.
#
# As on a gate, no reply before the deadline shows RETRY, never green. A RETRY may hide a charge
# the gateway did make (its reply was lost): when the same band taps again for the same charge,
# the reader resends the *same* operation (mid, ts and PIN block), so the gateway answers with
# the decision it stored and never charges twice. Another band gets a fresh mid. The one pending
# operation lives in RAM only: arming does not survive a reboot either (the CHARGE command is
# not retained), so after a reboot there is no charge left to resend for.
#
# Few names on purpose (pinblock.py says why): the pending operation is one list, not fields.
import asyncio
import os
import time
from binascii import unhexlify

import feedback
import sun
from micropython import const
from pinblock import PinBlock

from protocol import MID_SIZE, POS, Tap, messages, reasons

_UID_MAX = const(10)
_BLOCK = const(16)
_PIN_TIMEOUT_MS = const(30_000)  # without a key: the guest walked away
_ENTER = const(35)  # ord("#")
# The pending operation's list: what is resent as it was.
_UID = const(0)
_CHARGE = const(1)
_MID = const(2)
_TS = const(3)
_WITH_PIN = const(4)


class Pos:
    def __init__(self, reader):
        self._reader = reader
        self._uid = bytearray(_UID_MAX)
        self.pin = PinBlock(unhexlify(reader.config["pin_key"]))
        # The armed charge's id (None: nothing armed; a new CHARGE is a new object, so a PIN
        # prompt notices a replacement by identity), and whether it needs a PIN.
        self.charge = None
        self.pin_required = False
        # The operation sent without an answer (no reply, or RETRY): [uid, charge, mid, ts,
        # with PIN], and its PIN block, preallocated.
        self._op: list | None = None
        self._sent = bytearray(_BLOCK)
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
        """Nothing armed, nothing pending; the display shows idle_text when idle."""
        if self._prompt is not None:
            self._prompt.cancel()
        self.charge = None
        self.pin_required = False
        self._op = None
        sent = self._sent
        for i in range(_BLOCK):
            sent[i] = 0
        self._reader.signal.idle(idle_text)

    async def _tap(self, uid):
        reader = self._reader
        signal = reader.signal
        charge = self.charge
        if charge is None:
            signal.show(feedback.RED, "No sale open")
            return
        # None: the band left mid-read, or every gateway said it is offline (RETRY shown, as a
        # gate does); nothing is sent, the pending operation stays as it was.
        async with reader.busy:  # the band's NDEF goes into the shared buffer (app.py)
            proof = await sun.read(reader)
        if proof is None:
            return
        op = self._op
        # The same band for the same charge after no answer: the same operation, no new PIN.
        fresh = op is None or op[_UID] != uid or op[_CHARGE] is not charge
        while True:
            if fresh or op is None:  # (op is None only when fresh: said for mypy)
                with_pin = self.pin_required
                if with_pin:
                    self._prompt = asyncio.create_task(self._ask_pin(charge))
                    try:
                        typed = await self._prompt
                    except asyncio.CancelledError:
                        typed = False  # cancelled or replaced: the command showed what happened
                    self._prompt = None
                    if not typed:
                        self.pin.clear()
                        return
                op = self._op = [uid, charge, os.urandom(MID_SIZE), reader.wall_ms(), with_pin]
            deadline_ms = reader.running.deadline_ms
            tap = Tap(
                reader=reader.id,
                ts=op[_TS],
                mid=op[_MID],
                seq=reader.next_seq(),
                deadline=reader.wall_ms() + deadline_ms,
                uid=uid,
                role=POS,
                charge=charge,
                pin=self._sent if op[_WITH_PIN] else None,
                # This tap's SUN read, also when the gateway asked for a PIN: the band may be
                # gone while the guest types, and the gateway takes the read again by design.
                picc=proof[0],
                file=proof[1],
                cmac=proof[2],
            )
            async with reader.busy:
                reply = await reader.request(tap, deadline_ms)
            if reply is None or reply.pattern == messages.RETRY:
                # Nothing decided, or nothing heard: the operation stays, to be resent as is.
                signal.show(feedback.RETRY, "Please tap again")
                return
            self._op = None
            text = reply.text or reasons.name(reply.reason)
            if self.charge is not charge:
                # Cancelled or replaced while the tap was on its way: the decision is shown,
                # the arming stays as the command left it.
                signal.show(feedback.GREEN if reply.granted else feedback.RED, text)
                return
            if reply.granted:
                self._disarm()
                signal.show(feedback.GREEN, text)
                return
            if reply.reason != reasons.PIN_REQUIRED:
                if reply.reason != reasons.WRONG_PIN:
                    self._disarm()  # declined: the till opens a new sale if it wants
                # A wrong PIN keeps the sale open: the guest may try again (the gateway locks
                # the band after a few).
                signal.show(feedback.RED, text)
                return
            # The gateway declined the tap without a PIN (recorded so): this charge needs one
            # from now on; ask for it and send it as a new operation.
            self.pin_required = fresh = True

    async def _ask_pin(self, charge):
        """Prompt for the PIN and seal it for charge into _sent; False if none came."""
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
            elif pin.seal(charge, self._sent) is not None:  # the digits are zeroed by it
                return True
            else:  # too short: start again
                signal.show(feedback.PIN, "PIN of 4 to 12 digits", False)


async def run(reader):
    await Pos(reader).run()
