"""scheduler.describe: schedules in words, in the zone they are read in."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from scheduler.describe import describe
from scheduler.expand import normalize_expr, preview
from store.errors import InvalidSchedule

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
CHI = "Europe/Chisinau"
RFC_CASES = json.loads((REPO / "tests/data/rrule/cases.json").read_text())

# The RFC 5545 examples of tests/data/rrule/cases.json, with what each must say.
RFC_TEXTS = {
    "rfc-daily-count10": "Every day at 09:00, starting Tue 2 Sep 1997, 10 times (America/New_York)",
    "rfc-weekly-until": "Every Tuesday at 09:00, until Wed 24 Dec 1997 00:00 UTC (America/New_York)",
    "rfc-monthly-1fr-count10": (
        "Every month on the first Friday at 09:00, starting Fri 5 Sep 1997, 10 times (America/New_York)"
    ),
}


@pytest.mark.parametrize(
    ("expr", "text"),
    [
        ("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=5;BYMINUTE=30", "Every weekday at 05:30 (Europe/Chisinau)"),
        ("FREQ=DAILY;BYHOUR=8,12,17;BYMINUTE=0", "Every day at 08:00, 12:00 and 17:00 (Europe/Chisinau)"),
        (
            "FREQ=DAILY;BYDAY=SA,SU;BYHOUR=6;BYMINUTE=0",
            "Every Saturday and Sunday at 06:00 (Europe/Chisinau)",
        ),
        (
            "FREQ=MONTHLY;BYMONTHDAY=-1;BYHOUR=23;BYMINUTE=0",
            "Every month on the last day at 23:00 (Europe/Chisinau)",
        ),
        (
            "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1;BYHOUR=18;BYMINUTE=0",
            "Every month on the last weekday at 18:00 (Europe/Chisinau)",
        ),
        (
            "FREQ=YEARLY;BYMONTH=11;BYDAY=4TH;BYHOUR=9;BYMINUTE=0",
            "Every year on the fourth Thursday in November at 09:00 (Europe/Chisinau)",
        ),
        (
            "FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=25;BYHOUR=7",
            "Every year on 25 December at 07:00 (Europe/Chisinau)",
        ),
        (
            "FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13",
            "Every month on the 13th when it is a Friday at 00:00 (Europe/Chisinau)",
        ),
        (
            "FREQ=MINUTELY;INTERVAL=15;BYHOUR=8,9,10,11,12,13,14,15,16,17;BYDAY=MO,TU,WE,TH,FR",
            "Every 15 minutes on weekdays during hours 08 to 17, starting Fri 27 Nov 2026 00:00 "
            "(Europe/Chisinau)",
        ),
        ("FREQ=HOURLY;BYMINUTE=0", "Every hour on the hour (Europe/Chisinau)"),
        # DTSTART (27 November, a Friday) fills in only what dateutil fills in: no day named at all.
        ("FREQ=YEARLY;BYMONTH=1", "Every year on 27 January at 00:00 (Europe/Chisinau)"),
        ("FREQ=WEEKLY", "Every Friday at 00:00 (Europe/Chisinau)"),
        ("FREQ=WEEKLY;BYMONTHDAY=1,15", "On the 1st and 15th of every month at 00:00 (Europe/Chisinau)"),
        # An ordinal weekday in a weekly rule is the plain weekday, as dateutil reads it.
        ("FREQ=WEEKLY;BYDAY=-1FR;BYHOUR=9", "Every Friday at 09:00 (Europe/Chisinau)"),
        (
            "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO;BYHOUR=6;BYMINUTE=0",
            "Every 2 weeks on Monday at 06:00, starting Fri 27 Nov 2026 (Europe/Chisinau)",
        ),
        (
            "FREQ=DAILY;BYHOUR=6,7,8;BYMINUTE=0,30;BYSETPOS=1",
            "Every day at 06:00, 06:30, 07:00, 07:30, 08:00 and 08:30, only the first of these in each day "
            "(Europe/Chisinau)",
        ),
    ],
)
def test_stored_rrule_reads_as_a_sentence_in_the_task_zone(expr: str, text: str) -> None:
    """A bare rule as stored (anchored at local midnight of the day it was added) reads naturally."""
    stored = normalize_expr("rrule", expr, CHI, now=NOW)
    assert describe("rrule", stored, CHI) == text


@pytest.mark.parametrize("case", RFC_CASES, ids=[c["id"] for c in RFC_CASES])
def test_every_rfc_example_is_described(case: dict[str, str]) -> None:
    """Each RFC 5545 example reads in its DTSTART's zone, with its count or end."""
    text = describe("rrule", case["ical"], "UTC")
    assert text.endswith(f"({case['tzid']})")
    if case["id"] in RFC_TEXTS:
        assert text == RFC_TEXTS[case["id"]]
    if "COUNT=" in case["rrule"]:
        count = case["rrule"].split("COUNT=")[1].split(";")[0]
        assert f", {count} times" in text


def test_dtstart_time_of_day_is_used_when_the_rule_names_none() -> None:
    """FREQ=DAILY without BYHOUR recurs at DTSTART's time, as expansion does."""
    expr = "DTSTART;TZID=America/New_York:20261201T073000\nRRULE:FREQ=DAILY"
    assert describe("rrule", expr, CHI) == "Every day at 07:30 (America/New_York)"
    first = preview("rrule", expr, CHI, count=1, now=NOW)[0]
    assert first.strftime("%H:%M") == "07:30"


def test_exdates_and_rdates_are_mentioned() -> None:
    expr = "\n".join(
        (
            "DTSTART:20261201T090000Z",
            "RRULE:FREQ=DAILY;COUNT=5",
            "EXDATE:20261203T090000Z",
            "RDATE:20261225T090000Z",
        )
    )
    assert describe("rrule", expr, CHI) == (
        "Every day at 09:00, starting Tue 1 Dec 2026, 5 times, and also on Fri 25 Dec 2026 09:00 UTC, "
        "not on Thu 3 Dec 2026 09:00 UTC (UTC)"
    )


def test_dates_without_a_rule_are_listed() -> None:
    expr = "DTSTART;TZID=Europe/Chisinau:20261201T090000\nRDATE;TZID=Europe/Chisinau:20261205T090000"
    assert (
        describe("rrule", expr, "UTC") == "On Tue 1 Dec 2026 09:00 and Sat 5 Dec 2026 09:00 (Europe/Chisinau)"
    )


@pytest.mark.parametrize(
    ("line", "text"),
    [
        ("0 6 * * 1-5", "At 06:00, Monday through Friday (Europe/Chisinau)"),
        ("*/15 * * * *", "Every 15 minutes (Europe/Chisinau)"),
        ("@daily", "At 00:00 (Europe/Chisinau)"),
        ("0 0 * * 0", "At 00:00, only on Sunday (Europe/Chisinau)"),
        ("0 0 * * 7", "At 00:00, only on Sunday (Europe/Chisinau)"),
        # Vixie cron: both day fields restricted means either (as expansion fires it).
        ("0 0 1 * 1", "At 00:00, on day 1 of the month, or on Monday (Europe/Chisinau)"),
    ],
)
def test_cron_lines_are_described_by_cron_descriptor_with_crontab_meanings(line: str, text: str) -> None:
    assert describe("cron", normalize_expr("cron", line, CHI, now=NOW), CHI) == text


def test_once_is_shown_in_the_task_zone() -> None:
    stored = normalize_expr("once", "2026-12-24T06:00:00+00:00", CHI, now=NOW)
    assert describe("once", stored, CHI) == "Once, on Thu 24 Dec 2026 at 08:00 (Europe/Chisinau)"


def test_event_and_manual_say_what_starts_them() -> None:
    assert describe("event", "orders.created", "UTC") == "When an event orders.created is published"
    assert describe("manual", "", "UTC") == "Only when run by hand"


def test_every_example_task_is_described() -> None:
    """The shipped examples read as sentences naming their zone."""
    for path in sorted((REPO / "catalogs/examples").glob("*.*")):
        doc = yaml.safe_load(path.read_text())
        kind, tz = doc["schedule_kind"], doc.get("timezone", "UTC")
        stored = normalize_expr(kind, doc.get("schedule_expr", ""), tz, now=NOW)
        text = describe(kind, stored, tz)
        assert text and (kind in ("event", "manual") or text.endswith(f"({tz})")), (path.name, text)


_PARTS = {
    "FREQ": st.sampled_from(["YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY", "MINUTELY"]),
    "INTERVAL": st.integers(1, 4).map(str),
    "COUNT": st.integers(1, 30).map(str),
    "BYDAY": st.lists(
        st.tuples(
            st.sampled_from(["", "1", "2", "-1"]), st.sampled_from(["MO", "TU", "WE", "TH", "FR", "SA", "SU"])
        ),
        min_size=1,
        max_size=3,
        unique=True,
    ).map(lambda days: ",".join(n + d for n, d in days)),
    "BYMONTHDAY": st.lists(st.sampled_from([1, 2, 15, 28, -1, -2]), min_size=1, max_size=2, unique=True).map(
        lambda v: ",".join(map(str, v))
    ),
    "BYMONTH": st.lists(st.integers(1, 12), min_size=1, max_size=2, unique=True).map(
        lambda v: ",".join(map(str, v))
    ),
    "BYHOUR": st.lists(st.integers(0, 23), min_size=1, max_size=3, unique=True).map(
        lambda v: ",".join(map(str, v))
    ),
    "BYMINUTE": st.lists(st.sampled_from([0, 15, 30, 45]), min_size=1, max_size=2, unique=True).map(
        lambda v: ",".join(map(str, v))
    ),
    "BYSETPOS": st.sampled_from(["1", "-1", "2"]),
}


@settings(max_examples=300, deadline=None, database=None)
@given(data=st.data(), names=st.sets(st.sampled_from([k for k in _PARTS if k != "FREQ"]), max_size=4))
def test_any_rule_expansion_accepts_reads_as_one_sentence_in_its_zone(
    data: st.DataObject, names: set[str]
) -> None:
    """Whatever rule the scheduler accepts, describe() phrases it (never raises) and names the zone."""
    parts = {"FREQ": data.draw(_PARTS["FREQ"]), **{n: data.draw(_PARTS[n]) for n in sorted(names)}}
    expr = ";".join(f"{k}={v}" for k, v in parts.items())
    try:
        stored = normalize_expr("rrule", expr, CHI, now=NOW)
    except InvalidSchedule:
        assume(False)
        return
    text = describe("rrule", stored, CHI)
    assert text.startswith(("Every ", "On the ")) and text.endswith(f"({CHI})"), (expr, text)
    if "COUNT" in parts:
        count = int(parts["COUNT"])
        assert text.count(", once" if count == 1 else f", {count} times") == 1, (expr, text)
