"""scheduler.expand: cron / RRULE / once expansion, DST semantics, validation, rebasing."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from dateutil.rrule import (
    DAILY,
    HOURLY,
    MINUTELY,
    MONTHLY,
    SECONDLY,
    WEEKLY,
    YEARLY,
    rrule,
    rrulestr,
    weekdays,
)
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from scheduler import expand
from scheduler.expand import SCHEDULE_KINDS, normalize_expr, parse_schedule, preview, zone
from store.errors import InvalidSchedule

UTC = UTC
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NY, CHI = "America/New_York", "Europe/Chisinau"
FAST = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def iso(values: list[datetime]) -> list[str]:
    return [v.isoformat() for v in values]


def local(tz: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(tz))


def sched(kind: str, expr: str, tz: str = "UTC", now: datetime = NOW) -> expand.Schedule:
    s = parse_schedule(kind, expr, tz, now=now)
    assert s is not None
    return s


# ------------------------------------------------------------------------------ public cases.json


def _load_cases() -> list:
    path = Path(__file__).resolve().parents[1] / "data" / "rrule" / "cases.json"
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


# ------------------------------------------------------------------------------------ cron + DST


@pytest.mark.parametrize(
    ("start", "end"), [(utc(2026, 3, 26), utc(2026, 4, 2)), (utc(2026, 10, 22), utc(2026, 10, 29))]
)
def test_cron_daily_0800_chisinau_stays_0800_across_transitions(start: datetime, end: datetime) -> None:
    """0 8 * * * in Europe/Chisinau fires at 08:00 local every day of a week containing a transition."""
    got = sched("cron", "0 8 * * *", CHI).between(start, end)
    wall = [g.astimezone(ZoneInfo(CHI)) for g in got]
    assert [w.strftime("%H:%M") for w in wall] == ["08:00"] * 7
    assert len({w.utcoffset() for w in wall}) == 2


def _rolling(s: expand.Schedule, start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    out: list[datetime] = []
    t = start.astimezone(UTC)  # aware arithmetic in a zone is wall-clock arithmetic: step in UTC
    while t < end:
        out += s.between(t, t + step)
        t += step
    return out


def test_cron_gap_time_fires_once_even_with_rolling_windows() -> None:
    """30 2 * * * New York on 2026-03-08 fires once at 03:30 EDT even when expanded in 10-minute windows
    (APScheduler on its own skips that day when its search starts after 01:45 EST)."""
    s = sched("cron", "30 2 * * *", NY)
    got = _rolling(s, local(NY, 2026, 3, 8, 0), local(NY, 2026, 3, 9, 0), timedelta(minutes=10))
    assert iso([g.astimezone(ZoneInfo(NY)) for g in got]) == ["2026-03-08T03:30:00-04:00"]
    assert s.next_at_or_after(local(NY, 2026, 3, 8, 3, 5)) == local(NY, 2026, 3, 8, 3, 30)


def test_cron_fixed_time_in_repeated_hour_fires_once() -> None:
    """30 1 * * * New York on 2026-11-01 fires at its first occurrence (EDT) only."""
    got = sched("cron", "30 1 * * *", NY).between(local(NY, 2026, 10, 31, 12), local(NY, 2026, 11, 2, 12))
    assert iso([g.astimezone(ZoneInfo(NY)) for g in got]) == [
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
    ]


def test_cron_every_n_minutes_keeps_running_through_repeated_hour() -> None:
    """*/20 * * * * fires in both passes of the repeated hour (hour field '*', like cronie)."""
    s = sched("cron", "*/20 * * * *", NY)
    got = s.between(utc(2026, 11, 1, 4, 50), utc(2026, 11, 1, 7, 10))
    assert [g.strftime("%H:%M") for g in got] == [
        "05:00",
        "05:20",
        "05:40",
        "06:00",
        "06:20",
        "06:40",
        "07:00",
    ]
    # started inside the first pass, the second pass's 01:00/01:20 EST are not lost
    assert s.between(utc(2026, 11, 1, 5, 50), utc(2026, 11, 1, 6, 30)) == [
        utc(2026, 11, 1, 6),
        utc(2026, 11, 1, 6, 20),
    ]


def test_cron_hourly_is_hourly_in_real_time_across_both_transitions() -> None:
    """0 * * * * fires every real hour through both transitions, never twice at one instant."""
    s = sched("cron", "0 * * * *", NY)
    for start in (utc(2026, 3, 8, 3), utc(2026, 11, 1, 2)):
        got = s.between(start, start + timedelta(hours=8))
        assert got == [start + timedelta(hours=h) for h in range(8)]


def test_cron_every_20_minutes_skips_nonexistent_hour_without_duplicates() -> None:
    """*/20 across the spring gap: 01:40 EST is followed by 03:00 EDT, each instant once."""
    got = sched("cron", "*/20 * * * *", NY).between(utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 7, 30))
    assert iso([g.astimezone(ZoneInfo(NY)) for g in got]) == [
        "2026-03-08T01:40:00-05:00",
        "2026-03-08T03:00:00-04:00",
        "2026-03-08T03:20:00-04:00",
    ]


@pytest.mark.parametrize("line", ["*/7 3-5 * * mon-fri", "15 8,20 1-10 * *", "0 0 * 2 sat", "5 4 last * *"])
def test_cron_matches_apscheduler_away_from_transitions(line: str) -> None:
    """On ordinary days the expansion is exactly APScheduler's own, in the zone."""
    tz = ZoneInfo(CHI)
    start, end = local(CHI, 2026, 4, 1), local(CHI, 2026, 9, 30)
    trigger = CronTrigger.from_crontab(line, timezone=tz)
    expected, t = [], start
    while (t := trigger.get_next_fire_time(None, t)) is not None and t < end:
        expected.append(t.astimezone(UTC))
        t = t + timedelta(seconds=1)
    assert sched("cron", line, CHI).between(start, end) == expected


@pytest.mark.parametrize(
    ("line", "days"),
    [
        ("0 8 * * 1-5", [1, 2, 3, 6, 7, 8, 9, 10]),  # crontab 1-5 = Monday..Friday
        ("0 8 * * 0", [5]),  # 0 = Sunday
        ("0 8 * * 7", [5]),  # 7 = Sunday too
        ("0 8 * * SUN,sat", [4, 5]),
        ("0 8 * * */3", [1, 4, 5, 8]),  # 0,3,6 = Sun, Wed, Sat
        ("0 8 3 * 5", [3, 10]),  # day 3 OR Friday (both restricted)
        ("0 8 */2 * 5", [3]),  # a '*' day field: odd days AND Friday
    ],
)
def test_cron_weekdays_follow_crontab(line: str, days: list[int]) -> None:
    """Weekday numbers are crontab's (0/7 = Sunday) and restricted day+weekday means either."""
    got = sched("cron", line).between(utc(2026, 4, 1), utc(2026, 4, 11))  # 2026-04-01 is a Wednesday
    assert [g.day for g in got] == days


def test_cron_macros_and_normalisation() -> None:
    """@daily is 0 0 * * *; lines are stored whitespace-normalised."""
    assert sched("cron", "@daily").between(utc(2026, 4, 1), utc(2026, 4, 3)) == [
        utc(2026, 4, 1),
        utc(2026, 4, 2),
    ]
    assert normalize_expr("cron", "  0   8 *\t* 1-5 ", CHI, now=NOW) == "0 8 * * 1-5"
    assert normalize_expr("cron", "@Daily", CHI, now=NOW) == "@daily"


# --------------------------------------------------------------------------- RRULE set features

SET_BLOCK = """DTSTART;TZID=Europe/Chisinau:20260401T080000
RRULE:FREQ=DAILY;COUNT=5
EXDATE;TZID=Europe/Chisinau:20260402T080000,20260403T080000
EXDATE;VALUE=DATE:20260405
RDATE;TZID=America/New_York:20260410T090000
RDATE:20260411T060000Z
RDATE;VALUE=DATE:20260412"""


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


def test_rdate_with_tzid_is_accepted_where_dateutil_refuses_it() -> None:
    """RDATE;TZID=... is what users write; dateutil's rrulestr cannot read it, Ordo can."""
    block = "DTSTART;TZID=Europe/Chisinau:20260401T080000\nRDATE;TZID=Europe/Chisinau:20260402T093000"
    with pytest.raises(Exception):  # noqa: B017 (documents the dateutil limitation)
        list(rrulestr(block))
    assert iso(preview("rrule", block, CHI, count=5, now=utc(2026, 3, 1))) == [
        "2026-04-01T08:00:00+03:00",  # without an RRULE, DTSTART is the first instance
        "2026-04-02T09:30:00+03:00",
    ]


def test_rrule_block_tolerates_crlf_and_folded_lines() -> None:
    """CRLF line ends and RFC 5545 folding (a continuation starting with a blank) are unfolded."""
    block = "DTSTART;TZID=Europe/Chisinau:20260401T000000\r\nRRULE:FREQ=DAILY;\r\n BYHOUR=8,20;COUNT=3\r\n"
    assert iso(preview("rrule", block, CHI, count=5, now=utc(2026, 3, 1))) == [
        "2026-04-01T08:00:00+03:00",
        "2026-04-01T20:00:00+03:00",
        "2026-04-02T08:00:00+03:00",
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


# ------------------------------------------------------------------------------------------ once


def test_once_with_offset_and_naive() -> None:
    """once takes ISO 8601 with offset, or a naive time read in the task's zone (fold=0)."""
    s = sched("once", "2026-04-01T08:00:00+03:00", "UTC")
    assert s.between(utc(2026, 4, 1), utc(2026, 4, 2)) == [utc(2026, 4, 1, 5)]
    assert s.next_at_or_after(utc(2026, 4, 1, 5)) == utc(2026, 4, 1, 5)
    assert s.next_at_or_after(utc(2026, 4, 1, 5, 0, 1)) is None
    assert sched("once", "2026-03-08T02:30", NY).next_at_or_after(NOW) == local(NY, 2026, 3, 8, 3, 30)
    assert normalize_expr("once", " 2026-04-01T08:00 ", CHI, now=NOW) == "2026-04-01T08:00:00+03:00"
    assert normalize_expr("once", "2026-04-01T05:00:00Z", CHI, now=NOW) == "2026-04-01T05:00:00+00:00"


def test_once_in_the_past_is_refused_when_stored_but_parses_as_exhausted() -> None:
    """normalize_expr refuses a past once; an already stored one simply never fires again."""
    with pytest.raises(InvalidSchedule) as err:
        normalize_expr("once", "2020-01-01T00:00:00+00:00", "UTC", now=NOW)
    assert err.value.message.startswith("once at 2020-01-01T00:00:00+00:00 is in the past")
    assert err.value.details["field"] == "schedule_expr"
    assert sched("once", "2020-01-01T00:00:00+00:00").next_at_or_after(NOW) is None


# ---------------------------------------------------------------------------------- bad input

BAD = [
    (
        "cron",
        "0 8 * * * *",
        CHI,
        "cron line must have 5 fields (minute hour day month weekday), got 6",
        "schedule_expr",
    ),
    ("cron", "61 8 * * *", CHI, "minute field '61'", "schedule_expr"),
    ("cron", "0 8 * 13 *", CHI, "month field '13'", "schedule_expr"),
    ("cron", "0 8 * * 8", CHI, "weekday field '8'", "schedule_expr"),
    ("cron", "0 8 31 2 *", CHI, "never fires", "schedule_expr"),
    ("cron", "", CHI, "cron line is empty", "schedule_expr"),
    ("cron", "@reboot", CHI, "unknown macro", "schedule_expr"),
    ("cron", "0 8 * * *", "Europe/Chisinau2", "unknown time zone 'Europe/Chisinau2'", "timezone"),
    (
        "rrule",
        "FREQ=FORTNIGHTLY",
        CHI,
        "invalid RRULE: FREQ=FORTNIGHTLY is not a frequency; use SECONDLY",
        "schedule_expr",
    ),
    ("rrule", "BYHOUR=8", CHI, "FREQ is required", "schedule_expr"),
    ("rrule", "FREQ=DAILY;BYHOUR=25", CHI, "BYHOUR=25: 25 is out of range (0..23)", "schedule_expr"),
    ("rrule", "FREQ=DAILY;BYDAYS=MO", CHI, "BYDAYS is not an RRULE part", "schedule_expr"),
    ("rrule", "FREQ=WEEKLY;BYDAY=XX", CHI, "BYDAY 'XX' is not a weekday", "schedule_expr"),
    ("rrule", "FREQ=DAILY;INTERVAL=0", CHI, "INTERVAL must be 1 or more", "schedule_expr"),
    (
        "rrule",
        "FREQ=DAILY;COUNT=3;UNTIL=20270101T000000Z",
        CHI,
        "COUNT and UNTIL cannot both be given",
        "schedule_expr",
    ),
    ("rrule", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", CHI, "never produces an occurrence", "schedule_expr"),
    ("rrule", "FREQ=DAILY;BYMONTH=4;BYMONTHDAY=31", CHI, "never produces an occurrence", "schedule_expr"),
    ("rrule", "FREQ=MONTHLY;BYDAY=MO;BYSETPOS=6", CHI, "never produces an occurrence", "schedule_expr"),
    ("rrule", "FREQ=MINUTELY;INTERVAL=1440;BYHOUR=5", CHI, "never produces an occurrence", "schedule_expr"),
    (
        "rrule",
        "FREQ=DAILY;INTERVAL=7;BYDAY=TU",
        CHI,
        "never produces an occurrence",
        "schedule_expr",
    ),  # anchored on a Sunday
    ("rrule", "FREQ=HOURLY;INTERVAL=2;BYHOUR=3", CHI, "invalid RRULE", "schedule_expr"),
    (
        "rrule",
        "FREQ=MONTHLY;INTERVAL=6;BYMONTH=4",
        CHI,
        "never reaches its BYMONTH",
        "schedule_expr",
    ),  # from March
    (
        "rrule",
        "DTSTART:20260630T000000\nRRULE:FREQ=MONTHLY;INTERVAL=4;BYMONTH=1,2,3",
        CHI,
        "30 February",
        "schedule_expr",
    ),
    ("rrule", "", CHI, "the rule is empty", "schedule_expr"),
    ("rrule", "DTSTART:00010101T000000\nRRULE:FREQ=DAILY", CHI, "outside the years", "schedule_expr"),
    ("rrule", "DURATION:PT1H", CHI, "is not one of DTSTART, RRULE, EXRULE, RDATE, EXDATE", "schedule_expr"),
    (
        "rrule",
        "DTSTART:20261301T000000\nRRULE:FREQ=DAILY",
        CHI,
        "DTSTART value '20261301T000000'",
        "schedule_expr",
    ),
    (
        "rrule",
        "DTSTART;TZID=Mars/Olympus:20260101T000000\nRRULE:FREQ=DAILY",
        CHI,
        "unknown time zone 'Mars/Olympus' in DTSTART;TZID",
        "schedule_expr",
    ),
    (
        "rrule",
        "RDATE;VALUE=PERIOD:20260101T000000Z/PT1H",
        CHI,
        "VALUE=PERIOD is not supported",
        "schedule_expr",
    ),
    ("rrule", "FREQ=DAILY", "", "a time zone is required", "timezone"),
    ("once", "tomorrow at 8", CHI, "invalid once timestamp 'tomorrow at 8'", "schedule_expr"),
    ("event", "orders created!", CHI, "invalid event topic 'orders created!'", "schedule_expr"),
    ("event", "", CHI, "invalid event topic ''", "schedule_expr"),
    ("event", "-orders", CHI, "invalid event topic", "schedule_expr"),
    ("manual", "0 8 * * *", CHI, "a manual schedule takes no expression", "schedule_expr"),
    ("weekly", "x", CHI, "unknown schedule kind 'weekly'", "schedule_kind"),
]


@pytest.mark.parametrize(
    ("kind", "expr", "tz", "message", "field"), BAD, ids=[f"{b[0]}:{b[1]!r}:{b[2]}" for b in BAD]
)
def test_bad_schedule_is_refused_with_a_helpful_message(
    kind: str, expr: str, tz: str, message: str, field: str
) -> None:
    """Each kind of bad input raises InvalidSchedule naming the problem and the field."""
    for call in (parse_schedule, normalize_expr):
        with pytest.raises(InvalidSchedule) as err:
            call(kind, expr, tz, now=NOW)
        assert message in err.value.message
        assert err.value.details["field"] == field
        assert err.value.code == "INVALID_SCHEDULE"


def test_zone_accepts_iana_names_and_refuses_others() -> None:
    assert zone("Europe/Chisinau").key == "Europe/Chisinau"
    for bad in ("Europe/Chisinau2", "../etc/passwd", "Europe", "+03:00"):
        with pytest.raises(InvalidSchedule, match="unknown time zone"):
            zone(bad)


def test_event_and_manual_compile_to_nothing() -> None:
    assert set(SCHEDULE_KINDS) == {"cron", "rrule", "once", "event", "manual"}
    assert parse_schedule("event", "orders.created:v1/eu-west", CHI, now=NOW) is None
    assert parse_schedule("manual", "", CHI, now=NOW) is None
    assert normalize_expr("event", "orders.created", CHI, now=NOW) == "orders.created"
    assert preview("event", "orders.created", CHI, count=3, now=NOW) == []


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_schedule("cron", "0 8 * * *", CHI, now=datetime(2026, 1, 1))


# ------------------------------------------------------------------------------ normalize_expr


def test_bare_rrule_is_stored_with_local_midnight_dtstart() -> None:
    """The stored form anchors a bare rule at local midnight of now's day (the local day, not UTC's)."""
    late = utc(2026, 2, 28, 23, 30)  # already 2026-03-01 in Chisinau
    stored = normalize_expr("rrule", "RRULE:FREQ=DAILY;INTERVAL=2;BYHOUR=8", CHI, now=late)
    assert stored == "DTSTART;TZID=Europe/Chisinau:20260301T000000\nRRULE:FREQ=DAILY;INTERVAL=2;BYHOUR=8"
    assert normalize_expr("rrule", stored, CHI, now=utc(2027, 1, 1)) == stored
    bare = preview("rrule", "FREQ=DAILY;INTERVAL=2;BYHOUR=8", CHI, count=5, now=late)
    assert preview("rrule", stored, CHI, count=5, now=late) == bare
    # months later the stored rule keeps its every-other-day phase
    later = preview("rrule", stored, CHI, count=3, now=utc(2026, 6, 1))
    assert all((g.date() - bare[0].date()).days % 2 == 0 for g in later)


def test_block_without_dtstart_gets_one_and_keeps_its_other_lines() -> None:
    stored = normalize_expr(
        "rrule", "FREQ=DAILY;BYHOUR=8\nEXDATE;TZID=Europe/Chisinau:20260302T080000", CHI, now=NOW
    )
    assert stored.splitlines() == [
        "DTSTART;TZID=Europe/Chisinau:20260301T000000",
        "RRULE:FREQ=DAILY;BYHOUR=8",
        "EXDATE;TZID=Europe/Chisinau:20260302T080000",
    ]
    assert [g.day for g in preview("rrule", stored, CHI, count=2, now=NOW)] == [3, 4]


# -------------------------------------------------------------------------------------- preview


def test_preview_from_now_after_and_dtstart() -> None:
    """Neither: from now. after: occurrences >= after. dtstart: sets an rrule's DTSTART, bounds a cron."""
    assert iso(preview("cron", "0 8 * * *", CHI, count=2, now=utc(2026, 3, 28, 12))) == [
        "2026-03-29T08:00:00+03:00",
        "2026-03-30T08:00:00+03:00",
    ]
    assert iso(preview("cron", "0 8 * * *", CHI, count=1, now=NOW, after=local(CHI, 2026, 6, 1, 8))) == [
        "2026-06-01T08:00:00+03:00"
    ]
    assert iso(preview("cron", "0 8 * * *", CHI, count=1, now=NOW, dtstart=local(CHI, 2020, 1, 1))) == [
        "2020-01-01T08:00:00+02:00"
    ]
    weekly = preview(
        "rrule", "FREQ=WEEKLY;INTERVAL=2", CHI, count=2, now=NOW, dtstart=local(CHI, 2026, 1, 6, 7, 15)
    )
    assert iso(weekly) == ["2026-01-06T07:15:00+02:00", "2026-01-20T07:15:00+02:00"]
    after = preview(
        "rrule",
        "FREQ=WEEKLY;INTERVAL=2",
        CHI,
        count=1,
        now=NOW,
        dtstart=local(CHI, 2026, 1, 6, 7, 15),
        after=local(CHI, 2026, 1, 7),
    )
    assert iso(after) == ["2026-01-20T07:15:00+02:00"]


def test_preview_count_must_be_reasonable() -> None:
    for bad in (0, -1, 10_001):
        with pytest.raises(InvalidSchedule) as err:
            preview("cron", "0 8 * * *", CHI, count=bad, now=NOW)
        assert err.value.details["field"] == "count"


# ------------------------------------------------------------------------------- performance shape


def test_long_lived_minutely_rule_is_rebased_near_the_window() -> None:
    """Expansion of a minutely rule with a DTSTART two years back starts within a minute of the window."""
    s = sched("rrule", "DTSTART;TZID=Europe/Chisinau:20240301T000000\nRRULE:FREQ=MINUTELY;INTERVAL=7", CHI)
    rule = s._rules[0]  # type: ignore[attr-defined]
    w_lo = datetime(2026, 3, 1, 14, 0)
    first = next(rule.walls_from(w_lo))
    assert timedelta(0) <= w_lo - first < timedelta(minutes=7)
    got = s.between(NOW, NOW + timedelta(minutes=10))
    assert got and all((g - utc(2024, 2, 29, 22)) % timedelta(minutes=7) == timedelta(0) for g in got)


@pytest.mark.parametrize(
    "value",
    [
        "FREQ=WEEKLY;BYDAY=MO,FR;BYSETPOS=1",
        "FREQ=WEEKLY;BYDAY=MO,TH,FR;BYSETPOS=2",
        "FREQ=MONTHLY;BYDAY=MO,FR;BYSETPOS=1,-1",
        "FREQ=YEARLY;BYDAY=FR;BYSETPOS=2",
    ],
)
def test_rebase_restarts_at_a_whole_period_so_bysetpos_sees_the_full_set(value: str) -> None:
    """BYSETPOS picks from a whole period, except DTSTART's own week, which dateutil truncates at
    DTSTART: the rebase never restarts inside that first period, and restarts others at their first day."""
    rr = rrulestr(value, dtstart=datetime(2026, 1, 7, 9))  # a Wednesday
    compiled = expand._Rule(rr, None)
    for w_lo in (datetime(2026, 1, 7, 12), datetime(2026, 3, 6, 3), datetime(2027, 6, 4, 3)):
        got = list(islice((w for w in compiled.walls_from(w_lo) if w >= w_lo), 10))
        assert got == list(islice((w for w in rr if w >= w_lo), 10))


def test_quiet_window_is_answered_from_memory() -> None:
    """After one expansion, a window inside the known empty stretch needs no iteration."""
    s = sched("rrule", "DTSTART;TZID=Europe/Chisinau:20240301T000000\nRRULE:FREQ=DAILY;BYHOUR=8", CHI)
    assert s.between(NOW, NOW + timedelta(minutes=10)) == []
    s._stream = None  # type: ignore[attr-defined,method-assign]  # any iteration would now fail
    try:
        assert s.between(NOW + timedelta(minutes=10), NOW + timedelta(minutes=20)) == []
        assert s.next_at_or_after(NOW + timedelta(minutes=20)) == local(CHI, 2026, 3, 2, 8)
    finally:
        del s._stream  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------------- properties

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


# rule strategies: feasible by construction (no 30 February), so the plain dateutil reference terminates
_UNIT = {
    YEARLY: timedelta(days=365),
    MONTHLY: timedelta(days=30),
    WEEKLY: timedelta(days=7),
    DAILY: timedelta(days=1),
    HOURLY: timedelta(hours=1),
    MINUTELY: timedelta(minutes=1),
    SECONDLY: timedelta(seconds=1),
}
_BACK = {YEARLY: 120, MONTHLY: 600, WEEKLY: 1500, DAILY: 2000, HOURLY: 5000, MINUTELY: 5000, SECONDLY: 5000}


def _small(values: st.SearchStrategy[int]) -> st.SearchStrategy[tuple[int, ...] | None]:
    return st.one_of(st.none(), st.lists(values, min_size=1, max_size=3, unique=True).map(tuple))


@st.composite
def rules(draw: st.DrawFn) -> tuple[rrule, str]:
    freq = draw(st.sampled_from([YEARLY, MONTHLY, WEEKLY, DAILY, HOURLY, MINUTELY, SECONDLY]))
    interval = draw(st.integers(1, 4 if freq >= HOURLY else 5))
    kw: dict = {"interval": interval, "wkst": draw(st.integers(0, 6))}
    # dateutil steps SECONDLY rules one second at a time through filtered hours and days: keep them
    # unfiltered there, or the plain reference alone takes seconds
    day = (
        "none"
        if freq == SECONDLY
        else draw(st.sampled_from(["none", "monthday", "weekday", "nweekday", "yearday", "weekno"]))
    )
    if day == "monthday":
        kw["bymonthday"] = draw(_small(st.one_of(st.integers(1, 28), st.integers(-28, -1))))
    elif day == "weekday" or (day == "nweekday" and freq not in (MONTHLY, YEARLY)):
        kw["byweekday"] = draw(_small(st.integers(0, 6)))
    elif day == "nweekday":
        kw["byweekday"] = tuple(
            weekdays[d](n)
            for d, n in draw(
                st.lists(
                    st.tuples(st.integers(0, 6), st.sampled_from([1, 2, 3, 4, -1, -2])),
                    min_size=1,
                    max_size=2,
                    unique=True,
                )
            )
        )
    elif day == "yearday" and freq != WEEKLY:
        kw["byyearday"] = draw(_small(st.one_of(st.integers(1, 365), st.integers(-365, -1))))
    elif day == "weekno" and freq == YEARLY:
        kw["byweekno"] = draw(_small(st.integers(1, 52)))
    if day in ("none", "monthday", "weekday", "nweekday") and freq != SECONDLY:
        kw["bymonth"] = draw(_small(st.integers(1, 12)))
    if freq in (HOURLY, MINUTELY, SECONDLY) or draw(st.booleans()):
        kw["byhour"] = draw(_small(st.integers(0, 23))) if freq != SECONDLY else None
        kw["byminute"] = draw(_small(st.integers(0, 59))) if freq != HOURLY or draw(st.booleans()) else None
        kw["bysecond"] = draw(_small(st.integers(0, 59))) if freq == SECONDLY else None
    if freq in (YEARLY, MONTHLY, WEEKLY) and draw(st.integers(0, 2)):  # BYSETPOS needs whole periods
        kw["bysetpos"] = draw(st.sampled_from([1, 2, -1, (1, -1)]))
    if draw(st.integers(0, 4)) == 0:
        kw["count"] = draw(st.integers(1, 400))
    dtstart = draw(st.datetimes(min_value=datetime(2015, 1, 1), max_value=datetime(2026, 1, 1))).replace(
        microsecond=0
    )
    try:
        rr = rrule(freq, dtstart=dtstart, **kw)
        expand._check_feasible(rr)
    except (ValueError, InvalidSchedule):
        assume(False)
    return rr, ""


@FAST
@given(
    rule=rules(),
    periods=st.one_of(st.integers(-3, 3), st.integers(-3, 3000)),
    frac=st.floats(0, 1),
    count_shift=st.one_of(st.none(), st.integers(-3, 12)),
)
def test_rebased_rule_yields_the_same_wall_times_as_dateutil_from_dtstart(
    rule: tuple[rrule, str], periods: int, frac: float, count_shift: int | None
) -> None:
    """The rebase property: from any point, a rule restarted at a period boundary (BYxxx made explicit,
    COUNT carried in a checkpoint, counted arithmetically when every period is alike) yields exactly
    what dateutil yields iterating from DTSTART. `count_shift` puts the COUNT's end near the point."""
    rr = rule[0]
    w_lo = rr._dtstart + _UNIT[rr._freq] * (min(periods, _BACK[rr._freq]) + frac)
    if count_shift is not None and rr._count is None:
        before = sum(1 for _ in expand._takewhile_before(rr, w_lo))
        assume(before + count_shift > 0)
        rr = rr.replace(count=before + count_shift)
    compiled = expand._Rule(rr, None)
    # ask twice (a later point first would be unusual; an earlier one re-uses the checkpoint), then here
    for point in (w_lo - _UNIT[rr._freq] * 3, w_lo):
        got = list(islice((w for w in compiled.walls_from(point) if w >= point), 25))
        want = list(islice((w for w in rr if w >= point), 25))
        assert got == want


@st.composite
def count_rules(draw: st.DrawFn) -> rrule:
    """Rules whose periods are alike (COUNT is then carried arithmetically) and some that are not."""
    freq = draw(st.sampled_from([WEEKLY, DAILY, HOURLY, MINUTELY, SECONDLY, MONTHLY]))
    kw: dict = {"interval": draw(st.integers(1, 3)), "wkst": draw(st.integers(0, 6))}
    if freq == WEEKLY or (freq == DAILY and draw(st.booleans())):
        kw["byweekday"] = tuple(draw(st.lists(st.integers(0, 6), min_size=1, max_size=3, unique=True)))
    for name, values, fine in (
        ("byhour", st.integers(0, 23), HOURLY),
        ("byminute", st.integers(0, 59), MINUTELY),
        ("bysecond", st.integers(0, 59), SECONDLY),
    ):
        if freq < fine or (draw(st.integers(0, 3)) == 0 and not (freq == SECONDLY and name == "byhour")):
            # a filter on the stepped unit makes periods unalike (not BYHOUR on SECONDLY: see rules())
            kw[name] = draw(_small(values))
    dtstart = draw(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2026, 1, 1))).replace(
        microsecond=0
    )
    try:
        rr = rrule(freq, dtstart=dtstart, **kw)
        expand._check_feasible(rr)
    except (ValueError, InvalidSchedule):
        assume(False)
    return rr


@FAST
@given(
    rr=count_rules(),
    periods=st.one_of(st.integers(0, 3), st.integers(0, 2000)),
    frac=st.floats(0, 1),
    shift=st.integers(-2, 8),
)
def test_count_is_carried_exactly_to_any_point(rr: rrule, periods: int, frac: float, shift: int) -> None:
    """A COUNT ending near the point asked about: the checkpointed rule stops exactly where dateutil does."""
    w_lo = rr._dtstart + _UNIT[rr._freq] * (min(periods, _BACK[rr._freq]) + frac)
    before = sum(1 for _ in expand._takewhile_before(rr, w_lo))
    assume(before + shift > 0)
    rr = rr.replace(count=before + shift)
    compiled = expand._Rule(rr, None)
    for point in (w_lo - _UNIT[rr._freq] * 2, w_lo):
        got = list(islice((w for w in compiled.walls_from(point) if w >= point), 12))
        assert got == list(islice((w for w in rr if w >= point), 12))


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
    rule: tuple[rrule, str], tzname: str, periods: int, frac: float, span: int
) -> None:
    """End to end: Schedule.between equals dateutil iterated from DTSTART, each wall time localised
    with fold=0 through UTC, sorted and de-duplicated."""
    rr = rule[0]
    tz = ZoneInfo(tzname)
    s = expand._Recurrence(tz, rr._dtstart, [expand._Rule(rr, None)], [], [], frozenset(), frozenset())
    unit = _UNIT[rr._freq]
    w_start = rr._dtstart + unit * (min(periods, _BACK[rr._freq]) + frac)
    start = expand._instant(tz, w_start)
    end = start + unit * span
    # a wall time whose instant is before `end` is at most the largest nearby UTC offset after it
    bound = end + max(timedelta(0), *(expand._offset_at(tz, end + timedelta(days=k)) for k in (-2, -1, 0, 1)))
    want = set()
    for w in rr:
        if w > bound + timedelta(hours=1):
            break
        i = expand._instant(tz, w)
        if start <= i < end:
            want.add(i)
    got = s.between(start.replace(tzinfo=UTC), end.replace(tzinfo=UTC))
    assert [g.replace(tzinfo=None) for g in got] == sorted(want)
