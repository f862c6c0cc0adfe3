"""scheduler.expand.cron: crontab meanings on APScheduler, and cron lines across DST transitions."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger

from scheduler.expand import Schedule, normalize_expr
from tests.unit.expand.support import CHI, NOW, NY, UTC, iso, local, sched, utc


@pytest.mark.parametrize(
    ("start", "end"), [(utc(2026, 3, 26), utc(2026, 4, 2)), (utc(2026, 10, 22), utc(2026, 10, 29))]
)
def test_cron_daily_0800_chisinau_stays_0800_across_transitions(start: datetime, end: datetime) -> None:
    """0 8 * * * in Europe/Chisinau fires at 08:00 local every day of a week containing a transition."""
    got = sched("cron", "0 8 * * *", CHI).between(start, end)
    wall = [g.astimezone(ZoneInfo(CHI)) for g in got]
    assert [w.strftime("%H:%M") for w in wall] == ["08:00"] * 7
    assert len({w.utcoffset() for w in wall}) == 2


def _rolling(s: Schedule, start: datetime, end: datetime, step: timedelta) -> list[datetime]:
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
