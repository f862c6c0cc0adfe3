"""scheduler.expand.expansion: between / next_at_or_after agree, windows concatenate, memos are exact."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from tests.unit.expand.support import CHI, FAST, NOW, NY, SET_BLOCK, UTC, local, sched, utc


def test_quiet_window_is_answered_from_memory() -> None:
    """After one expansion, a window inside the known empty stretch needs no iteration."""
    s = sched("rrule", "DTSTART;TZID=Europe/Chisinau:20240301T000000\nRRULE:FREQ=DAILY;BYHOUR=8", CHI)
    assert s.between(NOW, NOW + timedelta(minutes=10)) == []
    s.stream = None  # type: ignore[attr-defined]  # any iteration would now fail
    try:
        assert s.between(NOW + timedelta(minutes=10), NOW + timedelta(minutes=20)) == []
        assert s.next_at_or_after(NOW + timedelta(minutes=20)) == local(CHI, 2026, 3, 2, 8)
    finally:
        del s.stream  # type: ignore[attr-defined]


CONSISTENCY = [
    ("cron", "*/20 * * * *", NY),
    ("cron", "30 2 * * *", NY),
    ("cron", "0 8 * * 1-5", CHI),
    ("cron", "15 2 * * *", CHI),
    ("rrule", "DTSTART;TZID=America/New_York:20250101T003000\nRRULE:FREQ=HOURLY;INTERVAL=3", NY),
    ("rrule", "DTSTART;TZID=Europe/Chisinau:20250101T023000\nRRULE:FREQ=DAILY;BYHOUR=2,3", CHI),
    ("rrule", "DTSTART:20260101T000000Z\nRRULE:FREQ=MINUTELY;INTERVAL=37;COUNT=20000", "UTC"),
    ("rrule", SET_BLOCK, CHI),
    (
        "rrule",
        "DTSTART;TZID=Australia/Lord_Howe:20250101T013000\nRRULE:FREQ=MINUTELY;INTERVAL=15;BYHOUR=1,2",
        "Australia/Lord_Howe",
    ),
    ("once", "2026-11-01T01:30", NY),
]
TRANSITIONS = [
    utc(2026, 3, 8, 7),
    utc(2026, 11, 1, 6),
    utc(2026, 3, 29, 0),
    utc(2026, 10, 25, 0),
    utc(2026, 4, 4, 15),
    utc(2026, 10, 3, 15, 30),
]
instants = st.one_of(
    st.datetimes(min_value=datetime(2025, 6, 1), max_value=datetime(2027, 6, 1)).map(
        lambda d: d.replace(tzinfo=UTC)
    ),
    st.tuples(st.sampled_from(TRANSITIONS), st.integers(-8 * 60, 8 * 60)).map(
        lambda p: p[0] + timedelta(minutes=p[1])
    ),
)


@FAST
@given(case=st.sampled_from(CONSISTENCY), t=instants, span=st.integers(1, 3 * 24 * 60), cut=st.floats(0, 1))
def test_between_and_next_at_or_after_agree(
    case: tuple[str, str, str], t: datetime, span: int, cut: float
) -> None:
    """next_at_or_after(t) is the first of between(t, ...); windows split anywhere concatenate;
    results are ascending aware UTC instants in range, and memoised answers equal fresh ones."""
    s = sched(*case[:2], case[2])
    end = t + timedelta(minutes=span)
    mid = t + (end - t) * cut
    fresh = copy.copy(s)
    fresh._memo = None  # type: ignore[attr-defined]
    whole = fresh.between(t, end)
    assert whole == sorted(set(whole)) and all(t <= x < end and x.tzinfo is UTC for x in whole)
    assert s.between(t, mid) + s.between(mid, end) == whole
    nxt = s.next_at_or_after(t)
    if whole:
        assert nxt == whole[0]
    else:
        assert nxt is None or nxt >= end
