"""scheduler.expand.recurrence: RFC 5545 recurrence sets, the public cases, DST semantics, UNTIL, COUNT,
RDATE/EXDATE/EXRULE, and the whole expansion against plain dateutil localised."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.expand import preview
from scheduler.expand.recurrence import RecurrenceSchedule
from tests.unit.expand.support import (
    CHI,
    FAST,
    NOW,
    NY,
    SET_BLOCK,
    UNIT,
    UTC,
    RuleCase,
    iso,
    local,
    rules,
    sched,
    utc,
)

# ------------------------------------------------------------------------------ public cases.json


def _load_cases() -> list:
    path = Path(__file__).resolve().parents[2] / "data" / "rrule" / "cases.json"
    return [pytest.param(c, id=c.get("id") or c["name"]) for c in json.loads(path.read_text())]


@pytest.mark.parametrize("case", _load_cases())
def test_public_rrule_case(case: dict) -> None:
    """Every public case: preview from DTSTART on, as RFC 5545 defines the set, matches exactly."""
    m = re.search(r"DTSTART;TZID=([^:]+):(\d{8}T\d{6})", case.get("dtstart") or case["ical"])
    assert m, "cases carry DTSTART;TZID"
    dtstart = datetime.strptime(m.group(2), "%Y%m%dT%H%M%S").replace(tzinfo=ZoneInfo(m.group(1)))
    count = case.get("count", len(case["expected"]))

    got = preview("rrule", case["ical"], case["tzid"], count=count, now=NOW, dtstart=dtstart)

    assert iso(got) == case["expected"][:count]


# ----------------------------------------------------------------------------------- RRULE + DST


def test_rrule_time_in_spring_gap_takes_pre_gap_offset() -> None:
    """Daily 02:30 New York on 2026-03-08 does not exist: it runs at 03:30 EDT, then 02:30 again."""
    block = "DTSTART;TZID=America/New_York:20260306T023000\nRRULE:FREQ=DAILY"
    got = preview("rrule", block, NY, count=4, now=utc(2026, 3, 6))
    assert iso(got) == [
        "2026-03-06T02:30:00-05:00",
        "2026-03-07T02:30:00-05:00",
        "2026-03-08T03:30:00-04:00",
        "2026-03-09T02:30:00-04:00",
    ]


def test_rrule_ambiguous_time_is_first_occurrence_once() -> None:
    """Daily 01:30 New York on 2026-11-01 occurs twice on the clock; the rule runs once, at EDT."""
    block = "DTSTART;TZID=America/New_York:20261031T013000\nRRULE:FREQ=DAILY"
    got = preview("rrule", block, NY, count=3, now=utc(2026, 10, 31))
    assert iso(got) == ["2026-10-31T01:30:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]


@pytest.mark.parametrize("now", [utc(2026, 3, 27, 12), utc(2026, 10, 23, 12)], ids=["spring", "autumn"])
def test_rrule_daily_0800_chisinau_stays_0800_across_transitions(now: datetime) -> None:
    """A bare FREQ=DAILY;BYHOUR=8 in Europe/Chisinau is 08:00 local on both sides of each transition."""
    got = preview("rrule", "FREQ=DAILY;BYHOUR=8", CHI, count=6, now=now)
    assert [g.strftime("%H:%M") for g in got] == ["08:00"] * 6
    assert len({g.utcoffset() for g in got}) == 2  # the transition is inside the six days


def test_rrule_hourly_is_wall_clock_across_transitions() -> None:
    """FREQ=HOURLY counts wall-clock hours: the missing 02:00 collapses onto 03:00 EDT (once), and the
    repeated 01:00 runs only at its first occurrence (RFC 5545 wall-clock semantics)."""
    s = sched("rrule", "DTSTART;TZID=America/New_York:20260101T000000\nRRULE:FREQ=HOURLY", NY)
    spring = s.between(local(NY, 2026, 3, 8, 0), local(NY, 2026, 3, 8, 5))
    autumn = s.between(local(NY, 2026, 11, 1, 0), local(NY, 2026, 11, 1, 3))
    assert iso([x.astimezone(ZoneInfo(NY)) for x in spring]) == [
        "2026-03-08T00:00:00-05:00",
        "2026-03-08T01:00:00-05:00",
        "2026-03-08T03:00:00-04:00",
        "2026-03-08T04:00:00-04:00",
    ]
    assert iso([x.astimezone(ZoneInfo(NY)) for x in autumn]) == [
        "2026-11-01T00:00:00-04:00",
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T02:00:00-05:00",
    ]


def test_rrule_gap_shift_keeps_output_sorted() -> None:
    """A 02:30 shifted to 03:30 comes after a 03:00 of the same rule: output stays ascending."""
    block = "DTSTART;TZID=America/New_York:20260307T000000\nRRULE:FREQ=DAILY;BYHOUR=2,3;BYMINUTE=0,30"
    s = sched("rrule", block, NY)
    got = s.between(local(NY, 2026, 3, 8, 0), local(NY, 2026, 3, 8, 6))
    assert iso([x.astimezone(ZoneInfo(NY)) for x in got]) == [
        "2026-03-08T03:00:00-04:00",  # 02:00 and 03:00 are the same instant
        "2026-03-08T03:30:00-04:00",  # 02:30 and 03:30 likewise
    ]
    assert s.next_at_or_after(local(NY, 2026, 3, 8, 3, 10)) == local(NY, 2026, 3, 8, 3, 30)


# --------------------------------------------------------------------------- RRULE set features


def test_rrule_exdate_and_rdate_in_every_form() -> None:
    """EXDATE/RDATE with TZID (also a foreign one), Z, VALUE=DATE and comma lists."""
    got = preview("rrule", SET_BLOCK, CHI, count=10, now=utc(2026, 3, 1))
    assert iso(got) == [
        "2026-04-01T08:00:00+03:00",
        "2026-04-04T08:00:00+03:00",  # 02, 03 excluded by EXDATE; 05 by the date-only EXDATE
        "2026-04-10T16:00:00+03:00",  # 09:00 New York
        "2026-04-11T09:00:00+03:00",
        "2026-04-12T08:00:00+03:00",  # a date-only RDATE takes DTSTART's time of day
    ]


def test_rrule_exrule_and_several_rrules() -> None:
    """Two RRULE lines are a union; EXRULE removes its instants."""
    block = (
        "DTSTART;TZID=UTC:20260406T000000\n"
        "RRULE:FREQ=DAILY;BYHOUR=9\n"
        "RRULE:FREQ=WEEKLY;BYDAY=MO;BYHOUR=9,18\n"
        "EXRULE:FREQ=WEEKLY;BYDAY=SA,SU;BYHOUR=9"
    )
    got = sched("rrule", block).between(utc(2026, 4, 6), utc(2026, 4, 13))
    assert [(g.day, g.hour) for g in got] == [(6, 9), (6, 18), (7, 9), (8, 9), (9, 9), (10, 9)]


def test_rrule_bysetpos_last_weekday_of_month() -> None:
    """BYSETPOS=-1 over Monday..Friday picks the last weekday of each month."""
    block = (
        "DTSTART;TZID=Europe/Chisinau:20260101T090000\nRRULE:FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1"
    )
    got = preview("rrule", block, CHI, count=4, now=utc(2025, 12, 1))
    assert [g.date().isoformat() for g in got] == ["2026-01-30", "2026-02-27", "2026-03-31", "2026-04-30"]


@pytest.mark.parametrize(
    ("until", "n"),
    [
        ("20260403T050000Z", 3),  # inclusive: 08:00+03:00 is 05:00Z
        ("20260403T045959Z", 2),
        ("20260403", 3),  # a date-only UNTIL keeps that whole local day
        ("20260403T080000", 3),  # floating: read in the rule's zone
    ],
)
def test_rrule_until_is_compared_as_an_instant(until: str, n: int) -> None:
    """UNTIL bounds the set inclusively; in UTC it is compared with instants, not wall times."""
    s = sched("rrule", f"DTSTART;TZID=Europe/Chisinau:20260401T080000\nRRULE:FREQ=DAILY;UNTIL={until}", CHI)
    assert len(s.between(utc(2026, 3, 1), utc(2026, 5, 1))) == n
    assert s.next_at_or_after(utc(2026, 4, 4)) is None


def test_rrule_until_at_the_end_of_the_calendar_bounds_nothing() -> None:
    s = sched("rrule", "DTSTART:20260401T080000Z\nRRULE:FREQ=YEARLY;UNTIL=99991231")
    assert s.next_at_or_after(utc(2026, 5, 1)) == utc(2027, 4, 1, 8)


def test_rrule_until_across_fall_back_uses_the_instant() -> None:
    """UNTIL 06:10Z on 2026-11-01 is 01:10 EST: the 01:30 EDT (05:30Z) occurrence is before it."""
    block = "DTSTART;TZID=America/New_York:20261030T013000\nRRULE:FREQ=DAILY;UNTIL=20261101T061000Z"
    got = sched("rrule", block, NY).between(utc(2026, 10, 1), utc(2026, 12, 1))
    assert got[-1] == utc(2026, 11, 1, 5, 30) and len(got) == 3


def test_rrule_count_bounds_the_set_whichever_window_is_asked_first() -> None:
    """COUNT=90 minutely: windows asked forward, past the end, and back again agree."""
    s = sched("rrule", "DTSTART:20260401T000000Z\nRRULE:FREQ=MINUTELY;COUNT=90")
    assert len(s.between(utc(2026, 4, 1, 0, 30), utc(2026, 4, 1, 1))) == 30
    assert len(s.between(utc(2026, 4, 1, 1), utc(2026, 4, 1, 2))) == 30
    assert s.between(utc(2026, 4, 1, 1, 30), utc(2026, 4, 1, 3)) == []
    assert s.next_at_or_after(utc(2026, 4, 1, 1, 29)) == utc(2026, 4, 1, 1, 29)
    assert s.next_at_or_after(utc(2026, 4, 1, 1, 29, 1)) is None
    assert len(s.between(utc(2026, 3, 1), utc(2026, 5, 1))) == 90


def test_rrule_dtstart_tzid_wins_and_sets_display_zone() -> None:
    """DTSTART;TZID=America/New_York expands in New York even for a Chisinau task, shown in New York."""
    block = "DTSTART;TZID=America/New_York:20260301T090000\nRRULE:FREQ=DAILY"
    assert iso(preview("rrule", block, CHI, count=1, now=utc(2026, 3, 9))) == ["2026-03-09T09:00:00-04:00"]


def test_rrule_utc_dtstart_recurs_in_utc() -> None:
    """DTSTART:...Z recurs in UTC; a floating DTSTART is read in the task's zone."""
    assert iso(
        preview("rrule", "DTSTART:20260301T090000Z\nRRULE:FREQ=DAILY", CHI, count=1, now=utc(2026, 4, 1))
    ) == ["2026-04-01T09:00:00+00:00"]
    assert iso(
        preview("rrule", "DTSTART:20260301T090000\nRRULE:FREQ=DAILY", CHI, count=1, now=utc(2026, 4, 1))
    ) == ["2026-04-01T09:00:00+03:00"]


def test_unsynchronised_dtstart_is_not_an_instance() -> None:
    """A bare rule's midnight anchor is not an occurrence of FREQ=DAILY;BYHOUR=8."""
    got = preview("rrule", "FREQ=DAILY;BYHOUR=8", CHI, count=1, now=utc(2026, 4, 1, 0, 0))  # 03:00 local
    assert iso(got) == ["2026-04-01T08:00:00+03:00"]


# ------------------------------------------------------------------------------------ properties

ZONES = ["UTC", NY, CHI, "Australia/Lord_Howe", "America/Sao_Paulo", "Pacific/Apia", "Asia/Kathmandu"]


@FAST
@given(
    rule=rules(),
    tzname=st.sampled_from(ZONES),
    periods=st.one_of(st.integers(-3, 3), st.integers(-3, 3000)),
    frac=st.floats(0, 1),
    span=st.integers(1, 60),
)
def test_between_equals_plain_dateutil_expansion_localised(
    rule: RuleCase, tzname: str, periods: int, frac: float, span: int
) -> None:
    """End to end: Schedule.between equals dateutil iterated from DTSTART, each wall time localised
    with fold=0 through UTC (Python's own reading of an aware wall time), sorted and de-duplicated."""
    tz = ZoneInfo(tzname)

    def instant(wall: datetime) -> datetime:
        return wall.replace(tzinfo=tz).astimezone(UTC)

    s = RecurrenceSchedule(tz, rule.dtstart, [rule.compiled()], [], [], frozenset(), frozenset())
    unit = UNIT[rule.freq]
    start = instant(rule.point(periods, frac))
    end = start + unit * span
    # a wall time whose instant is before `end` is at most the largest nearby UTC offset after it
    offsets = ((end + timedelta(days=k)).astimezone(tz).utcoffset() or timedelta(0) for k in (-2, -1, 0, 1))
    bound = (end + max(timedelta(0), *offsets)).replace(tzinfo=None)
    want = set()
    for w in rule.reference():
        if w > bound + timedelta(hours=1):
            break
        if start <= instant(w) < end:
            want.add(instant(w))
    assert s.between(start, end) == sorted(want)
