# One operation as the journal keeps it (journal.py stores it as opaque bytes): what a tap was
# and, for one decided offline, what the guest saw. A fixed layout, so a tap can look through
# the journal (the band's unanswered operation, an entry this reader already let through) by
# reading bytes at known places, without decoding anything.
#
#   byte    0        1       2      3          4         5..14   15..30  31..38  39..54
#           state    reason  role   direction  uid len   uid     mid     ts      charge
#   byte    55       56      57...                                  then 8 bytes
#           picc len file len picc, file, cmac (8 bytes when picc)  amount (u64)
#
# amount: a pos operation's sale in minor units (0 for a gate), for the cap on a band's offline
# sales (pos.py); it travels in no Tap (the gateway knows the charge's amount). It comes after the
# SUN part, at a place its two lengths give, so a journal written before it was added (gate
# operations only, which never read it) reads as it did.
#
# state: OFFLINE (the reader decided alone) and GRANTED (what the guest saw: green). An online
# operation (OFFLINE clear) is one sent to the gateway and not answered yet: the same band
# tapping again soon resends it; once it is too old for that, the outbox uploads it as an
# offline tap the guest was shown "try again" for (reason no_reply).
import struct

from micropython import const

from protocol import Tap, reasons

RESEND_WINDOW_MS = const(30_000)  # SPEC, Resending: an unanswered tap is resendable this long
OFFLINE = const(1)
GRANTED = const(2)
_STATE = const(0)
_REASON = const(1)
_ROLE = const(2)
_DIRECTION = const(3)
_UID_LEN = const(4)
_UID = const(5)
_MID = const(15)
_TS = const(31)
_CHARGE = const(39)
_PICC_LEN = const(55)
_FILE_LEN = const(56)
_SUN = const(57)
_UID_MAX = const(10)
_CMAC = const(8)
_AMOUNT_SIZE = const(8)
SIZE_MAX = const(145)  # 57 + 24 + 48 + 8 + 8


def pack(buf, at, state, reason, tap, *, amount=0):
    """The operation of ``tap`` (a pos one's sale of ``amount``) into buf[at:]; its length."""
    buf[at + _STATE] = state
    buf[at + _REASON] = reason
    buf[at + _ROLE] = tap.role
    buf[at + _DIRECTION] = tap.direction or 0
    uid = tap.uid
    buf[at + _UID_LEN] = len(uid)
    buf[at + _UID : at + _UID + len(uid)] = uid
    buf[at + _MID : at + _MID + 16] = tap.mid
    struct.pack_into(">Q", buf, at + _TS, tap.ts)
    charge = tap.charge
    for i in range(16):  # zeros without one: the buffer held a band's NDEF a moment ago
        buf[at + _CHARGE + i] = charge[i] if charge is not None else 0
    picc, file = tap.picc or b"", tap.file or b""
    buf[at + _PICC_LEN] = len(picc)
    buf[at + _FILE_LEN] = len(file)
    end = at + _SUN
    for part in (picc, file, tap.cmac or b""):
        buf[end : end + len(part)] = part
        end += len(part)
    struct.pack_into(">Q", buf, end, amount)
    return end + _AMOUNT_SIZE - at


def same_band(buf, at, uid):
    """Whether the operation at buf[at:] is a tap of this band."""
    n = len(uid)
    if buf[at + _UID_LEN] != n:
        return False
    at += _UID
    for i in range(n):  # noqa: SIM110 - all(<generator>) allocates on every tap
        if buf[at + i] != uid[i]:
            return False
    return True


def state(buf, at):
    return buf[at + _STATE]


def direction(buf, at):
    return buf[at + _DIRECTION]


def ts(buf, at):
    return struct.unpack_from(">Q", buf, at + _TS)[0]


def mid(buf, at):
    return bytes(buf[at + _MID : at + _MID + 16])


def role(buf, at):
    return buf[at + _ROLE]


def amount(buf, at):
    """A pos operation's sale, minor units (an operation written before amounts: not pos)."""
    picc_len = buf[at + _PICC_LEN]
    end = at + _SUN + picc_len + buf[at + _FILE_LEN] + (_CMAC if picc_len else 0)
    value = 0
    for i in range(_AMOUNT_SIZE):  # not unpack_from: its tuple is an allocation per operation
        value = value << 8 | buf[end + i]
    return value


def offline_tap(buf, at, reader_id, seq):
    """The operation as the offline Tap a Journal carries. One never decided offline is one
    the guest was asked to tap again for: refused, no_reply."""
    flags = buf[at + _STATE]
    picc_len, file_len = buf[at + _PICC_LEN], buf[at + _FILE_LEN]
    sun = at + _SUN
    role = buf[at + _ROLE]
    return Tap(
        reader=reader_id,
        ts=ts(buf, at),
        mid=mid(buf, at),
        seq=seq,
        uid=bytes(buf[at + _UID : at + _UID + buf[at + _UID_LEN]]),
        role=role,
        direction=buf[at + _DIRECTION] if role == 0 else None,
        charge=bytes(buf[at + _CHARGE : at + _CHARGE + 16]) if role == 1 else None,
        picc=bytes(buf[sun : sun + picc_len]) if picc_len else None,
        file=bytes(buf[sun + picc_len : sun + picc_len + file_len]) if file_len else None,
        cmac=(
            bytes(buf[sun + picc_len + file_len : sun + picc_len + file_len + _CMAC])
            if picc_len
            else None
        ),
        offline=True,
        local_granted=bool(flags & GRANTED) if flags & OFFLINE else False,
        local_reason=buf[at + _REASON] if flags & OFFLINE else reasons.NO_REPLY,
    )
