"""protocol/bandlink.cddl against the code: every message the code builds validates, and what
the schema refuses the code refuses too (so the schema says something, and says it right)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pycddl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bandlink.protocol
from bandlink.gateway.core.configs import ConfigPublisher
from bandlink.gateway.core.handler import Outgoing
from bandlink.gateway.store import Store
from bandlink.gateway.venue import DEMO_BANDS, DEMO_VENUE, UNKNOWN_BAND_UID
from bandlink.protocol import (
    CLASSES,
    GATE,
    IN,
    OUT,
    POS,
    Journal,
    Message,
    ProtocolError,
    Result,
    Tap,
    decode,
    dumps,
    encode,
)
from bandlink.protocol.examples import examples
from bandlink.protocol.tests.strategies import any_message
from bandlink.tools.sunband import development_bands

from .pair import NOON_MS as TS
from .pair import TODAY, Pair, birth_frame, evt_frame

SCHEMA_TEXT = Path(bandlink.protocol.__file__).with_name("bandlink.cddl").read_text("utf-8")
SCHEMA = pycddl.Schema(SCHEMA_TEXT)  # the first rule, `message`, is the root
# The rule of each message type, in type order. pycddl does not enforce a choice between maps
# reliably (see the top of the schema), so a frame counts as valid when one type's own rule
# accepts it: the choice `message` stands for, done here.
TYPE_RULES = (
    "tap",
    "result",
    "birth",
    "death",
    "status",
    "config",
    "command",
    "journal",
    "gateway-state",
)
BY_RULE = {rule: pycddl.Schema(f"root = {rule}\n" + SCHEMA_TEXT) for rule in TYPE_RULES}
# protocol/ is portable, so lightly annotated: a typed view of its examples.
_examples: Callable[[], list[tuple[str, Message]]] = examples
EXAMPLES = dict(_examples())


def _accepts(schema: Any, frame: bytes) -> bool:
    try:
        schema.validate_cbor(frame)
    except pycddl.ValidationError:
        return False
    return True


def valid(frame: bytes) -> bool:
    return any(_accepts(schema, frame) for schema in BY_RULE.values())


def test_the_message_rule_names_one_rule_per_type() -> None:
    line = next(ln for ln in SCHEMA_TEXT.splitlines() if ln.startswith("message = "))
    assert tuple(line.removeprefix("message = ").split(" / ")) == TYPE_RULES
    assert [cls.TYPE for cls in CLASSES] == list(range(1, len(TYPE_RULES) + 1))


def wire(example: str) -> dict[Any, Any]:
    """An example's wire map, to break one field of."""
    built: dict[Any, Any] = EXAMPLES[example].to_wire()
    return built


def _validate(message: Message) -> None:
    frame = encode(message)
    SCHEMA.validate_cbor(frame)
    BY_RULE[TYPE_RULES[message.TYPE - 1]].validate_cbor(frame)


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_every_example_validates(name: str) -> None:
    _validate(EXAMPLES[name])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_message)
def test_every_message_the_code_builds_validates(message: Message) -> None:
    _validate(message)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Pair]:
    store = Store(f"sqlite:///{tmp_path / 'gw.db'}")
    store.migrate()
    store.load_venue(DEMO_VENUE, today=TODAY)
    yield Pair(store)
    store.close()


def test_every_frame_the_gateway_publishes_validates(gateway: Pair) -> None:
    ada = DEMO_BANDS["Ada"]
    sun = development_bands().read(ada)  # the entry proven; the duplicate the same operation
    taps = [
        Tap(reader="gate-1", ts=5, mid=bytes([1]) * 16, uid=ada, role=GATE, direction=IN, **sun),
        Tap(reader="gate-1", ts=6, mid=bytes([1]) * 16, uid=ada, role=GATE, direction=IN, **sun),
        Tap(reader="gate-1", ts=7, mid=bytes([2]) * 16, uid=ada, role=GATE, direction=OUT),
        Tap(
            reader="gate-1",
            ts=8,
            mid=bytes([3]) * 16,
            uid=UNKNOWN_BAND_UID,
            role=GATE,
            direction=IN,
        ),
        Tap(reader="gate-1", ts=9, mid=bytes([4]) * 16, uid=ada, role=POS, charge=bytes(16)),
        Tap(reader="gate-77", ts=9, mid=bytes([5]) * 16, uid=ada, role=GATE, direction=IN),
    ]
    core = gateway.core
    frames = [core.state_frame("gw-1", online=online, now_ms=10) for online in (True, False)]
    for tap in taps:
        assert tap.reader is not None
        frames += gateway.send([evt_frame(tap, reader=tap.reader)]).replies
    frames += core.refuse(evt_frame(taps[0]), "busy", 1000).replies
    assert len(frames) == 3 + len(taps)
    # What else a reader gets: its retained Config, the clock and its band list on its birth
    # (the demo venue's fits one chunk), and a journal's acknowledgement.
    frames += gateway.send([birth_frame("gate-1", 3)]).replies
    offline = Tap(
        reader="gate-1",
        ts=12,
        mid=bytes([6]) * 16,
        uid=ada,
        role=GATE,
        direction=IN,
        offline=True,
        local_granted=True,
    )
    journal = Journal(reader="gate-1", ts=13, mid=bytes([7]) * 16, taps=[offline])
    frames += gateway.send([evt_frame(encode(journal))]).replies
    with gateway.store.transaction():
        pass
    configs = ConfigPublisher().changes(gateway.store.view, 11)
    frames += [Outgoing(topic, payload, retain=True) for topic, payload in configs]
    assert len(frames) == 3 + len(taps) + 3 + len(DEMO_VENUE["readers"])
    for frame in frames:
        message = decode(frame.payload)
        BY_RULE[TYPE_RULES[message.TYPE - 1]].validate_cbor(frame.payload)


def _changed(example: str, path: tuple[Any, ...], value: Any) -> bytes:
    """The example with the item at path (keys from the top) replaced, or deleted if value is
    DELETE; encoded by the codec alone, which checks nothing about messages."""
    message = wire(example)
    parent = message
    for key in path[:-1]:
        parent = parent[key]
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return dumps(message)


DELETE = object()
TAPS = (9, 0)  # a journal's list of taps

# (example, path, new value): frames the code refuses, and the schema must refuse as well.
REFUSED = {
    "tap without uid": ("tap gate", (9, 0), DELETE),
    "uid of 2 bytes": ("tap gate", (9, 0), b"\x04\xa1"),
    "uid as text": ("tap gate", (9, 0), "04a1b2c3"),
    "version 2": ("tap gate", (0,), 2),
    "no version": ("tap gate", (0,), DELETE),
    "unknown type": ("tap gate", (1,), 10),
    "mid of 15 bytes": ("tap gate", (5,), bytes(15)),
    "tap without mid": ("tap gate", (5,), DELETE),
    "tap without ts": ("tap gate", (6,), DELETE),
    "negative ts": ("tap gate", (6,), -1),
    "seq 256": ("tap gate", (4,), 256),
    "reader with a slash": ("tap gate", (2,), "gate/1"),
    "reader of 33 characters": ("tap gate", (2,), "g" * 33),
    "empty reader": ("tap gate", (2,), ""),
    "role 3": ("tap gate", (9, 1), 3),
    "direction 2": ("tap gate", (9, 2), 2),
    "gate name of 25 characters": ("tap gate", (9, 3), "n" * 25),
    "cmac of 9 bytes": ("tap gate, SUN band", (9, 11), bytes(9)),
    "offline as 1": ("tap gate, offline", (9, 12), 1),
    "result without corr": ("result", (8,), DELETE),
    "result without granted": ("result", (9, 0), DELETE),
    "reason past 32 bits": ("result", (9, 1), 1 << 32),
    "balance past 64 bits": ("result pos", (9, 4), -(1 << 63) - 1),
    "text of 33 characters": ("result", (9, 2), "é" * 33),
    "birth without bdseq": ("birth", (3,), DELETE),
    "rssi past 16 bits": ("status", (9, 2), -32769),
    "config role as text": ("config", (9, 1), "gate"),
    "command op 256": ("command time sync", (9, 0), 256),
    "list chunk of 17 entries": ("command list chunk", (9, 13), bytes(17 * 16)),
    "list chunk of 17 removals": (
        "command list chunk",
        (9, 11),
        [b"\x04\xa1\xb2\xc3\xd4\xe5" + bytes([i]) for i in range(17)],
    ),
    "empty journal": ("journal", TAPS, []),
    "journal of 9 taps": ("journal", TAPS, [wire("tap gate, offline")] * 9),
    "journal with an online tap": ("journal", TAPS, [wire("tap gate")]),
    "journal with a tap of 2-byte uid": ("journal", (*TAPS, 0, 9, 0), b"\x04\xa1"),
    "gateway state online as 1": ("gateway state", (9, 0), 1),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_what_the_code_refuses_the_schema_refuses(case: str) -> None:
    example, path, value = REFUSED[case]
    frame = _changed(example, path, value)
    with pytest.raises(ProtocolError):
        decode(frame)
    assert not valid(frame)


def test_a_float_is_refused_by_both() -> None:
    # The codec cannot write a float: ts becomes 0 (bytes 06 00), then the half float 1.5.
    frame = _changed("tap gate", (6,), 0)
    assert frame.count(b"\x06\x00") == 1
    frame = frame.replace(b"\x06\x00", b"\x06\xf9\x3e\x00")
    with pytest.raises(ProtocolError):
        decode(frame)
    assert not valid(frame)


# The schema is closed where a v1 receiver is liberal: it describes what a sender writes.
LIBERAL = {
    "unknown envelope key": ("tap gate", (10,), 1),
    "unknown text key": ("tap gate", ("colour",), "red"),
    "unknown body key": ("result", (9, 6), 1),
    "null for an optional field": ("tap gate", (7,), None),
}


@pytest.mark.parametrize("case", list(LIBERAL))
def test_the_schema_is_stricter_than_a_receiver(case: str) -> None:
    example, path, value = LIBERAL[case]
    frame = _changed(example, path, value)
    decode(frame)  # a v1 receiver takes it (ignoring the key, or the null, as absent)
    assert not valid(frame)


# Fields whose validity does not depend on other fields: for these, any value the schema
# accepts the code accepts, and the other way round.
INDEPENDENT = [
    ("tap gate, SUN band", (2,)),
    ("tap gate, SUN band", (3,)),
    ("tap gate, SUN band", (4,)),
    ("tap gate, SUN band", (5,)),
    ("tap gate, SUN band", (6,)),
    ("tap gate, SUN band", (7,)),
    ("tap gate, SUN band", (8,)),
    ("tap gate, SUN band", (9, 0)),
    ("tap gate, SUN band", (9, 3)),
    ("tap gate, SUN band", (9, 5)),
    ("tap gate, SUN band", (9, 7)),
    ("result pos", (9, 0)),
    ("result pos", (9, 1)),
    ("result pos", (9, 2)),
    ("result pos", (9, 3)),
    ("result pos", (9, 4)),
    ("result pos", (9, 5)),
    ("birth", (9, 0)),
    ("birth", (9, 1)),
    ("status", (9, 2)),
    ("status", (9, 3)),
    ("status", (9, 5)),
    ("config", (9, 3)),
    ("config", (9, 8)),
    ("config", (9, 11)),
    ("command charge", (9, 4)),
    ("command charge", (9, 5)),
    ("command charge", (9, 11)),
    ("gateway state", (9, 0)),
]

_scalars = st.one_of(
    st.integers(-(2**64), 2**64 - 1),
    st.sampled_from([0, 1, 255, 256, 2**16, 2**32, 2**63, -1, -(2**15) - 1, -(2**63) - 1]),
    st.booleans(),
    st.binary(max_size=50),
    st.text(max_size=40),
    st.text(alphabet="abcxyz019-_./+$ é", max_size=40),
)
cbor_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.integers(0, 20) | st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(INDEPENDENT), cbor_values)
def test_schema_and_code_agree_on_independent_fields(
    where: tuple[str, tuple[Any, ...]], value: Any
) -> None:
    example, path = where
    frame = _changed(example, path, value)
    try:
        decode(frame)
        accepted = True
    except ProtocolError:
        accepted = False
    assert valid(frame) == accepted, (example, path, value)


def test_every_payment_frame_the_gateway_publishes_validates(gateway: Pair) -> None:
    """CHARGE and CANCEL to a pos reader, and its Results: paid (with the balance after),
    asking for the PIN, declined."""

    from .test_ledger import charge_at, topup
    from .test_payments import with_pin

    store = gateway.store

    topup(store, "g-bo", 1000)
    pin = gateway.core.pins.hash("g-ada", "2468")
    with_pin(store, pin, threshold=0)
    frames = []
    # Paid; more than Bo has; Ada is asked for her PIN.
    for name, amount in (("Bo", 450), ("Bo", 9000), ("Ada", 100)):
        opened = charge_at(store, "pos-1", amount, description="Coffee")
        frames += [gateway.core.charge_command(opened, TS), gateway.core.cancel_command(opened, TS)]
        tap = Tap(
            reader="pos-1",
            ts=TS,
            mid=os.urandom(16),
            uid=DEMO_BANDS[name],
            role=POS,
            charge=opened.id,
            **development_bands().read(DEMO_BANDS[name]),
        )
        frames += gateway.send([evt_frame(tap, reader="pos-1", received_ms=TS)], TS).replies
        store.run(lambda books: books.expire_charges(TS + 10**9))
    results = [decode(frame.payload) for frame in frames]
    paid = [r for r in results if isinstance(r, Result) and r.granted]
    assert [r.balance for r in paid] == [550]
    assert {r.reason for r in results if isinstance(r, Result)} == {0, 13, 12}
    for frame in frames:
        message = decode(frame.payload)
        BY_RULE[TYPE_RULES[message.TYPE - 1]].validate_cbor(frame.payload)
