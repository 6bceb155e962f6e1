# The outbox: one task that uploads the journal (journal.py) to the gateway, oldest first, and
# forgets an operation only once the gateway has acknowledged it (SPEC, "Offline decisions and
# the journal").
#
# Theory of operation
# - What is due: every pending operation, oldest first, up to the first one that is an online
#   tap still inside the resend window (the same band tapping again within 30 s resends it, so
#   it is not the outbox's yet: SPEC, Resending). Order is kept: nothing behind it goes first.
# - An upload is one Journal of as many of them as fit the reader's transmit buffer (at most
#   JOURNAL_MAX), each as an offline Tap with its original mid and ts: a decision the reader
#   made alone as the guest saw it, an online tap that never got its answer as one the guest
#   was asked to tap again for (no_reply). It goes out like a tap (Reader.request, its own slot,
#   so a guest's tap is never kept waiting behind it), and its Result (corr: the journal's mid)
#   is the acknowledgement: then, and only then, each operation in it is ended. No answer, or a
#   refusal (busy): the operations stay, and go again after a pause.
# - When: whenever the reader is online (the link is up, a gateway is, and no reply went missing
#   since) and something is due. A tap that appends to the journal pokes the outbox; otherwise
#   it looks once a second.
# - The shared buffer (Reader.scratch) also holds the journal's reads and every message being
#   encoded, so the outbox collects and sends under Reader.busy, which a tap holds from its band
#   read until its light; the wait for the acknowledgement is outside it.
import asyncio
import os

import operation
from journal import PAYLOAD_AT, Cursor
from micropython import const

from protocol import MID_SIZE, Journal, ProtocolError
from protocol.messages import JOURNAL_MAX

_IDLE_MS = const(1000)  # how often an idle outbox looks for work
_RETRY_MS = const(2000)  # after an upload that got no acknowledgement
_UPLOAD = const(1)  # Reader.request's slot for uploads
_ENVELOPE = const(72)  # a Journal's own envelope and keys, with a 32-character reader id
_TAP_OVER_OPERATION = const(24)  # an offline Tap's CBOR beyond its operation's bytes (about)


class Outbox:
    def __init__(self, reader):
        self._reader = reader
        self._cursor = Cursor()
        self._ids = [0] * JOURNAL_MAX  # the journal ids of the upload in flight
        self._due = asyncio.Event()
        self.uploaded = 0  # operations acknowledged
        self.unacknowledged = 0  # uploads that got no acknowledgement

    def poke(self):
        self._due.set()

    async def run(self):
        reader = self._reader
        while True:
            sent = 0
            if not reader.offline and reader.journal.pending:
                try:
                    sent = await self._upload()
                except (MemoryError, OSError) as exc:
                    # A full heap or a flash error this time: the operations stay on flash, and
                    # the outbox must outlive it (a dead task would leave them there for good).
                    print("outbox: upload failed,", repr(exc))
                    sent = -1
            if sent >= 0:
                if sent == 0:
                    await self._wait(_IDLE_MS)
            else:
                self.unacknowledged += 1
                await self._wait(_RETRY_MS)

    async def _wait(self, ms):
        self._due.clear()
        try:
            await asyncio.wait_for_ms(self._due.wait(), ms)
        except asyncio.TimeoutError:
            pass

    async def _upload(self):
        """Upload what is due; how many were acknowledged, 0 if none was due (or the link
        went), -1 if the upload got no acknowledgement."""
        reader = self._reader
        async with reader.busy:
            count = await self._send(reader.wall_ms())
        if not count:
            return 0
        reply = await reader.reply(_UPLOAD, reader.running.deadline_ms)  # matched by its corr
        if reply is None or not reply.granted:
            return -1
        async with reader.busy:  # end() writes through the shared buffer too
            for i in range(count):
                reader.journal.end(self._ids[i])
        self.uploaded += count
        return count

    async def _send(self, now_ms):
        """Send the next upload; how many operations it carries, 0 if none was due or the link
        is down. Their journal ids are in _ids."""
        reader, journal, cursor = self._reader, self._reader.journal, self._cursor
        buf = reader.scratch
        taps: list = []
        room = len(buf) - _ENVELOPE  # what the operations' Taps may take of the buffer
        more = journal.first(cursor)
        while more and len(taps) < JOURNAL_MAX:
            # A Tap is about its operation's size plus the envelope's keys: one that would not
            # fit is not made (the heap is short; encoding checks the real size below).
            room -= cursor.length + _TAP_OVER_OPERATION
            if taps and room < 0:
                break
            state = operation.state(buf, PAYLOAD_AT)
            age = now_ms - operation.ts(buf, PAYLOAD_AT)
            if not state & operation.OFFLINE and 0 <= age < operation.RESEND_WINDOW_MS:
                break  # the band may still tap again for it
            self._ids[len(taps)] = cursor.id
            taps.append(operation.offline_tap(buf, PAYLOAD_AT, reader.id, reader.next_seq()))
            more = journal.next(cursor)
        while taps:
            message = Journal(reader=reader.id, ts=now_ms, mid=os.urandom(MID_SIZE), taps=taps)
            try:
                sent = await reader.send(message, _UPLOAD)
            except ProtocolError:
                taps.pop()  # larger than the transmit buffer: one tap fewer
                continue
            return len(taps) if sent else 0
        return 0
