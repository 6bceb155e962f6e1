"""Band lists pushed to readers (SPEC, "The band list"): a snapshot to a reader whose birth
reports no list or one the gateway does not know, a delta when the catalog or the day changes,
sent by one gateway process. Through the in-memory pair (the real core and store, on SQLite
and PostgreSQL), and the delta arithmetic with hypothesis."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bandlink.gateway.core import lists
from bandlink.gateway.core.handler import Core, Frame, Outgoing
from bandlink.gateway.store import Store
from bandlink.gateway.venue import DEMO_BANDS
from bandlink.protocol import GATE, Birth, Command, decode, encode, messages, topics
from bandlink.protocol import lists as wire_list

from .pair import NOON_MS, Pair

ADA, BO, CHEN, DARA, EMIL = (DEMO_BANDS[n] for n in ("Ada", "Bo", "Chen", "Dara", "Emil"))
DAY_MS = 86_400_000


def birth(reader: str, list_version: int | None, bdseq: int = 1) -> Outgoing:
    message = Birth(
        reader=reader, ts=1, bdseq=bdseq, firmware="fw", role=GATE, list_version=list_version
    )
    return Outgoing(topics.reader_topic(reader, topics.BIRTH), encode(message))


def list_commands(replies: list[Outgoing]) -> list[Command]:
    found = [decode(reply.payload) for reply in replies]
    return [
        c
        for c in found
        if isinstance(c, Command) and c.op in (messages.LIST_SNAPSHOT, messages.LIST_DELTA)
    ]


def apply(held: dict[bytes, bytes], commands: list[Command]) -> tuple[int, dict[bytes, bytes]]:
    """What a reader holds after ``commands`` (one list's chunks, in order): a model of it."""
    assert commands and [c.chunk for c in commands] == list(range(commands[0].chunks or 0))
    versions = {c.list_version for c in commands}
    assert len(versions) == 1
    result = {} if commands[0].op == messages.LIST_SNAPSHOT else dict(held)
    for command in commands:
        data = command.entries or b""
        for i in range(0, len(data), messages.LIST_ENTRY_SIZE):
            entry = data[i : i + messages.LIST_ENTRY_SIZE]
            result[entry[: wire_list.KEY_SIZE]] = entry
        for uid in command.remove or ():
            result.pop(wire_list.key(uid), None)
    version = versions.pop()
    assert version is not None
    return version, dict(sorted(result.items()))


def uids(held: dict[bytes, bytes]) -> set[bytes]:
    return {wire_list.entry_uid(entry) for entry in held.values()}


def born(pair: Pair, reader: str, version: int | None, now_ms: int = NOON_MS) -> list[Command]:
    frame = birth(reader, version)
    effects = pair.send([Frame(frame.topic, frame.payload, now_ms)], now_ms)
    return list_commands(effects.replies)


def pushed(core: Core, store: Store, now_ms: int = NOON_MS) -> list[Command]:
    """What the worker's housekeeping sends: a read finds the readers due, a transaction
    claims and makes their chunks."""
    store.follow_catalog()
    due = core.lists_due(store.view, store.lists_held(), now_ms)
    if not due:
        return []
    with store.transaction() as tx:
        return list_commands(core.push_lists(due, now_ms, tx))


def test_a_gate_with_no_list_gets_the_bands_it_may_let_in_today(pair: Pair) -> None:
    version, held = apply({}, born(pair, "gate-1", None))
    # Bo's ticket has expired, Dara's band is blocked, Chen's ticket is for another site.
    assert uids(held) == {ADA, EMIL}
    assert all(entry[11] == wire_list.ENTRY for entry in held.values())
    assert version == lists.version_of(held.values())
    # A reader holding it gets nothing more; a till gets no gate list.
    assert born(pair, "gate-1", version) == []
    assert born(pair, "pos-1", None) == []


def test_a_blocked_band_leaves_every_gates_list_in_one_delta(pair: Pair, store: Store) -> None:
    version, held = apply({}, born(pair, "gate-1", None))
    assert born(pair, "gate-3", None)
    store.block_band(ADA, reason="lost", now_ms=NOON_MS)
    sent = pushed(pair.core, store)
    by_reader: dict[str, list[Command]] = {}
    for command in sent:
        assert command.reader is not None
        by_reader.setdefault(command.reader, []).append(command)
    assert sorted(by_reader) == ["gate-1", "gate-3"]
    (delta,) = by_reader["gate-1"]
    assert (delta.op, delta.base_version, delta.remove, delta.entries) == (
        messages.LIST_DELTA,
        version,
        [ADA],
        None,
    )
    new_version, now_held = apply(held, by_reader["gate-1"])
    assert uids(now_held) == {EMIL} and new_version == lists.version_of(now_held.values())
    assert pushed(pair.core, store) == [], "sent once"


def test_a_new_day_changes_the_list_with_no_catalog_change(pair: Pair, store: Store) -> None:
    """Emil's ticket is for today only: tomorrow the gate's list goes without him."""
    version, _held = apply({}, born(pair, "gate-1", None))
    tomorrow = NOON_MS + DAY_MS
    (delta,) = pushed(pair.core, store, tomorrow)
    assert (delta.base_version, delta.remove) == (version, [EMIL])


def test_a_version_the_gateway_does_not_know_gets_a_snapshot(pair: Pair, store: Store) -> None:
    commands = born(pair, "gate-1", 12345)
    assert [c.op for c in commands] == [messages.LIST_SNAPSHOT]
    # A gateway process started since knows no old list either: a snapshot, not a delta.
    store.block_band(ADA, reason="lost", now_ms=NOON_MS)
    restarted = Core()
    assert [c.op for c in pushed(restarted, store)] == [messages.LIST_SNAPSHOT]
    assert pushed(pair.core, store) == [], "the other process's claim stands"


def test_of_two_gateway_processes_one_sends_each_change(pair: Pair, store: Store) -> None:
    other = Pair(store, Core())
    version, held = apply({}, born(pair, "gate-1", None))
    # The other process makes the same list, with the same version: nothing to send.
    assert born(other, "gate-1", version) == []
    store.block_band(EMIL, reason="stolen", now_ms=NOON_MS)
    store.follow_catalog()
    now = NOON_MS
    due_here = pair.core.lists_due(store.view, store.lists_held(), now)
    due_there = other.core.lists_due(store.view, store.lists_held(), now)
    assert due_here == due_there == [("gate-1", version)]
    with store.transaction() as tx:
        first = list_commands(pair.core.push_lists(due_here, now, tx))
    with store.transaction() as tx:
        second = list_commands(other.core.push_lists(due_there, now, tx))
    assert len(first) == 1 and second == []
    assert uids(apply(held, first)[1]) == {ADA}


def test_a_stale_birth_is_not_sent_a_list(pair: Pair) -> None:
    assert born(pair, "gate-1", None)
    frame = birth("gate-1", None, bdseq=0)  # an older session's late birth
    effects = pair.send([Frame(frame.topic, frame.payload, NOON_MS)])
    assert list_commands(effects.replies) == []


_uid = st.binary(min_size=4, max_size=10).filter(lambda u: len(u) in (4, 7, 10))
_lists = st.dictionaries(_uid, st.integers(0, 7), max_size=60)


@given(_lists, _lists)
def test_a_delta_takes_any_list_to_any_other(old: dict[bytes, int], new: dict[bytes, int]) -> None:
    def made(bands: dict[bytes, int]) -> lists.BandList:
        entries = {wire_list.key(u): wire_list.entry(u, f) for u, f in bands.items()}
        ordered = dict(sorted(entries.items()))
        return lists.BandList(lists.version_of(ordered.values()), ordered)

    before, after = made(old), made(new)
    chunks = lists.delta(before, after)
    commands = [
        Command(
            reader="gate-1",
            ts=1,
            mid=bytes(16),
            op=messages.LIST_DELTA,
            list_version=after.version,
            base_version=before.version,
            chunk=c.chunk,
            chunks=c.chunks,
            entries=c.entries or None,
            remove=c.remove or None,
        )
        for c in chunks
    ]
    version, held = apply(dict(before.entries), commands)
    assert (version, held) == (after.version, after.entries)
    # Sorted across the chunks, as a reader merges them in one pass.
    sent = b"".join(c.entries for c in chunks)
    keys = [sent[i : i + wire_list.KEY_SIZE] for i in range(0, len(sent), 16)]
    assert keys == sorted(keys)
    removed = [wire_list.key(u) for c in chunks for u in c.remove]
    assert removed == sorted(removed)
    snap = lists.snapshot(after)
    assert all(len(c.entries) <= 16 * messages.LIST_CHUNK_MAX for c in snap)
