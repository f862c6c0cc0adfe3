"""scheduler.expand.kinds: the entry points. Bad input of every kind, the stored form, preview."""

from __future__ import annotations

from datetime import datetime

import pytest

from scheduler.expand import PREVIEW_MAX_COUNT, SCHEDULE_KINDS, normalize_expr, parse_schedule, preview
from store.errors import InvalidSchedule
from tests.unit.expand.support import CHI, NOW, iso, local, utc

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
    # (the other rules that never produce an occurrence: test_feasibility.py)
    ("rrule", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", CHI, "never produces an occurrence", "schedule_expr"),
    ("rrule", "FREQ=HOURLY;INTERVAL=2;BYHOUR=3", CHI, "invalid RRULE", "schedule_expr"),
    ("rrule", "", CHI, "the rule is empty", "schedule_expr"),
    ("rrule", "DTSTART:00010101T000000\nRRULE:FREQ=DAILY", CHI, "outside the years", "schedule_expr"),
    # past the end of datetime in UTC: once a 500 from preview and from task creation
    ("once", "9999-12-31T23:59:59-14:00", CHI, "outside the years 1800..9000", "schedule_expr"),
    ("once", "0001-01-01T00:00:00+14:00", CHI, "outside the years 1800..9000", "schedule_expr"),
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
    bad_counts: list[object] = [0, -1, PREVIEW_MAX_COUNT + 1, True, 2.0]
    for bad in bad_counts:
        with pytest.raises(InvalidSchedule) as err:
            preview("cron", "0 8 * * *", CHI, count=bad, now=NOW)  # type: ignore[arg-type]
        assert err.value.details["field"] == "count"


def test_preview_returns_up_to_the_one_limit() -> None:
    """PREVIEW_MAX_COUNT is the limit itself: that many occurrences are returned, one more is refused."""
    got = preview("cron", "* * * * *", "UTC", count=PREVIEW_MAX_COUNT, now=NOW)
    assert len(got) == PREVIEW_MAX_COUNT and got[-1] == NOW + (PREVIEW_MAX_COUNT - 1) * (got[1] - got[0])
