"""SPEC.md stays true: its tables are checked against the code, so a change to the protocol that
the specification does not follow fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import bandlink.protocol
from bandlink.protocol import Message, cbor, envelope, errors, fields, reasons, topics
from bandlink.protocol import messages as m
from bandlink.protocol.examples import examples
from bandlink.protocol.messages import encode

SPEC = Path(bandlink.protocol.__file__).with_name("SPEC.md").read_text(encoding="utf-8")
EXAMPLES = dict(examples())
_SEPARATOR = re.compile(r"^\|[\s:|-]+\|$")


def section(heading: str) -> str:
    """The text under the heading that starts with ``heading``, up to the next heading of the
    same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = SPEC.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(heading)]
    assert len(starts) == 1, f"SPEC.md has {len(starts)} headings starting {heading!r}"
    body = []
    for line in lines[starts[0] + 1 :]:
        depth = len(line) - len(line.lstrip("#"))
        if 0 < depth <= level and line[depth : depth + 1] == " ":
            break
        body.append(line)
    return "\n".join(body)


def rows(text: str) -> list[list[str]]:
    """Every table row in text (headers included, separators not), as cells without backticks."""
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("|") and not _SEPARATOR.match(line):
            found.append([cell.strip().replace("`", "") for cell in line.strip("|").split("|")])
    return found


def numbered(text: str) -> list[list[str]]:
    """The table rows whose first cell is a number."""
    return [row for row in rows(text) if row[0].isdigit()]


def test_the_sizes_table_gives_every_examples_encoded_size() -> None:
    table = {row[0]: int(row[1]) for row in rows(section("## Sizes")) if row[1].isdigit()}
    assert table == {name: len(encode(message)) for name, message in EXAMPLES.items()}


def _publish_size(topic: str, payload: int) -> int:
    """An MQTT 3.1.1 PUBLISH at QoS 1: fixed header, topic, packet id, payload."""
    remaining = 2 + len(topic) + 2 + payload
    length_bytes = 1 if remaining < 128 else 2 if remaining < 16384 else 3
    return 1 + length_bytes + remaining


def test_the_figure_for_a_gate_tap_with_a_sun_band() -> None:
    tap = EXAMPLES["tap gate, SUN band"]
    size = len(encode(tap))
    assert tap.reader is not None
    topic = topics.reader_topic(tap.reader, topics.EVT)
    figure = re.search(
        r"A gate tap with a SUN band is (\d+) bytes of CBOR; as an MQTT 3\.1\.1 PUBLISH at QoS 1 "
        r"on\s+`([^`]+)` it is (\d+) bytes on the wire",
        section("## Sizes"),
    )
    assert figure is not None
    assert (int(figure[1]), figure[2], int(figure[3])) == (
        size,
        topic,
        _publish_size(topic, size),
    )


def test_the_hex_of_the_gate_tap_is_its_encoding() -> None:
    after = SPEC.split("Hex of `tap gate, SUN band`:", 1)[1]
    block = re.search(r"```\n(.*?)```", after, re.S)
    assert block is not None
    assert bytes.fromhex(block[1]) == encode(EXAMPLES["tap gate, SUN band"])


def test_the_reason_registry_is_reasons_py() -> None:
    table = {int(row[0]): row[1] for row in numbered(section("## Reason codes"))}
    assert table == reasons.NAMES


def test_the_error_codes_are_those_of_errors_py() -> None:
    codes = {
        value for name, value in vars(errors).items() if name.isupper() and isinstance(value, str)
    }
    table = {row[0] for row in rows(section("## Errors"))[1:]}
    assert table == codes


def test_the_envelope_table_is_envelope_py() -> None:
    expected = {envelope.V: "v", envelope.TYPE: "type", envelope.BODY: "body"}
    expected.update({key: attr for attr, key, _check in envelope._ENVELOPE})
    table = {int(row[0]): row[1] for row in numbered(section("## Envelope"))}
    assert table == expected
    assert f"protocol major version: **{envelope.VERSION}**" in section("## Envelope")


def test_every_message_type_is_in_the_type_table() -> None:
    table = {int(row[0]): row for row in numbered(section("## Message types"))}
    assert set(table) == {cls.TYPE for cls in m.CLASSES}
    for cls in m.CLASSES:
        _type, name, _topic, _direction, needs = table[cls.TYPE]
        assert name == cls.__name__
        assert set(re.findall(r"[a-z_]+", needs)) == set(cls.NEEDS), cls.__name__


@pytest.mark.parametrize("cls", m.CLASSES, ids=[cls.__name__ for cls in m.CLASSES])
def test_every_message_has_a_section_with_its_body_fields(cls: type[Message]) -> None:
    text = section(f"### {cls.TYPE}. {cls.__name__} (type {cls.TYPE})")
    table = {(int(row[0]), row[1]): row[3] for row in numbered(text) if len(row) == 5}
    assert set(table) == {(key, attr) for attr, key, _check, _required in cls.BODY}
    for attr, key, _check, required in cls.BODY:
        assert (table[(key, attr)] == "yes") == required, attr


def test_the_fields_each_command_op_requires() -> None:
    table = {}
    for row in rows(section("### 7. Command")):
        op = re.fullmatch(r"(\d+) ([A-Z_]+)", row[0])
        if op:
            assert getattr(m, op[2]) == int(op[1])
            table[int(op[1])] = set(re.findall(r"[a-z_]+", row[1].split("(")[0]))
    assert {op: names for op, names in table.items() if names} == {
        op: set(names) for op, names in m._COMMAND_NEEDS.items()
    }


def test_the_constants_tables_are_the_codes() -> None:
    named = {row[1]: int(row[0]) for row in numbered(section("## Constants"))}
    modules = (m, cbor, fields)
    for name, value in named.items():
        assert any(getattr(module, name, None) == value for module in modules), name
    expected = {"GATE", "POS", "PHOTO", "IN", "OUT", "IDLE", "GREEN", "RED", "RETRY", "PIN"}
    expected |= {"REBIRTH", "REBOOT", "CHARGE", "CANCEL", "LIST_SNAPSHOT", "LIST_DELTA"}
    expected |= {"TIME_SYNC", "MAX_SIZE", "MAX_DEPTH", "MID_SIZE", "READER_ID_MAX"}
    expected |= {"JOURNAL_MAX", "LIST_CHUNK_MAX"}
    assert expected <= set(named)


def test_every_topic_is_named() -> None:
    for kind in (topics.EVT, topics.RES, topics.BIRTH, topics.DEATH, topics.CFG, topics.CMD):
        assert f"`{topics.reader_topic('<reader>', kind)}`" in SPEC
    for topic in (
        topics.GATEWAY_STATES,
        topics.EVENTS_SHARED,
        topics.BIRTHS_SHARED,
        topics.DEATHS_SHARED,
    ):
        assert f"`{topic}`" in SPEC
    template = "bl/1/$gw/<gateway>/state"
    assert f"`{template}`" in SPEC
    assert topics.gateway_state_topic("gw-1") == template.replace("<gateway>", "gw-1")


def test_the_gateway_liveness_rules_are_stated() -> None:
    text = section("### Gateway liveness")
    assert "every gateway the reader has heard from says offline" in text
    assert "SHOULD be stable across restarts" in text
    assert f"`{topics.GATEWAY_STATES}`" in section("## Transport")  # the reader's ACL
    status = section("## Implementation status")
    assert f"`{topics.GATEWAY_STATES}`" in status
    assert "$gw/state" not in SPEC  # the single, shared liveness topic is gone
