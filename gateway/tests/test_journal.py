"""Journals: taps a reader decided alone, uploaded later, applied exactly once (SPEC, "Offline
decisions and the journal"). Through the in-memory pair: the real core and a real store, on
SQLite and PostgreSQL.

Each offline tap is recorded as it happened (what the guest saw) beside what the gateway would
have answered at the tap's own time; one the gateway would have refused is an exception for
the reconciliation report. The journal's Result is the acknowledgement."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bandlink.gateway.core.handler import Decided, Dropped
from bandlink.gateway.store import Store
from bandlink.gateway.venue import DEMO_BANDS, UNKNOWN_BAND_UID
from bandlink.protocol import (
    GATE,
    IN,
    OUT,
    POS,
    Journal,
    Result,
    Tap,
    decode,
    encode,
    messages,
    reasons,
)
from bandlink.tools.sunband import development_bands

from .pair import NOON_MS, Pair, evt_frame, make_tap

ADA, BO, DARA, EMIL = (DEMO_BANDS[name] for name in ("Ada", "Bo", "Dara", "Emil"))
SITE = "parkside"
DAY_MS = 86_400_000
MINUTE_MS = 60_000


def offline_tap(
    uid: bytes,
    *,
    reader: str = "gate-1",
    ts: int = NOON_MS - 10 * MINUTE_MS,
    granted: bool = True,
    reason: int | None = None,
    direction: int = IN,
    mid: bytes | None = None,
    sun: bool = True,
    reading: dict[str, bytes] | None = None,
) -> Tap:
    """A gate tap the reader decided alone, as its journal carries it: with a fresh SUN
    reading of the band, ``reading`` (one shown before), or (``sun`` False) the UID alone."""
    if reading is None:
        reading = development_bands().read(uid) if sun else {}
    if reason is None:
        reason = reasons.OFFLINE_LIST if granted else reasons.OFFLINE_NOT_LISTED
    return Tap(
        reader=reader,
        ts=ts,
        deadline=ts + 800,
        mid=mid or os.urandom(16),
        uid=uid,
        role=GATE,
        direction=direction,
        offline=True,
        local_granted=granted,
        local_reason=reason,
        **reading,
    )


def upload(pair: Pair, *taps: Tap, mid: bytes | None = None) -> Result:
    """One journal of ``taps`` from their reader; its answer."""
    reader = taps[0].reader
    journal = Journal(reader=reader, ts=NOON_MS, mid=mid or os.urandom(16), taps=list(taps))
    (answer,) = pair.results([evt_frame(encode(journal), reader)])
    assert answer.corr == journal.mid
    return answer


def exceptions(store: Store) -> dict[bytes, str]:
    return {t.mid: t.exception for t in store.recent_taps(1000) if t.exception is not None}


def test_an_offline_entry_is_recorded_once_and_lets_the_guest_in(pair: Pair, store: Store) -> None:
    tap = offline_tap(ADA)
    answer = upload(pair, tap)
    assert (answer.granted, answer.reason) == (True, reasons.OK)
    (record,) = store.recent_taps()
    assert (record.mid, record.offline, record.granted, record.reason) == (
        tap.mid,
        True,
        True,
        "offline_list",
    )
    assert (record.gateway_reason, record.exception, record.guest_id) == ("ok", None, "g-ada")
    assert record.reader_ts_ms == tap.ts
    presence = store.presence("g-ada", SITE)
    assert presence is not None and presence.inside and presence.changed_ms == tap.ts
    # The same journal again (its answer was lost): acknowledged, nothing applied twice.
    again = upload(pair, tap)
    assert again.granted and store.count_taps() == 1
    # The guest is inside: a live entry now is a second one.
    assert pair.tap(ADA).reason == reasons.ALREADY_INSIDE


def test_an_entry_the_gateway_would_have_refused_is_an_exception(pair: Pair, store: Store) -> None:
    """A blocked band not yet off the reader's list, an expired ticket, an unknown band: the
    guest went in (recorded so), and the report lists each, with the gateway's reason."""
    blocked, expired, unknown = offline_tap(DARA), offline_tap(BO), offline_tap(UNKNOWN_BAND_UID)
    assert upload(pair, blocked, expired, unknown).granted
    assert exceptions(store) == {
        blocked.mid: "band_blocked",
        expired.mid: "no_valid_ticket",
        unknown.mid: "unknown_band",
    }
    assert all(t.granted and t.offline for t in store.recent_taps())
    dara = store.presence("g-dara", SITE)
    assert dara is not None and dara.inside, "the holder of Dara's band went in"


def test_a_second_entry_at_another_reader_is_an_exception(pair: Pair, store: Store) -> None:
    assert pair.tap(ADA).granted  # live, at gate-1, at noon
    later = offline_tap(ADA, reader="gate-3", ts=NOON_MS + MINUTE_MS)
    assert upload(pair, later).granted
    assert exceptions(store) == {later.mid: "already_inside"}


def test_the_tap_is_judged_at_its_own_time_not_at_the_upload(pair: Pair, store: Store) -> None:
    """Emil's ticket is for today only: his offline entry yesterday evening was not valid,
    and one this morning uploaded tomorrow is."""
    yesterday = offline_tap(EMIL, ts=NOON_MS - DAY_MS)
    today = offline_tap(EMIL, ts=NOON_MS - 2 * 3_600_000)
    tomorrow = NOON_MS + DAY_MS
    journal = Journal(reader="gate-1", ts=tomorrow, mid=os.urandom(16), taps=[yesterday, today])
    pair.results([evt_frame(encode(journal), received_ms=tomorrow)], now_ms=tomorrow)
    assert exceptions(store) == {yesterday.mid: "no_valid_ticket"}


def test_a_late_journal_does_not_undo_a_later_passage(pair: Pair, store: Store) -> None:
    """An exit decided offline at 11:50 reaches the gateway after Ada's live entry at noon:
    she is inside (the latest passage), not out."""
    assert pair.tap(ADA).granted
    assert upload(pair, offline_tap(ADA, reader="gate-2", direction=OUT)).granted
    presence = store.presence("g-ada", SITE)
    assert presence is not None and presence.inside and presence.changed_ms == NOON_MS


def test_a_tap_decided_live_and_journalled_too_counts_once(pair: Pair, store: Store) -> None:
    """The reader got no answer (it showed RETRY) but the gateway had decided: the journal
    carries the same operation as no_reply, and the live decision stands."""
    live = make_tap(ADA, ts=NOON_MS - 100, deadline=NOON_MS + 700)
    assert pair.results([evt_frame(live)])[0].granted
    unanswered = offline_tap(ADA, ts=live.ts, mid=live.mid, granted=False, reason=reasons.NO_REPLY)
    assert upload(pair, unanswered).granted
    (record,) = store.recent_taps()
    assert (record.offline, record.granted, record.reason) == (False, True, "ok")
    assert [e.duplicate for e in pair.events() if isinstance(e, Decided)] == [False, True]


def test_a_refusal_offline_is_recorded_and_changes_nothing(pair: Pair, store: Store) -> None:
    refused = offline_tap(ADA, granted=False)
    no_answer = offline_tap(EMIL, granted=False, reason=reasons.NO_REPLY)
    assert upload(pair, refused, no_answer).granted
    reasons_seen = {t.mid: (t.granted, t.reason, t.exception) for t in store.recent_taps()}
    assert reasons_seen == {
        refused.mid: (False, "offline_not_listed", None),
        no_answer.mid: (False, "no_reply", None),
    }
    assert store.presence("g-ada", SITE) is None and store.presence("g-emil", SITE) is None


def test_a_copied_reading_is_a_replay_and_an_older_one_is_not(pair: Pair, store: Store) -> None:
    """Offline taps arrive out of order: a reading older than the band's last accepted one is
    genuine, unless that very reading was recorded before (a copy shown at a second reader)."""
    reading = development_bands().read(ADA)
    older = offline_tap(ADA, reader="gate-1", ts=NOON_MS - 20 * MINUTE_MS, reading=reading)
    assert pair.tap(ADA, reader="gate-2", direction=OUT).granted  # a later reading, live
    copy = offline_tap(ADA, reader="gate-3", ts=NOON_MS - 5 * MINUTE_MS, reading=reading)
    assert upload(pair, older).granted and upload(pair, copy).granted
    assert exceptions(store) == {copy.mid: "replayed"}


def test_a_cloned_uid_let_in_offline_is_nobodys_and_an_exception(pair: Pair, store: Store) -> None:
    clone = offline_tap(ADA, sun=False)  # Ada's UID on another tag: no SUN reading
    assert upload(pair, clone).granted
    (record,) = store.recent_taps()
    assert (record.exception, record.guest_id) == ("bad_mac", None)
    assert store.presence("g-ada", SITE) is None
    assert [e.alert for e in pair.events() if isinstance(e, Decided)] == ["possible clone"]


def test_a_journal_refused_busy_records_nothing_and_asks_again(pair: Pair, store: Store) -> None:
    journal = Journal(reader="gate-1", ts=NOON_MS, mid=os.urandom(16), taps=[offline_tap(ADA)])
    frame = evt_frame(encode(journal))
    (reply,) = pair.core.refuse(frame, "busy", NOON_MS).replies
    answer = decode(reply.payload)
    assert isinstance(answer, Result)
    assert (answer.corr, answer.granted, answer.pattern) == (journal.mid, False, messages.RETRY)
    assert store.count_taps() == 0


def test_an_unknown_readers_offline_taps_are_not_recorded_and_a_tills_are_reported(
    pair: Pair, store: Store
) -> None:
    """As live: a device nobody registered fills no tap log. A till's offline sale for a charge
    the gateway never made moves no money: it is on the report for staff, not dropped (the
    rest of a till's offline sales: test_offline_sales.py)."""
    stranger = offline_tap(ADA, reader="gate-9")
    assert upload(pair, stranger).granted
    assert store.count_taps() == 0
    assert [e.code for e in pair.events() if isinstance(e, Dropped)] == ["unknown_reader"]
    sale = Tap(
        reader="pos-1",
        ts=NOON_MS - MINUTE_MS,
        mid=os.urandom(16),
        uid=ADA,
        role=POS,
        charge=os.urandom(16),
        offline=True,
        local_granted=True,
        local_reason=reasons.OFFLINE_LIST,
    )
    assert upload(pair, sale).granted
    assert exceptions(store) == {sale.mid: "charge_unknown"}


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["Ada", "Bo", "Dara", "Emil", "Chen"]),
            st.sampled_from(["gate-1", "gate-2", "gate-3"]),
            st.booleans(),
        ),
        min_size=1,
        max_size=12,
    ),
    st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=6),
    st.randoms(use_true_random=False),
)
def test_uploads_split_repeated_and_reordered_record_each_tap_exactly_once(
    store: Store, taps: list[tuple[str, str, bool]], sizes: list[int], shuffle: object
) -> None:
    """However a reader's outbox splits its journal, and however often an upload is sent again
    (answers lost), every tap is recorded once, and only granted taps can be exceptions."""
    pair = Pair(store)
    start = store.count_taps()
    minute = NOON_MS - 60 * MINUTE_MS
    made = [
        offline_tap(
            DEMO_BANDS[name],
            reader=reader,
            ts=minute + i * 1000,
            granted=granted,
            direction=OUT if reader == "gate-2" else IN,
        )
        for i, (name, reader, granted) in enumerate(taps)
    ]
    by_reader: dict[str, list[Tap]] = {}
    for tap in made:
        by_reader.setdefault(tap.reader, []).append(tap)
    uploads: list[list[Tap]] = []
    for reader_taps in by_reader.values():
        at = 0
        for size in sizes * len(reader_taps):
            if at >= len(reader_taps):
                break
            uploads.append(reader_taps[at : at + size])
            at += size
    uploads = uploads + uploads[::2]  # some sent twice
    shuffle.shuffle(uploads)  # type: ignore[attr-defined]
    for chunk in uploads:
        assert upload(pair, *chunk).granted
    recorded = {t.mid: t for t in store.recent_taps(10_000) if t.offline}
    assert store.count_taps() - start == len(made)
    assert set(recorded) >= {t.mid for t in made}
    for tap in made:
        record = recorded[tap.mid]
        assert record.granted == tap.local_granted
        assert record.exception is None or record.granted
