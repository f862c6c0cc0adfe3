"""scheduler.expand.recur: RECUR values, with what RFC 5545 derives from DTSTART made explicit exactly as
dateutil derives it, and without reading anything dateutil keeps private."""

from __future__ import annotations

import ast
from datetime import datetime
from itertools import islice
from pathlib import Path

import pytest
from dateutil.rrule import DAILY, rrule
from hypothesis import given

import scheduler.expand
from scheduler.expand.recur import parse_recur
from tests.unit.expand.support import FAST, RuleCase, rules

DERIVED = [
    "FREQ=YEARLY",  # DTSTART's month and day
    "FREQ=YEARLY;BYMONTH=3,9",  # DTSTART's day in each
    "FREQ=MONTHLY;INTERVAL=2",  # DTSTART's day of month (skipping months without it)
    "FREQ=WEEKLY;INTERVAL=3;WKST=SU",  # DTSTART's weekday
    "FREQ=DAILY;BYMINUTE=0,30",  # DTSTART's hour and second
    "FREQ=HOURLY;INTERVAL=5",  # DTSTART's minute and second
    "FREQ=WEEKLY;BYDAY=1MO,-1FR",  # an ordinal in a week is ignored
    "FREQ=DAILY;BYDAY=2TU,SA",  # and in a day
    "FREQ=MONTHLY;BYDAY=1MO,MO,-1SU",  # a month's first Monday and every Monday
    "FREQ=MONTHLY;BYDAY=MO,MO;BYHOUR=8,8,9",  # repeated values count once
    "FREQ=YEARLY;BYEASTER=-2,0",  # Good Friday and Easter Sunday (a dateutil extension)
    "FREQ=YEARLY;BYWEEKNO=1,53;BYDAY=MO;WKST=SU",
    "FREQ=HOURLY;INTERVAL=2;BYHOUR=3,4,8",  # 3 is never reached from an even hour: dateutil drops it
    "FREQ=MINUTELY;INTERVAL=15;BYMINUTE=0,7,30;BYHOUR=9",
    "FREQ=SECONDLY;INTERVAL=7;BYSECOND=0,1,14",
]


@pytest.mark.parametrize("dtstart", [datetime(2016, 2, 29, 10, 30), datetime(2026, 1, 31, 0, 0, 0)])
@pytest.mark.parametrize("value", DERIVED)
def test_explicit_parts_mean_what_dateutil_derives_from_dtstart(value: str, dtstart: datetime) -> None:
    """A rule handed to dateutil with every part explicit yields what dateutil yields deriving the
    missing parts from DTSTART itself (from a leap day and from a 31st, where derivation matters)."""
    case = RuleCase(value, dtstart)
    ours = parse_recur(value).at(dtstart, None).rrule()
    assert list(islice(ours, 40)) == list(islice(case.reference(), 40))


# Sub-daily rules with INTERVAL=1 and a time filter are iterated as the DAILY rule they equal.
AS_DAILY = [  # (rule, occurrences compared: dateutil's own reading of the sparse ones is slow)
    ("FREQ=SECONDLY;BYHOUR=3;BYMINUTE=0;BYSECOND=0", 40),
    ("FREQ=SECONDLY;BYHOUR=3;BYMINUTE=0;BYSECOND=0;BYMONTH=2,3;BYMONTHDAY=1", 2),
    ("FREQ=SECONDLY;BYMINUTE=59;BYSECOND=58,59;BYDAY=MO;BYMONTHDAY=13", 50),  # each hour of such days
    ("FREQ=SECONDLY;BYHOUR=23;BYSECOND=30;BYWEEKNO=1;WKST=SU", 20),
    ("FREQ=SECONDLY;BYHOUR=9;COUNT=70", 80),  # every second of 09:00-09:59, COUNT across days
    ("FREQ=MINUTELY;BYHOUR=3;BYMONTH=2;BYMONTHDAY=-1", 80),
    ("FREQ=MINUTELY;BYMINUTE=0,30;BYYEARDAY=1,-1;UNTIL=20300101T000000", 80),
    ("FREQ=HOURLY;BYHOUR=0,12;BYDAY=SA;BYEASTER=-1", 3),
]


@pytest.mark.parametrize("dtstart", [datetime(2016, 2, 29, 10, 30, 15), datetime(2026, 1, 31, 0, 0, 0)])
@pytest.mark.parametrize(("value", "n"), AS_DAILY)
def test_sub_daily_rule_with_time_filters_is_its_daily_equivalent(
    value: str, n: int, dtstart: datetime
) -> None:
    """A SECONDLY/MINUTELY/HOURLY rule narrowed by BYHOUR/BYMINUTE/BYSECOND yields exactly what dateutil
    yields for it (DTSTART's own day, its time of day, COUNT and UNTIL included), iterated as DAILY
    (dateutil would walk every second or minute in between: ~20 s to find 03:00:00 on 29 February)."""
    case = RuleCase(value, dtstart)
    recur = parse_recur(value).at(dtstart, None)
    assert recur.freq == DAILY
    assert list(islice(recur.rrule(), n)) == list(islice(case.reference(), n))


@pytest.mark.parametrize(
    "value",
    ["FREQ=SECONDLY;INTERVAL=2;BYHOUR=3", "FREQ=MINUTELY;BYSETPOS=1;BYHOUR=3", "FREQ=SECONDLY;BYHOUR=1,2"],
)
def test_sub_daily_rule_kept_when_not_a_daily_rule_or_too_dense(value: str) -> None:
    assert parse_recur(value).at(datetime(2026, 1, 1), None).freq != DAILY


@FAST
@given(rule=rules())
def test_random_rules_mean_what_dateutil_derives_from_dtstart(rule: RuleCase) -> None:
    ours = parse_recur(rule.value).at(rule.dtstart, None).rrule()
    assert list(islice(ours, 30)) == list(islice(rule.reference(), 30))


def test_package_reads_no_private_dateutil_attribute() -> None:
    """The package reads none of the attributes dateutil keeps private on an rrule (`_dtstart`,
    `_byweekday`, ...), so an upgrade cannot change them under it; a read that creeps back in is
    named here with its file and line."""
    private = {name for name in vars(rrule(DAILY, dtstart=datetime(2026, 1, 1))) if name.startswith("_")}
    assert len(private) > 10, "dateutil's rrule no longer keeps its parts as attributes: update this test"
    reads = []
    for path in sorted(Path(scheduler.expand.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in private:
                reads.append(f"{path.name}:{node.lineno} reads .{node.attr}")
    assert reads == []
