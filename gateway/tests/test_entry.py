"""decide_entry: examples of each reason, then properties over random tap sequences."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandlink.gateway.core.entry import (
    REASONS,
    Band,
    EntryDecision,
    Presence,
    Reader,
    Ticket,
    decide_entry,
    last_closing_ms,
    venue_day,
)

TODAY = date(2026, 7, 1)
SITE = "parkside"
GUEST = "g-ada"
NORTH = Reader("gate-1", SITE, "gate", "north")
SOUTH = Reader("gate-9", SITE, "gate", "south")
BAND = Band(b"\x04\xa1\xb2\xc3\xd4\xe5\xf6", GUEST, blocked=False)
TICKET = Ticket("t-ada", GUEST, SITE, TODAY, TODAY)


def tap(
    direction: str,
    *,
    presence: Presence | None = None,
    band: Band | None = BAND,
    tickets: tuple[Ticket, ...] = (TICKET,),
    reader: Reader = NORTH,
    now_ms: int = 1_000_000,
) -> EntryDecision:
    return decide_entry(
        reader=reader,
        band=band,
        tickets=tickets,
        presence=presence,
        direction=direction,
        today=TODAY,
        now_ms=now_ms,
    )


def inside(gate: str = "north", changed_ms: int = 0) -> Presence:
    return Presence(GUEST, SITE, True, gate, changed_ms)


# -- examples -------------------------------------------------------------------------------


def test_first_entry_is_granted_and_sets_inside() -> None:
    decision = tap("in", now_ms=5)
    assert decision == EntryDecision(True, "ok", Presence(GUEST, SITE, True, "north", 5))


@pytest.mark.parametrize(
    ("band", "reason"),
    [
        (None, "unknown_band"),
        (Band(b"\x04" * 7, None, blocked=False), "unknown_band"),
        (Band(BAND.uid, GUEST, blocked=True), "band_blocked"),
    ],
)
def test_entry_refused_for_bad_band(band: Band | None, reason: str) -> None:
    assert tap("in", band=band) == EntryDecision(False, reason, None)


@pytest.mark.parametrize(
    "ticket",
    [
        Ticket("t", GUEST, SITE, TODAY - timedelta(days=3), TODAY - timedelta(days=1)),
        Ticket("t", GUEST, SITE, TODAY + timedelta(days=1), TODAY + timedelta(days=2)),
        Ticket("t", GUEST, "riverside", TODAY, TODAY),
        Ticket("t", "g-someone-else", SITE, TODAY, TODAY),
    ],
    ids=["expired", "not-yet", "other-site", "other-guest"],
)
def test_entry_refused_without_a_valid_ticket(ticket: Ticket) -> None:
    assert tap("in", tickets=(ticket,)) == EntryDecision(False, "no_valid_ticket", None)


def test_ticket_dates_are_inclusive() -> None:
    for day in (TODAY, TODAY + timedelta(days=2)):
        ticket = Ticket("t", GUEST, SITE, TODAY, TODAY + timedelta(days=2))
        decision = decide_entry(
            reader=NORTH,
            band=BAND,
            tickets=[ticket],
            presence=None,
            direction="in",
            today=day,
            now_ms=0,
        )
        assert decision.granted


def test_second_entry_is_passback_even_a_moment_later_at_the_same_gate() -> None:
    # No grace window: a band passed back over the barrier must not get a second person in.
    decision = tap("in", presence=inside(changed_ms=1000), now_ms=1001)
    assert decision == EntryDecision(False, "already_inside", None)


def test_quick_second_tap_at_another_gate_is_passback() -> None:
    decision = tap("in", presence=inside(changed_ms=1000), reader=SOUTH, now_ms=1001)
    assert decision.reason == "already_inside"


def test_exit_while_inside_sets_outside() -> None:
    decision = tap("out", presence=inside(), reader=SOUTH, now_ms=7)
    # The new presence names the next version: the store writes it only over the one read.
    assert decision == EntryDecision(True, "ok", Presence(GUEST, SITE, False, "south", 7, 1))


@pytest.mark.parametrize(
    "band", [None, Band(BAND.uid, GUEST, blocked=True)], ids=["unknown", "blocked"]
)
def test_exit_is_never_blocked(band: Band | None) -> None:
    assert tap("out", band=band, tickets=()) == EntryDecision(True, "not_inside", None)


def test_blocked_band_inside_can_still_leave() -> None:
    decision = tap("out", band=Band(BAND.uid, GUEST, blocked=True), presence=inside(), tickets=())
    assert decision.granted and decision.presence is not None and not decision.presence.inside


def test_caller_bugs_fail_fast() -> None:
    with pytest.raises(ValueError, match="direction"):
        tap("sideways")
    with pytest.raises(ValueError, match="presence"):
        tap("in", presence=Presence(GUEST, "riverside", True, "north", 0))
    with pytest.raises(ValueError, match="presence"):
        tap("in", presence=Presence("g-other", SITE, True, "north", 0))


# -- properties -----------------------------------------------------------------------------

READERS = st.sampled_from([NORTH, Reader("gate-2", SITE, "gate", "north"), SOUTH])
TAPS = st.lists(
    st.tuples(st.sampled_from(["in", "out"]), READERS, st.integers(0, 30_000)),
    max_size=40,
)


@given(TAPS)
def test_random_tap_sequences_keep_the_invariants(taps: list[tuple[str, Reader, int]]) -> None:
    presence: Presence | None = None
    now = 0
    counted_in = False  # an "ok" entry not yet followed by a granted exit
    for direction, reader, step in taps:
        now += step
        before = presence
        d = tap(direction, presence=before, reader=reader, now_ms=now)
        assert d.reason in REASONS
        was_inside = before is not None and before.inside
        if direction == "out":
            assert d.granted  # exits are always granted
            counted_in = False
        if d.presence is not None:
            # State changes only on a granted "ok", to the direction's state, stamped now.
            assert d.granted and d.reason == "ok"
            assert d.presence.inside == (direction == "in") != was_inside
            assert (d.presence.gate, d.presence.changed_ms) == (reader.gate, now)
            presence = d.presence
        if direction == "in" and d.reason == "ok":
            assert not counted_in  # never two counted entries without an exit between
            counted_in = True
        if direction == "in" and was_inside:
            assert (d.granted, d.reason) == (False, "already_inside")


BAD_BANDS = st.one_of(
    st.none(),
    st.builds(Band, st.binary(min_size=7, max_size=7), st.none(), st.booleans()),
    st.builds(Band, st.binary(min_size=7, max_size=7), st.just(GUEST), st.just(True)),
)
PRESENCES = st.one_of(
    st.none(),
    st.builds(
        Presence, st.just(GUEST), st.just(SITE), st.booleans(), st.just("north"), st.integers()
    ),
)


@given(BAD_BANDS, PRESENCES, st.integers(0, 10**6))
def test_bad_band_never_enters(band: Band | None, p: Presence | None, now: int) -> None:
    if band is None or band.guest_id is None:
        p = None  # no guest, so no presence to pass
    decision = tap("in", band=band, presence=p, now_ms=now)
    assert not decision.granted and decision.presence is None


TICKETS = st.lists(
    st.builds(
        Ticket,
        st.text(min_size=1, max_size=3),
        st.sampled_from([GUEST, "g-other"]),
        st.sampled_from([SITE, "riverside"]),
        st.dates(TODAY - timedelta(days=3), TODAY + timedelta(days=3)),
        st.dates(TODAY - timedelta(days=3), TODAY + timedelta(days=3)),
    ),
    max_size=4,
)


@given(TICKETS)
def test_entry_granted_exactly_when_some_ticket_is_valid(tickets: list[Ticket]) -> None:
    valid = any(
        t.guest_id == GUEST and t.site == SITE and t.valid_from <= TODAY <= t.valid_until
        for t in tickets
    )
    decision = tap("in", tickets=tuple(tickets))
    assert decision.granted == valid
    assert decision.reason == ("ok" if valid else "no_valid_ticket")


# -- venue days and closing -----------------------------------------------------------------

ZONES = st.sampled_from(
    [ZoneInfo(z) for z in ("UTC", "Europe/London", "America/New_York", "Pacific/Auckland")]
)
CLOSINGS = st.builds(time, st.integers(0, 23), st.sampled_from([0, 30]))
# 2020..2035, in ms: DST changes of every zone above included.
INSTANTS = st.integers(1_577_836_800_000, 2_082_758_400_000)
HOUR_MS = 3_600_000


@given(INSTANTS, ZONES, CLOSINGS)
def test_the_latest_closing_is_within_a_day_before(
    instant: int, zone: ZoneInfo, closing: time
) -> None:
    closed = last_closing_ms(instant, zone, closing)
    assert instant - 25 * HOUR_MS <= closed <= instant  # a DST day has 23 or 25 hours
    assert last_closing_ms(closed, zone, closing) == closed  # a closing is its own latest
    local = datetime.fromtimestamp(closed / 1000, zone)
    if closed < instant and local.utcoffset() == (local - timedelta(hours=2)).utcoffset():
        # Away from DST changes, the site's clock read the closing time then.
        assert (local.hour, local.minute) == (closing.hour, closing.minute)


@given(INSTANTS, st.integers(0, 48 * HOUR_MS), ZONES, CLOSINGS)
def test_closings_and_days_only_move_forward(
    instant: int, later: int, zone: ZoneInfo, closing: time
) -> None:
    assert last_closing_ms(instant, zone, closing) <= last_closing_ms(
        instant + later, zone, closing
    )
    assert venue_day(instant, zone) <= venue_day(instant + later, zone)


def test_today_is_the_sites_date_and_the_closing_the_latest_before() -> None:
    london = ZoneInfo("Europe/London")
    one_am = int(datetime(2026, 7, 4, 1, 0, tzinfo=london).timestamp() * 1000)  # BST
    assert venue_day(one_am, london) == date(2026, 7, 4)
    assert venue_day(one_am, ZoneInfo("America/New_York")) == date(2026, 7, 3)
    assert last_closing_ms(one_am, london) == one_am - 21 * HOUR_MS  # Friday 04:00
    assert last_closing_ms(one_am + 3 * HOUR_MS, london) == one_am + 3 * HOUR_MS  # 04:00


@given(st.integers(0, 10**7), st.integers(1, 10**7), st.sampled_from(["in", "out"]))
def test_a_presence_older_than_the_closing_counts_as_outside(
    changed: int, since: int, direction: str
) -> None:
    """Issue: presence never expired, so an entry two days ago with no exit refused today's
    valid ticket for ever."""
    old = Presence(GUEST, SITE, True, "north", changed, version=3)
    reader = NORTH if direction == "in" else SOUTH
    decision = decide_entry(
        reader=reader,
        band=BAND,
        tickets=[TICKET],
        presence=old,
        direction=direction,
        today=TODAY,
        now_ms=changed + since + 1,
        closed_ms=changed + since,
    )
    if direction == "in":  # let in, over the version it read
        assert decision == EntryDecision(
            True, "ok", Presence(GUEST, SITE, True, "north", changed + since + 1, 4)
        )
    else:  # an exit with no entry on record since the closing
        assert decision == EntryDecision(True, "not_inside", None)
    fresh = decide_entry(
        reader=NORTH,
        band=BAND,
        tickets=[TICKET],
        presence=old,
        direction="in",
        today=TODAY,
        now_ms=changed + 1,
        closed_ms=changed,
    )
    assert fresh.reason == "already_inside"  # changed at (or after) the closing: still inside
