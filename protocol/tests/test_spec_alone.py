"""SPEC.md and bandlink.cddl stand alone and agree with each other: a reader written from them
alone (issue 7) found pointers into code, a list-chunk limit given three ways, and a body the
prose and the schema disagreed on."""

from __future__ import annotations

import re
from pathlib import Path

import bandlink.protocol
from bandlink.protocol import cbor, encode, reasons
from bandlink.protocol import messages as m
from bandlink.protocol.examples import examples

from .test_spec import SPEC, numbered, section

CDDL = Path(bandlink.protocol.__file__).with_name("bandlink.cddl").read_text(encoding="utf-8")
# A path into a source tree: a folder of this repository, or any file of code.
_CODE_POINTER = re.compile(r"(?<![$/])\b(?:protocol|gateway|firmware|tools|hil-tests)/|\w\.py\b")


def test_neither_document_points_into_code() -> None:
    for name, text in (("SPEC.md", SPEC), ("bandlink.cddl", CDDL)):
        pointers = [line for line in text.splitlines() if _CODE_POINTER.search(line)]
        assert pointers == [], f"{name} sends the reader to code: {pointers}"


def test_one_limit_for_list_chunks() -> None:
    """The constants table, the schema, the example chunk and its abridged listing agree."""
    limits = {row[1]: int(row[0]) for row in numbered(section("## Constants")) if len(row) > 2}
    removals = re.search(r"^uid-list = \[0\*(\d+) uid\]", CDDL, re.MULTILINE)
    entries = re.search(r"^list-entries = bstr \.size \(0\.\.(\d+)\)", CDDL, re.MULTILINE)
    assert removals is not None and entries is not None
    chunk = dict(examples())["command list chunk"]
    assert isinstance(chunk, m.Command) and chunk.entries is not None
    size = limits["LIST_ENTRY_SIZE"]
    shown = section("### 7. Command")
    abridged = re.search(r"/ \.\.\. (\d+) more, uids h'([0-9a-f]+)' to h'([0-9a-f]+)' /", shown)
    assert abridged is not None
    listed = 3 + int(abridged[1])  # two entries before the ellipsis, one after
    uids = [chunk.entries[i + 1 : i + 8].hex() for i in range(0, len(chunk.entries), size)]
    assert (abridged[2], abridged[3]) == (uids[2], uids[-2])
    assert (
        limits["LIST_CHUNK_MAX"],
        int(removals[1]),
        int(entries[1]) // size,
        len(chunk.entries) // size,
        listed,
    ) == (m.LIST_CHUNK_MAX,) * 5
    assert size == m.LIST_ENTRY_SIZE


def test_every_message_carries_a_body_in_the_schema_and_on_the_wire() -> None:
    rules = re.findall(r"^([a-z-]+) = \{\n(.*?)^\}", CDDL, re.MULTILINE | re.DOTALL)
    envelopes = {name: body for name, body in rules if re.search(r"^\s+1: \d+,", body, re.M)}
    assert len(envelopes) == 10  # nine types, and the offline tap inside a journal
    for name, body in envelopes.items():
        assert re.search(r"^\s+9: ", body, re.MULTILINE), f"{name}: body optional in the schema"
    for name, message in examples():
        assert 9 in cbor.loads(encode(message)), f"{name} encoded without a body"


def test_every_reason_the_decision_table_gives_is_registered() -> None:
    answers = [
        line.split("|")[3]
        for line in section("### Deciding a gate tap").splitlines()
        if re.match(r"\| +\d+ \|", line)
    ]
    named = {name for answer in answers for name in re.findall(r"`([a-z_]+)`", answer)}
    assert named <= set(reasons.NAMES.values())
    assert {"stale", "busy", "bad_request", "unknown_reader", "not_inside"} <= named
