# One realistic instance of every message (the largest common form of each): the seeds of
# `bandlink fuzz`, the messages of `bandlink bench codec`, and the sizes SPEC.md reports.
# Portable like the rest of protocol/, so the reader's side of those tools can use it too.

from . import messages as m
from .lists import ENTRY
from .lists import entry as list_entry

_MID = b"\x5a\x1f\x3c\x9e\x02\x47\x8b\xd6\x11\x70\xe4\x2c\x93\x0a\xb5\x68"
_MID2 = b"\x0e\x81\x66\x2d\xf3\x19\xa4\x57\xc8\x3b\x90\x04\x7d\xe2\x51\xbf"
_UID = b"\x04\xa1\xb2\xc3\xd4\xe5\xf6"  # 7-byte NXP UID
_TS = 1_795_000_000_000  # ms since 1970, late 2026
_SUN = {
    "picc": b"\xef\x96\x3f\xf7\x82\x86\x58\xa5\x99\xf3\x04\x15\x10\x67\x1e\x88",
    "cmac": b"\x94\xee\xd9\xee\x65\x33\x70\x86",
}


def gate_tap(**changes):
    body = dict(reader="gate-1", ts=_TS, seq=17, mid=_MID, deadline=_TS + 800, uid=_UID)
    body.update(role=m.GATE, direction=m.IN, gate="north")
    body.update(changes)
    return m.Tap(**body)


def examples():
    """(name, message) pairs, one or more per message type."""
    return [
        ("tap gate", gate_tap()),
        ("tap gate, SUN band", gate_tap(**_SUN)),
        (
            "tap pos, PIN",
            m.Tap(
                reader="till-3",
                ts=_TS,
                seq=4,
                mid=_MID,
                deadline=_TS + 800,
                uid=_UID,
                role=m.POS,
                charge=_MID2,
                # A PIN block (SPEC, PIN block): 16 bytes that look random.
                pin=bytes.fromhex("9a3c5e71d20f48b6e1a7c3950b6d2f84"),
                **_SUN,
            ),
        ),
        (
            "tap photo",
            m.Tap(
                reader="photo-7",
                ts=_TS,
                seq=200,
                mid=_MID,
                uid=_UID,
                role=m.PHOTO,
                ride="river-rapids",
                seat="12B",
                point="splash",
                **_SUN,
            ),
        ),
        ("tap gate, offline", gate_tap(offline=True, local_granted=True, local_reason=0)),
        (
            "result",
            m.Result(
                reader="gate-1",
                ts=_TS + 3,
                seq=17,
                corr=_MID,
                granted=True,
                reason=0,
                text="Welcome Ada",
                name="Ada",
                pattern=m.GREEN,
            ),
        ),
        (
            "result pos",
            m.Result(
                reader="till-3",
                ts=_TS + 3,
                seq=4,
                corr=_MID,
                granted=True,
                reason=0,
                text="Paid 12.50",
                balance=8_750,
                pattern=m.GREEN,
            ),
        ),
        (
            "birth",
            m.Birth(
                reader="gate-1",
                ts=_TS,
                bdseq=42,
                mid=_MID,
                firmware="bandlink-0.1.0",
                role=m.GATE,
                config_version=3,
                list_version=1207,
            ),
        ),
        ("death", m.Death(reader="gate-1", ts=_TS, bdseq=42, mid=_MID)),
        (
            "status",
            m.Status(
                reader="gate-1",
                ts=_TS,
                seq=18,
                uptime_s=86_400,
                heap_free=31_744,
                rssi=-61,
                journal=0,
                list_version=1207,
                clock_offset_ms=-4,
            ),
        ),
        (
            "config",
            m.Config(
                reader="till-3",
                ts=_TS,
                version=3,
                role=m.POS,
                deadline_ms=800,
                hold_ms=1500,
                offline_floor=2_000,
                offline_cap=5_000,
                list_version=1207,
                currency="EUR",
                status_s=60,
            ),
        ),
        (
            "command charge",
            m.Command(
                reader="till-3",
                ts=_TS,
                mid=_MID2,
                op=m.CHARGE,
                charge=_MID2,
                amount=1_250,
                currency="EUR",
                pin_required=False,
                label="2 coffees",
            ),
        ),
        (
            "command list chunk",
            m.Command(
                reader="gate-1",
                ts=_TS,
                mid=_MID2,
                op=m.LIST_SNAPSHOT,
                list_version=1208,
                chunk=0,
                chunks=3,
                entries=b"".join(
                    list_entry(_UID[:6] + bytes([i]), ENTRY) for i in range(m.LIST_CHUNK_MAX)
                ),
            ),
        ),
        (
            "command time sync",
            m.Command(reader="gate-1", ts=_TS, mid=_MID2, op=m.TIME_SYNC, time_ms=_TS),
        ),
        (
            "journal",
            m.Journal(
                reader="gate-1",
                ts=_TS,
                mid=_MID2,
                taps=[
                    gate_tap(seq=i, mid=bytes([i]) * 16, offline=True, local_granted=True)
                    for i in range(m.JOURNAL_MAX)
                ],
            ),
        ),
        ("gateway state", m.GatewayState(ts=_TS, online=True)),
    ]
