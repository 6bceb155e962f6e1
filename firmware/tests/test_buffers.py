"""The reader's buffers hold every message the protocol lets it send or receive, at its largest
(firmware/app.py sizes them): a gate or pos Tap with every field at its longest, SUN data with
48 bytes of file data, names of 4-byte characters, a 32-character reader id; a Result, a CHARGE
a Config and a band list chunk (LIST_CHUNK_MAX entries, or removals of ten-byte UIDs) likewise."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bandlink.protocol import (
    Command,
    Config,
    Death,
    Message,
    Result,
    Tap,
    encode,
    messages,
    topics,
)
from bandlink.protocol.fields import READER_ID_MAX

APP = Path(__file__).resolve().parents[1] / "app.py"
HEAD = 5  # mqtt.py's room before a packet's body for its fixed header
READER = "r" * READER_ID_MAX
WIDE = "\U0001f600"  # four bytes of UTF-8 per character
BIG = 2**63 - 1
U32 = 2**32 - 1


def _const(name: str) -> int:
    match = re.search(rf"^{name} = const\((\d+)\)", APP.read_text(), re.MULTILINE)
    assert match is not None, name
    return int(match.group(1))


def _publish_body(kind: str, message: Message) -> int:
    """A QoS 1 PUBLISH's remaining length: topic length, topic, packet id, payload."""
    return 2 + len(topics.reader_topic(READER, kind)) + 2 + len(encode(message))


_ENVELOPE = {"reader": READER, "ts": BIG, "deadline": BIG, "seq": 255, "mid": b"m" * 16}
_SUN = {"uid": b"u" * 10, "picc": b"p" * 24, "file": b"f" * 48, "cmac": b"c" * 8}
LARGEST_TAPS = [  # what gate.py and pos.py send
    Tap(**_ENVELOPE, **_SUN, role=messages.GATE, direction=messages.OUT, gate=WIDE * 24),
    Tap(**_ENVELOPE, **_SUN, role=messages.POS, charge=b"c" * 16, pin=b"p" * 16),
]
LARGEST_INCOMING = {
    "result": (
        topics.RES,
        Result(
            reader=READER,
            ts=BIG,
            seq=255,
            corr=b"m" * 16,
            granted=True,
            reason=U32,
            text=WIDE * 32,
            name=WIDE * 24,
            balance=-(2**63),
            pattern=255,
        ),
    ),
    "charge": (
        topics.CMD,
        Command(
            reader=READER,
            ts=BIG,
            mid=b"m" * 16,
            op=messages.CHARGE,
            charge=b"c" * 16,
            amount=2**64 - 1,
            currency="EUR",
            pin_required=True,
            label=WIDE * 32,
        ),
    ),
    "config": (
        topics.CFG,
        Config(
            reader=READER,
            ts=BIG,
            version=U32,
            role=messages.GATE,
            gate=WIDE * 24,
            direction=messages.OUT,
            ride=WIDE * 24,
            point=WIDE * 24,
            deadline_ms=U32,
            hold_ms=U32,
            offline_floor=-(2**63),
            offline_cap=-(2**63),
            list_version=U32,
            currency="EUR",
            status_s=U32,
        ),
    ),
    "list entries": (
        topics.CMD,
        Command(
            reader=READER,
            ts=BIG,
            mid=b"m" * 16,
            op=messages.LIST_DELTA,
            list_version=U32,
            base_version=U32,
            chunk=2**16 - 2,
            chunks=2**16 - 1,
            entries=b"e" * messages.LIST_ENTRY_SIZE * messages.LIST_CHUNK_MAX,
        ),
    ),
    "list removals": (
        topics.CMD,
        Command(
            reader=READER,
            ts=BIG,
            mid=b"m" * 16,
            op=messages.LIST_DELTA,
            list_version=U32,
            base_version=U32,
            chunk=2**16 - 2,
            chunks=2**16 - 1,
            remove=[b"u" * 10] * messages.LIST_CHUNK_MAX,
        ),
    ),
}


@pytest.mark.parametrize("tap", LARGEST_TAPS, ids=["gate", "pos"])
def test_the_largest_tap_fits_the_transmit_buffers(tap: Tap) -> None:
    assert len(encode(tap)) <= _const("_TX_SIZE")  # where the Tap is encoded
    assert HEAD + _publish_body(topics.EVT, tap) <= _const("_LINK_TX")  # its PUBLISH


def test_the_connect_fits_the_transmit_buffer() -> None:
    """CONNECT with the longest reader id, its will (the Death at its largest) and the
    password `bandlink provision` makes (24 characters)."""
    will = Death(reader=READER, ts=BIG, bdseq=U32)
    strings = [READER, topics.reader_topic(READER, topics.DEATH), READER, "p" * 24]
    body = 10 + sum(2 + len(s.encode()) for s in strings) + 2 + len(encode(will))
    assert HEAD + body <= _const("_LINK_TX")


@pytest.mark.parametrize("name", sorted(LARGEST_INCOMING))
def test_the_largest_incoming_message_fits_the_receive_buffer(name: str) -> None:
    """Review: the largest Config (names of 4-byte characters) is 455 bytes of PUBLISH body,
    and the 448-byte buffer would have dropped it."""
    kind, message = LARGEST_INCOMING[name]
    assert _publish_body(kind, message) <= _const("_LINK_BUFFER")
