"""Hypothesis strategies for every message: legal ones only (the classes refuse the rest)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from bandlink.protocol import messages as m

reader_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=32)
mids = st.binary(min_size=16, max_size=16)
uids = st.binary(min_size=4, max_size=10)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
u63 = st.integers(0, 2**63 - 1)  # times and session numbers
money = st.integers(-(2**63), 2**63 - 1)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


envelope = st.fixed_dictionaries(
    {"reader": reader_ids, "ts": u63, "seq": st.integers(0, 255)},
    optional={"deadline": u63, "corr": mids},
)

sun = st.fixed_dictionaries(
    {
        # AES mode's 16 bytes, or LRP mode's 24; file data in whole blocks.
        "picc": st.sampled_from([16, 24]).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
        "cmac": st.binary(min_size=8, max_size=8),
    },
    optional={
        "file": st.sampled_from([16, 32, 48]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
    },
)
role_bodies = st.one_of(
    st.fixed_dictionaries(
        {"role": st.just(m.GATE), "direction": st.sampled_from([m.IN, m.OUT])},
        optional={"gate": st.text(max_size=24)},
    ),
    st.fixed_dictionaries(
        {"role": st.just(m.POS), "charge": mids},
        optional={"pin": st.binary(min_size=8, max_size=16)},
    ),
    st.fixed_dictionaries(
        {"role": st.just(m.PHOTO), "point": st.text(max_size=24)},
        optional={"ride": st.text(max_size=24), "seat": st.text(max_size=16)},
    ),
)
offline: st.SearchStrategy[dict[str, Any]] = st.just({}) | st.fixed_dictionaries(
    {"offline": st.just(True), "local_granted": st.booleans()}, optional={"local_reason": u32}
)


def _merge(*parts: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part)
    return merged


@st.composite
def taps(draw: st.DrawFn, *, offline_only: bool = False) -> m.Tap:
    extra = draw(offline.filter(bool) if offline_only else offline)
    sun_fields = draw(st.just({}) | sun)
    body = _merge(draw(envelope), draw(role_bodies), sun_fields, extra)
    return m.Tap(mid=draw(mids), uid=draw(uids), **body)


results = st.builds(
    lambda env, corr, **body: m.Result(**_merge(env, {"corr": corr}), **body),
    envelope,
    mids,
    granted=st.booleans(),
    reason=u32,
    text=maybe(st.text(max_size=32)),
    name=maybe(st.text(max_size=24)),
    balance=maybe(money),
    pattern=maybe(st.integers(0, 255)),
)
births = st.builds(
    lambda env, **body: m.Birth(**env, **body),
    envelope,
    bdseq=u63,
    firmware=st.text(max_size=32),
    role=st.sampled_from([m.GATE, m.POS, m.PHOTO]),
    config_version=maybe(u32),
    list_version=maybe(u32),
)
deaths = st.builds(lambda env, **body: m.Death(**env, **body), envelope, bdseq=u63, mid=mids)
statuses = st.builds(
    lambda env, **body: m.Status(**env, **body),
    envelope,
    uptime_s=u32,
    heap_free=u32,
    rssi=maybe(st.integers(-(2**15), 2**15 - 1)),
    journal=maybe(st.integers(0, 2**16 - 1)),
    list_version=maybe(u32),
    clock_offset_ms=maybe(money),
)
configs = st.builds(
    lambda env, **body: m.Config(**env, **body),
    envelope,
    version=u32,
    role=st.sampled_from([m.GATE, m.POS, m.PHOTO]),
    gate=maybe(st.text(max_size=24)),
    direction=maybe(st.sampled_from([m.IN, m.OUT])),
    deadline_ms=maybe(u32),
    offline_floor=maybe(money),
    list_version=maybe(u32),
    currency=maybe(st.text(max_size=3)),
)
commands = st.one_of(
    st.builds(
        lambda env, **body: m.Command(**env, op=m.CHARGE, **body),
        envelope,
        mid=mids,
        charge=mids,
        amount=u64,
        currency=st.text(max_size=3),
        pin_required=maybe(st.booleans()),
        label=maybe(st.text(max_size=32)),
    ),
    st.builds(
        lambda env, chunks, **body: m.Command(
            **env, op=m.LIST_SNAPSHOT, chunks=chunks + 1, chunk=chunks, **body
        ),
        envelope,
        st.integers(0, 100),
        mid=mids,
        list_version=u32,
        entries=st.integers(0, m.LIST_CHUNK_MAX).flatmap(
            lambda n: st.binary(min_size=n * m.LIST_ENTRY_SIZE, max_size=n * m.LIST_ENTRY_SIZE)
        ),
    ),
    st.builds(
        lambda env, chunks, **body: m.Command(
            **env, op=m.LIST_DELTA, chunks=chunks + 1, chunk=chunks, **body
        ),
        envelope,
        st.integers(0, 100),
        mid=mids,
        list_version=u32,
        base_version=u32,
        remove=st.lists(uids, max_size=m.LIST_CHUNK_MAX),
    ),
    st.builds(
        lambda env, **body: m.Command(**env, **body),
        envelope,
        mid=mids,
        op=st.sampled_from([m.REBIRTH, m.REBOOT, 200]),
    ),
    st.builds(
        lambda env, **body: m.Command(**env, op=m.TIME_SYNC, **body),
        envelope,
        mid=mids,
        time_ms=u63,
    ),
)


@st.composite
def journals(draw: st.DrawFn) -> m.Journal:
    env = draw(envelope)
    entries = draw(st.lists(taps(offline_only=True), min_size=1, max_size=m.JOURNAL_MAX))
    # A journal carries only its own reader's taps.
    same_reader = [m.Tap.from_wire({**t.to_wire(), 2: env["reader"]}) for t in entries]
    return m.Journal(**env, mid=draw(mids), taps=same_reader)


gateway_states = st.builds(m.GatewayState, ts=u63, online=st.booleans())

any_message = st.one_of(
    taps(), results, births, deaths, statuses, configs, commands, journals(), gateway_states
)
