"""The core through the in-memory pair: frames in, replies and events out, a real store behind
it on both back ends."""

from __future__ import annotations

import os
from datetime import time
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, text

from bandlink.gateway.core import entry, handler
from bandlink.gateway.core.handler import Core, Decided, Dropped, Frame, Ignored
from bandlink.gateway.core.readers import SessionChange
from bandlink.gateway.settings import normalise_db_url
from bandlink.gateway.store import Store
from bandlink.gateway.venue import DEMO_BANDS, UNKNOWN_BAND_UID
from bandlink.protocol import (
    IN,
    OUT,
    Command,
    GatewayState,
    Result,
    Status,
    Tap,
    cbor,
    decode,
    dumps,
    encode,
    envelope,
    messages,
    reasons,
    topics,
)
from bandlink.tools.sunband import development_bands

from .pair import NOON_MS, TODAY, Pair, birth_frame, death_frame, evt_frame, make_tap

ADA = DEMO_BANDS["Ada"]
DAY_MS = 86_400_000


def test_a_valid_band_is_let_in_and_greeted_by_name(pair: Pair, store: Store) -> None:
    result = pair.tap(ADA)
    assert (result.granted, result.reason, result.text, result.name) == (
        True,
        reasons.OK,
        "Welcome Ada",
        "Ada",
    )
    assert store.count_taps() == 1
    assert store.presence("g-ada", "parkside") is not None


def test_a_duplicate_gets_the_stored_answer_and_no_second_record(pair: Pair, store: Store) -> None:
    frame = evt_frame(make_tap(ADA))
    first, again = pair.results([frame]), pair.results([frame], now_ms=NOON_MS + 9000)
    assert (again[0].granted, again[0].reason, again[0].text) == (True, reasons.OK, "Welcome Ada")
    assert first[0].reason == reasons.OK
    assert store.count_taps() == 1
    assert [e.duplicate for e in pair.events() if isinstance(e, Decided)] == [False, True]
    # A new tap of the same band is a second entry attempt: anti-passback applies.
    assert pair.tap(ADA).reason == reasons.ALREADY_INSIDE


def test_the_same_frame_twice_in_one_batch_is_decided_once(pair: Pair, store: Store) -> None:
    frame = evt_frame(make_tap(ADA))
    first, second = pair.results([frame, frame])
    assert first.granted and second.granted and first.corr == second.corr
    assert store.count_taps() == 1


def test_taps_in_one_batch_see_each_others_effects(pair: Pair, store: Store) -> None:
    """Group commit must not change decisions: the second entry in the batch is refused."""
    entering, again = pair.results([evt_frame(make_tap(ADA)), evt_frame(make_tap(ADA))])
    assert (entering.reason, again.reason) == (reasons.OK, reasons.ALREADY_INSIDE)
    leaving, back = pair.results(
        [
            evt_frame(make_tap(ADA, direction=OUT, reader="gate-2"), "gate-2"),
            evt_frame(make_tap(ADA)),
        ]
    )
    assert (leaving.reason, back.reason) == (reasons.OK, reasons.OK)
    assert store.count_taps() == 4


def test_a_tap_decided_after_its_deadline_has_no_effect(pair: Pair, store: Store) -> None:
    """Under a backlog a tap may be decided after its reader showed "try again": it is answered
    stale (RETRY) and not recorded, so the guest's retap (the same operation, a new deadline)
    is decided as new instead of finding a green nobody saw, or a refusal."""
    late = make_tap(ADA, ts=NOON_MS - 2000, deadline=NOON_MS - 1200)
    (result,) = pair.results([evt_frame(late)])
    assert (result.granted, result.reason, result.pattern) == (False, reasons.STALE, messages.RETRY)
    assert store.count_taps() == 0 and store.presence("g-ada", "parkside") is None
    resent = make_tap(ADA, ts=late.ts, deadline=NOON_MS + 800, mid=late.mid)
    assert pair.results([evt_frame(resent)])[0].reason == reasons.OK
    assert store.count_taps() == 1


def test_a_reader_whose_clock_was_never_set_is_not_called_stale(pair: Pair) -> None:
    unset = make_tap(ADA, ts=5_000, deadline=5_800)  # a reader's clock counting from 1970
    assert pair.results([evt_frame(unset)])[0].reason == reasons.OK


def test_unknown_band_and_exit_without_entry(pair: Pair) -> None:
    assert pair.tap(UNKNOWN_BAND_UID).reason == reasons.UNKNOWN_BAND
    left = pair.tap(ADA, direction=OUT, reader="gate-2")
    assert (left.granted, left.reason) == (True, reasons.NOT_INSIDE)


def test_tickets_are_valid_per_day_in_the_venues_time_zone(store: Store) -> None:
    """Emil's ticket is for TODAY only. At 23:30 UTC on TODAY it is already tomorrow in
    Auckland, so an Auckland venue refuses him while a London one lets him in."""
    late = NOON_MS + DAY_MS // 2 - 30 * 60_000
    emil = DEMO_BANDS["Emil"]
    assert Pair(store, Core(ZoneInfo("Europe/London"))).tap(emil, now_ms=late).granted
    leaving = Pair(store, Core(ZoneInfo("Pacific/Auckland"))).tap(
        emil, reader="gate-2", direction=OUT, now_ms=late
    )
    assert leaving.reason == reasons.OK  # exits are never blocked; now he is outside
    assert Pair(store, Core(ZoneInfo("Pacific/Auckland"))).tap(emil, now_ms=late).reason == (
        reasons.NO_VALID_TICKET
    )


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\xff\x00", "malformed"),
        (bytes(5000), "too_large"),
        (dumps({0: 1, 1: 77}), "unknown_type"),
        (dumps([1, 2, 3]), "bad_field"),
    ],
)
def test_bad_frames_are_counted_and_dropped(
    pair: Pair, store: Store, payload: bytes, code: str
) -> None:
    effects = pair.send([evt_frame(payload)])
    assert effects.replies == []
    assert [(e.reader, e.code) for e in effects.events if isinstance(e, Dropped)] == [
        ("gate-1", code)
    ]
    assert store.count_taps() == 0


def test_a_bad_frame_does_not_spoil_its_batch(pair: Pair, store: Store) -> None:
    replies = pair.results([evt_frame(b"\xff"), evt_frame(make_tap(ADA))])
    assert [r.reason for r in replies] == [reasons.OK]
    assert store.count_taps() == 1


def test_a_frame_claiming_another_reader_is_dropped(pair: Pair, store: Store) -> None:
    effects = pair.send([evt_frame(make_tap(ADA, reader="gate-2"), reader="gate-1")])
    assert effects.replies == []
    assert [e.code for e in effects.events if isinstance(e, Dropped)] == ["reader_mismatch"]
    assert store.count_taps() == 0


def test_an_unregistered_reader_is_answered_and_counted_not_recorded(
    pair: Pair, store: Store
) -> None:
    """Issue: every tap of a reader nobody registered was written to the tap log, so one
    stray device could fill it. It is answered unknown_reader and counted, not inserted."""
    result = pair.tap(ADA, reader="gate-9")
    assert (result.granted, result.reason) == (False, reasons.UNKNOWN_READER)
    assert store.count_taps() == 0
    (decided,) = [e for e in pair.events() if isinstance(e, Decided)]
    assert (decided.reader, decided.reason) == ("gate-9", "unknown_reader")


def test_frames_on_other_topics_are_ignored(pair: Pair) -> None:
    frame = evt_frame(make_tap(ADA), kind=topics.RES)
    effects = pair.send([frame])
    assert effects.replies == [] and [type(e) for e in effects.events] == [Dropped]


def test_a_status_heartbeat_is_accepted_and_not_answered(pair: Pair) -> None:
    status = encode(Status(reader="gate-1", ts=1, uptime_s=5, heap_free=1000))
    effects = pair.send([evt_frame(status)])
    assert effects.replies == [] and effects.events == [Ignored("gate-1", "status")]


def test_a_death_ends_the_session_its_birth_began(pair: Pair, store: Store) -> None:
    # The clock, and the band list the gate may decide from when offline.
    replies = pair.send([birth_frame("gate-1", 7)]).replies
    assert [r.topic for r in replies] == ["bl/1/gate-1/cmd"] * 2
    assert store.session_of("gate-1") == 7 and store.readers_online() == 1
    (change,) = pair.send([death_frame("gate-1", 7)]).events
    assert change == SessionChange("gate-1", 7, online=False)
    assert store.readers_online() == 0


def test_a_late_death_of_an_old_session_is_ignored(pair: Pair, store: Store) -> None:
    """Sparkplug B: the reader reconnected (birth 8) before the broker sent the will of 7."""
    pair.send([birth_frame("gate-1", 8)])
    (change,) = pair.send([death_frame("gate-1", 7)]).events
    assert isinstance(change, SessionChange) and change.stale
    assert store.session_of("gate-1") == 8 and store.readers_online() == 1


def test_sessions_survive_a_new_core_and_store(pair: Pair, store: Store, db_url: str) -> None:
    """A restarted gateway (or another process) pairs a death with a birth it never saw."""
    pair.send([birth_frame("gate-1", 3)])
    other = Store(db_url)
    try:
        (change,) = Pair(other).send([death_frame("gate-1", 3)]).events
    finally:
        other.close()
    assert isinstance(change, SessionChange) and not change.stale


def test_a_message_on_the_wrong_topic_is_dropped(pair: Pair, store: Store) -> None:
    on_birth = evt_frame(make_tap(ADA), kind=topics.BIRTH)
    on_evt = evt_frame(birth_frame("gate-1", 1).payload)
    effects = pair.send([on_birth, on_evt])
    assert [e.code for e in effects.events if isinstance(e, Dropped)] == ["wrong_topic"] * 2
    assert store.count_taps() == 0 and store.session_of("gate-1") is None


def test_busy_refusal_asks_for_another_tap_and_records_nothing(pair: Pair, store: Store) -> None:
    effects = pair.core.refuse(evt_frame(make_tap(ADA)), "busy", NOON_MS)
    (reply,) = effects.replies
    result = decode(reply.payload)
    assert isinstance(result, Result)
    assert (result.granted, result.reason, result.pattern) == (
        False,
        reasons.BUSY,
        messages.RETRY,
    )
    assert store.count_taps() == 0


def test_each_gateway_has_its_own_state_frame() -> None:
    core = Core()
    for online in (True, False):
        frame = core.state_frame("gw-2", online=online, now_ms=5)
        assert frame.topic == "bl/1/$gw/gw-2/state"
        assert topics.parse_gateway_state(frame.topic) == "gw-2"
        state = decode(frame.payload)
        assert isinstance(state, GatewayState) and state.online is online


def test_every_reason_the_gateway_can_give_is_in_the_wire_registry() -> None:
    """The core looks reasons up by name (reasons.code); a name missing from the registry
    would fail at the first such tap, on the hot path, instead of here."""
    given = set(entry.REASONS) | set(handler._REFUSAL_TEXT)
    assert given <= set(reasons.NAMES.values())


def _tap_with(key: int, value: int) -> bytes:
    """A gate tap with envelope field ``key`` set to ``value``, encoded as sent (unchecked)."""
    wire = make_tap(ADA, mid=b"\x22" * 16).to_wire()
    wire[key] = value
    return dumps(wire)


@pytest.mark.parametrize("key", [envelope.TS, envelope.DEADLINE])
@pytest.mark.parametrize("value", [2**63, 2**64 - 1])
def test_a_tap_whose_time_the_store_cannot_hold_is_refused_cleanly(
    pair: Pair, store: Store, key: int, value: int
) -> None:
    """Found by fuzzing: a ts of 2^63 or more was a valid u64 on the wire, but no BIGINT holds
    it; the insert raised OverflowError out of Core.handle. A deadline that far out was granted
    (it can never be stale). Times are below 2^63 now (SPEC, Envelope): such a tap is refused
    at decode and, its envelope readable, answered bad_request."""
    (result,) = pair.results([evt_frame(_tap_with(key, value))])
    assert (result.granted, result.reason, result.name) == (False, reasons.BAD_REQUEST, None)
    assert store.count_taps() == 0 and store.presence("g-ada", "parkside") is None


def test_a_session_number_the_store_cannot_hold_is_dropped(pair: Pair, store: Store) -> None:
    frames = []
    for frame, bdseq in ((birth_frame("gate-1", 1), 2**63), (death_frame("gate-1", 1), 2**64 - 1)):
        wire = cbor.loads(frame.payload)
        wire[envelope.BDSEQ] = bdseq
        frames.append(Frame(frame.topic, dumps(wire), frame.received_ms))
    effects = pair.send(frames)
    assert effects.replies == []
    assert [e.code for e in effects.events if isinstance(e, Dropped)] == ["bad_field"] * 2
    assert store.session_of("gate-1") is None


def _other_operation(tap: Tap, change: str) -> Tap:
    fields = {
        "reader": tap.reader,
        "ts": tap.ts,
        "mid": tap.mid,
        "uid": tap.uid,
        "role": tap.role,
        "direction": tap.direction,
    }
    if change == "uid":
        fields["uid"] = DEMO_BANDS["Dara"]  # blocked
    elif change == "reader":
        fields["reader"] = "gate-2"
    elif change == "direction":
        fields["direction"] = OUT
    elif change == "role":
        fields.update(role=messages.PHOTO, point="splash")
    return Tap(**fields)


@pytest.mark.parametrize("change", ["uid", "reader", "direction", "role"])
def test_a_known_mid_from_another_operation_is_a_bad_request(
    pair: Pair, store: Store, change: str
) -> None:
    """Issue: Dara's blocked band under Ada's mid got "Welcome Ada". A mid names one operation
    of one reader: a tap under it with another reader, band, role or direction is answered
    bad_request, with no name, and nothing is recorded or changed."""
    first = make_tap(ADA)
    assert pair.results([evt_frame(first)])[0].text == "Welcome Ada"
    before = store.presence("g-ada", "parkside")
    other = _other_operation(first, change)
    assert other.reader is not None
    (result,) = pair.results([evt_frame(other, reader=other.reader)])
    assert (result.granted, result.reason, result.name) == (False, reasons.BAD_REQUEST, None)
    assert result.corr == first.mid and "Ada" not in (result.text or "")
    assert store.count_taps() == 1 and store.presence("g-ada", "parkside") == before
    assert store.presence("g-dara", "parkside") is None
    # The operation itself is still answered as it was.
    assert pair.results([evt_frame(first)])[0].text == "Welcome Ada"


def _broken_tap(reader: str = "gate-1", mid: bytes = b"\x11" * 16) -> bytes:
    wire = make_tap(ADA, reader=reader, mid=mid).to_wire()
    del wire[9][2]  # a gate tap without its direction: decodes as CBOR, breaks a field rule
    return dumps(wire)


def test_a_tap_that_breaks_a_field_rule_is_answered_bad_request(pair: Pair, store: Store) -> None:
    """Issue: such a tap was dropped unanswered and the reader showed "try again" for ever.
    Its envelope names the topic's reader and a mid: it gets a red bad_request."""
    effects = pair.send([evt_frame(_broken_tap())])
    (reply,) = effects.replies
    result = decode(reply.payload)
    assert reply.topic == "bl/1/gate-1/res" and isinstance(result, Result)
    assert (result.granted, result.reason) == (False, reasons.BAD_REQUEST)
    assert result.corr == b"\x11" * 16
    assert result.pattern != messages.RETRY
    assert [e.code for e in effects.events if isinstance(e, Dropped)] == ["bad_field"]
    assert store.count_taps() == 0


@pytest.mark.parametrize(
    "payload",
    [
        _broken_tap(reader="gate-2"),  # another reader's envelope on gate-1's topic
        dumps({0: 1, 1: 1, 2: "gate-1", 9: {}}),  # no mid to answer
        dumps({0: 2, 1: 1, 2: "gate-1", 5: b"\x11" * 16}),  # not version 1
        dumps({0: 1, 1: 5, 2: "gate-1", 5: b"\x11" * 16}),  # a broken Status, not a tap
        _broken_tap()[:-1],  # not CBOR
    ],
    # Named: a payload carries the time, and pytest-xdist's workers must collect the same ids.
    ids=["another-readers-envelope", "no-mid", "version-2", "status", "not-cbor"],
)
def test_what_cannot_be_answered_is_still_only_dropped(pair: Pair, payload: bytes) -> None:
    effects = pair.send([evt_frame(payload)])
    assert effects.replies == [] and [type(e) for e in effects.events] == [Dropped]


def test_a_broken_tap_refused_busy_is_answered_bad_request_too(pair: Pair) -> None:
    (reply,) = pair.core.refuse(evt_frame(_broken_tap()), "busy", NOON_MS).replies
    result = decode(reply.payload)
    assert isinstance(result, Result) and result.reason == reasons.BAD_REQUEST


@pytest.mark.parametrize("kind", ["offline", "beyond 2^63"])
def test_a_tap_that_cannot_be_acted_on_is_a_bad_request_even_when_busy(
    pair: Pair, kind: str
) -> None:
    """SPEC's order puts bad_request (1) before busy (2): a full queue or the rate limit must
    not tell a reader to send again a tap that can never be decided."""
    tap = make_tap(ADA, offline=True) if kind == "offline" else _tap_with(envelope.DEADLINE, 2**63)
    (reply,) = pair.core.refuse(evt_frame(tap), "busy", NOON_MS).replies
    result = decode(reply.payload)
    assert isinstance(result, Result)
    assert (result.reason, result.pattern) == (reasons.BAD_REQUEST, None)


def test_a_birth_older_than_the_open_session_is_ignored_as_stale(pair: Pair, store: Store) -> None:
    """Issue: a birth with a lower bdSeq (a late copy, or a redelivery) replaced the newer open
    session, so the newer session's death was then ignored and the reader looked online."""
    pair.send([birth_frame("gate-1", 8)])
    (change,) = [e for e in pair.send([birth_frame("gate-1", 7)]).events]
    assert change == SessionChange("gate-1", 7, online=True, firmware="fw", stale=True)
    assert store.session_of("gate-1") == 8
    (again,) = pair.send([birth_frame("gate-1", 8)]).events  # a copy of the open one: fine
    assert isinstance(again, SessionChange) and not again.stale
    (closed,) = pair.send([death_frame("gate-1", 8)]).events
    assert isinstance(closed, SessionChange) and not closed.stale
    assert store.readers_online() == 0


def test_a_closed_session_may_be_replaced_by_any_birth(pair: Pair, store: Store) -> None:
    """A reader whose flash was wiped starts again from a low bdSeq: once its old session is
    closed, that birth opens a new one."""
    pair.send([birth_frame("gate-1", 8), death_frame("gate-1", 8)])
    (change,) = pair.send([birth_frame("gate-1", 1)]).events
    assert isinstance(change, SessionChange) and not change.stale
    assert store.session_of("gate-1") == 1 and store.readers_online() == 1


@pytest.mark.parametrize(
    ("reader", "direction", "gate"),
    [("gate-1", OUT, None), ("gate-2", IN, None), ("gate-1", IN, "south"), ("gate-2", OUT, "x")],
)
def test_a_tap_disagreeing_with_the_readers_configuration_is_refused(
    pair: Pair, store: Store, reader: str, direction: int, gate: str | None
) -> None:
    """Issue: an entry reader claiming "out" let an unknown band through with "Goodbye". The
    catalog, not the tap, says which way a reader's gate passes, and which gate it is."""
    for uid in (UNKNOWN_BAND_UID, ADA):
        tap = Tap(
            reader=reader,
            ts=5,
            mid=os.urandom(16),
            uid=uid,
            role=messages.GATE,
            direction=direction,
            gate=gate,
            **development_bands().read(uid),
        )
        (result,) = pair.results([evt_frame(tap, reader=reader)])
        assert (result.granted, result.reason) == (False, reasons.WRONG_DIRECTION)
        assert "Goodbye" not in (result.text or "")
    assert store.presence("g-ada", "parkside") is None


def test_a_tap_naming_its_own_gate_or_none_is_decided(pair: Pair) -> None:
    named = Tap(
        reader="gate-1",
        ts=5,
        mid=os.urandom(16),
        uid=ADA,
        role=messages.GATE,
        direction=IN,
        gate="north",
        **development_bands().read(ADA),
    )
    assert pair.results([evt_frame(named)])[0].reason == reasons.OK
    assert pair.tap(UNKNOWN_BAND_UID, reader="gate-2", direction=OUT).reason == reasons.NOT_INSIDE


def test_every_birth_is_answered_with_the_gateways_clock(pair: Pair) -> None:
    """A reader's clock follows the gateway's: TIME_SYNC on every birth (the reader judges
    deadlines and stamps taps with it)."""
    for bdseq in (5, 4):  # the second is stale, but its reader is connected: sync it too
        reply, *band_list = pair.send(
            [birth_frame("gate-1", bdseq)], now_ms=NOON_MS + bdseq
        ).replies
        assert len(band_list) == (1 if bdseq == 5 else 0), "a list for the open session only"
        command = decode(reply.payload)
        assert reply.topic == "bl/1/gate-1/cmd" and not reply.retain
        assert isinstance(command, Command) and command.op == messages.TIME_SYNC
        assert (command.reader, command.time_ms, len(command.mid or b"")) == (
            "gate-1",
            NOON_MS + bdseq,
            16,
        )
    assert pair.send([death_frame("gate-1", 5)]).replies == []


def test_each_site_keeps_its_own_time_zone(store: Store) -> None:
    """The gateway's zone is the default; a site's own zone wins. At 23:30 UTC it is already
    tomorrow in Auckland: Emil's ticket for TODAY no longer admits there."""
    late = NOON_MS + DAY_MS // 2 - 30 * 60_000
    emil = DEMO_BANDS["Emil"]
    store.load_venue({"sites": [{"id": "parkside", "timezone": "Pacific/Auckland"}]}, today=TODAY)
    assert Pair(store, Core(ZoneInfo("UTC"))).tap(emil, now_ms=late).reason == (
        reasons.NO_VALID_TICKET
    )
    store.load_venue({"sites": [{"id": "parkside", "timezone": "Europe/London"}]}, today=TODAY)
    assert Pair(store, Core(ZoneInfo("Pacific/Auckland"))).tap(emil, now_ms=late).granted


def test_a_site_that_names_no_closing_follows_the_gateways_setting(store: Store) -> None:
    """A site listed without a closing stored 04:00, so the gateway's ``closing`` setting
    applied to no listed site. Ada entered at 09:00 with no exit; at noon she is inside while
    the closing is 04:00, and outside (let in again) once the gateway closes at 10:00."""
    store.load_venue({"sites": [{"id": "parkside", "timezone": "UTC"}]}, today=TODAY)
    ada, nine = DEMO_BANDS["Ada"], NOON_MS - 3 * 3_600_000
    assert Pair(store, Core(ZoneInfo("UTC"))).tap(ada, now_ms=nine).reason == reasons.OK
    inside = Pair(store, Core(ZoneInfo("UTC"))).tap(ada, now_ms=NOON_MS)
    assert inside.reason == reasons.ALREADY_INSIDE
    closes_at_ten = Core(ZoneInfo("UTC"), closing=time(10, 0))
    assert Pair(store, closes_at_ten).tap(ada, now_ms=NOON_MS).reason == reasons.OK


def test_the_day_is_the_one_the_tap_arrived_in_not_the_one_it_was_decided_in(
    pair: Pair,
) -> None:
    """Emil's ticket is for TODAY only (UTC here). A tap that arrived at 23:59 and was decided
    at 00:01 (a backlog) is TODAY's; one that arrived at 00:01 is not, even if decided at 23:59
    by a clock running behind."""
    midnight = NOON_MS + DAY_MS // 2
    emil = DEMO_BANDS["Emil"]
    late = evt_frame(make_tap(emil), received_ms=midnight + 60_000)
    assert pair.results([late], now_ms=midnight - 60_000)[0].reason == reasons.NO_VALID_TICKET
    in_time = evt_frame(make_tap(emil), received_ms=midnight - 60_000)
    assert pair.results([in_time], now_ms=midnight + 60_000)[0].reason == reasons.OK


def test_presence_ends_at_closing(pair: Pair, store: Store) -> None:
    """Issue: presence never expired: an entry two days ago with no exit refused today's valid
    ticket. A presence changed before the site's latest closing (04:00) counts as outside."""
    two_days_ago = NOON_MS - 2 * DAY_MS
    store.load_venue(
        {
            "guests": [
                {
                    "id": "g-ada",
                    "name": "Ada Okafor",
                    "first_name": "Ada",
                    "tickets": [
                        {
                            "id": "t-ada-old",
                            "site": "parkside",
                            "valid_from": "today-2",
                            "valid_until": "today-2",
                        }
                    ],
                }
            ]
        },
        today=TODAY,
    )
    assert pair.tap(ADA, now_ms=two_days_ago).reason == reasons.OK
    assert pair.tap(ADA, now_ms=two_days_ago + 3_600_000).reason == reasons.ALREADY_INSIDE
    today = pair.tap(ADA)  # no exit since: today's ticket admits again
    assert (today.granted, today.reason) == (True, reasons.OK)
    assert pair.tap(ADA).reason == reasons.ALREADY_INSIDE  # and today's presence counts
    # Closing at 13:00 instead: the entry at noon today is before it, so at 13:30 it is gone.
    store.load_venue({"sites": [{"id": "parkside", "closing": "13:00"}]}, today=TODAY)
    assert pair.tap(ADA, now_ms=NOON_MS + 90 * 60_000).reason == reasons.OK


@pytest.mark.parametrize(
    ("site", "problem"),
    [
        ({"id": "x", "timezone": "Mars/Olympus"}, "time zone"),
        ({"id": "x", "closing": "25:00"}, "closing"),
    ],
)
def test_a_site_with_a_clock_that_does_not_parse_is_refused(
    store: Store, site: dict[str, str], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        store.load_venue({"sites": [site]}, today=TODAY)


def test_a_tap_decided_offline_sent_on_its_own_is_a_bad_request(pair: Pair, store: Store) -> None:
    """An offline tap travels only inside a Journal (SPEC, Tap): alone it is not decided."""
    (result,) = pair.results([evt_frame(make_tap(ADA, offline=True))])
    assert (result.granted, result.reason) == (False, reasons.BAD_REQUEST)
    assert store.count_taps() == 0 and store.presence("g-ada", "parkside") is None


def test_a_known_mid_is_answered_before_the_reader_is_checked(
    pair: Pair, store: Store, db_url: str
) -> None:
    """SPEC's order: a mid stored before is answered by scope (bad_request for another
    operation, the stored answer for this one) even once its reader has left the catalog."""
    first = make_tap(ADA)
    assert pair.results([evt_frame(first)])[0].reason == reasons.OK
    posing = Tap(reader="gate-9", ts=5, mid=first.mid, uid=ADA, role=messages.GATE, direction=IN)
    (result,) = pair.results([evt_frame(posing, reader="gate-9")])
    assert (result.reason, result.name) == (reasons.BAD_REQUEST, None)
    engine = create_engine(normalise_db_url(db_url))
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM readers WHERE id = 'gate-1'"))
    engine.dispose()
    again = pair.results([evt_frame(first)])[0]
    assert (again.granted, again.reason, again.text) == (True, reasons.OK, "Welcome Ada")
    assert pair.tap(DEMO_BANDS["Emil"]).reason == reasons.UNKNOWN_READER
    assert store.count_taps() == 1
