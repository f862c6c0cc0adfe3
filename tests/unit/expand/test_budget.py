"""scheduler.expand.budget: a preview or a tick's expansion stops when its time budget is spent, having
produced every occurrence before the point it stopped at, and goes on from there when asked again."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from scheduler.expand import Budget, ScheduleTooCostly, preview, preview_within_budget
from scheduler.expand.icalendar import parse_block
from scheduler.expand.recurrence import RecurrenceSchedule, compile_recurrence
from tests.unit.expand.support import iso, utc

NOW = utc(2026, 11, 27, 12)
UTC_ZONE = ZoneInfo("UTC")
ALL_BUT_0 = ",".join(str(n) for n in range(1, 60))
# One occurrence an hour (minute 0 second 0), found among every second of the hour.
HOURLY_THE_HARD_WAY = (
    "DTSTART:20260101T000000Z\nRRULE:FREQ=SECONDLY\n"
    f"EXRULE:FREQ=SECONDLY;BYSECOND={ALL_BUT_0}\nEXRULE:FREQ=SECONDLY;BYMINUTE={ALL_BUT_0}"
)


def fresh(expr: str) -> RecurrenceSchedule:
    """A schedule object of its own (parse_schedule shares one per expression, with its memos)."""
    return compile_recurrence(parse_block(expr), UTC_ZONE, None, None)


def test_the_reported_secondly_rule_previews_as_its_daily_equivalent() -> None:
    """1,000 occurrences of FREQ=SECONDLY;BYSECOND=0;BYMINUTE=0;BYHOUR=3 took ~78 s: dateutil walked
    every second of every day. They are the DAILY rule's, complete."""
    costly = preview("rrule", "FREQ=SECONDLY;BYSECOND=0;BYMINUTE=0;BYHOUR=3", "UTC", count=1000, now=NOW)
    daily = preview("rrule", "FREQ=DAILY;BYHOUR=3;BYMINUTE=0;BYSECOND=0", "UTC", count=1000, now=NOW)
    assert costly == daily and len(costly) == 1000


def test_a_spent_budget_keeps_what_was_found_first() -> None:
    """The first instant examined always passes (every call makes progress); the next one finds the
    budget spent: the preview gives the one occurrence found and why it stopped."""
    result = preview_within_budget("rrule", HOURLY_THE_HARD_WAY, "UTC", count=50, now=NOW, budget_s=1e-9)
    assert iso(result.occurrences) == ["2026-11-27T12:00:00+00:00"]  # NOW is on the hour
    assert result.cut_short is not None and result.cut_short.code == "SCHEDULE_TOO_COSTLY"
    assert result.cut_short.details["found"] == 1 and result.cut_short.details["count"] == 50


def test_what_a_cut_short_preview_gives_is_the_start_of_the_whole_answer() -> None:
    whole = preview(
        "rrule", HOURLY_THE_HARD_WAY, "UTC", count=30, now=NOW, after=utc(2026, 1, 1), budget_s=60
    )
    part = preview_within_budget(
        "rrule", HOURLY_THE_HARD_WAY, "UTC", count=30, now=NOW, after=utc(2026, 1, 1), budget_s=0.01
    )
    assert part.cut_short is not None
    assert 1 <= len(part.occurrences) < 30
    assert part.occurrences == whole[: len(part.occurrences)]
    assert iso(whole[:2]) == ["2026-01-01T00:00:00+00:00", "2026-01-01T01:00:00+00:00"]


def test_a_preview_that_finds_nothing_in_its_budget_is_refused() -> None:
    with pytest.raises(ScheduleTooCostly) as caught:
        preview_within_budget(
            "rrule", "RRULE:FREQ=MINUTELY\nEXRULE:FREQ=MINUTELY", "UTC", count=3, now=NOW, budget_s=0.05
        )
    assert caught.value.status == 422
    assert caught.value.details["found"] == 0


def test_budgeted_expansion_resumes_where_it_stopped_and_misses_nothing() -> None:
    """What the scheduler does with a costly task: expand a window under a small budget, and when it
    runs out, go on from `resume` with a fresh one. The pieces are exactly the whole window."""
    window = (utc(2026, 1, 1), utc(2026, 1, 2, 6))
    whole = fresh(HOURLY_THE_HARD_WAY).between(*window)
    sched = fresh(HOURLY_THE_HARD_WAY)
    pieces: list[datetime] = []
    start, calls = window[0], 0
    while True:
        calls += 1
        try:
            pieces += sched.between(start, window[1], Budget(0.002))
            break
        except ScheduleTooCostly as e:
            assert e.resume is not None and e.resume > start  # progress on every call
            pieces += e.found
            start = e.resume
    assert calls > 1, "the budget never ran out: the test proves nothing"
    assert pieces == whole and len(whole) == 30


def test_counting_a_long_count_history_is_budgeted_and_resumed() -> None:
    """A COUNT rule from long ago is counted from DTSTART (day filters: no arithmetic shortcut). Under
    a budget the count stops and keeps its place: asked again, it goes on, and the answer is the one an
    unbudgeted expansion gives."""
    expr = "DTSTART:20200101T000000Z\nRRULE:FREQ=MINUTELY;COUNT=100000;BYMONTHDAY=1,2"
    expected = fresh(expr).next_at_or_after(utc(2021, 6, 1))
    sched = fresh(expr)
    stopped = 0
    while True:
        try:
            found = sched.next_at_or_after(utc(2021, 6, 1), Budget(0.002))
            break
        except ScheduleTooCostly as e:
            assert e.resume == utc(2021, 6, 1) and e.found == []
            stopped += 1
            assert stopped < 10_000
    assert stopped > 0, "the budget never ran out: the test proves nothing"
    assert found == expected == utc(2021, 6, 1)  # 2,880 a month: COUNT lasts until late 2022


def test_a_budget_is_positive() -> None:
    with pytest.raises(ValueError):
        Budget(0)
    assert Budget(5).spent() is False
