"""What the scheduler.expand tests share: fixed instants, zones, and random RRULEs with their plain
dateutil reference (`rrulestr` iterated from DTSTART, nothing of ours in between)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import (
    DAILY,
    HOURLY,
    MINUTELY,
    MONTHLY,
    SECONDLY,
    WEEKLY,
    YEARLY,
    rrule,
    rruleset,
    rrulestr,
)
from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st

from scheduler.expand import Schedule, parse_schedule
from scheduler.expand.feasibility import check_feasible
from scheduler.expand.rebase import RebasingRule
from scheduler.expand.recur import parse_recur
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


def sched(kind: str, expr: str, tz: str = "UTC", now: datetime = NOW) -> Schedule:
    s = parse_schedule(kind, expr, tz, now=now)
    assert s is not None
    return s


SET_BLOCK = """DTSTART;TZID=Europe/Chisinau:20260401T080000
RRULE:FREQ=DAILY;COUNT=5
EXDATE;TZID=Europe/Chisinau:20260402T080000,20260403T080000
EXDATE;VALUE=DATE:20260405
RDATE;TZID=America/New_York:20260410T090000
RDATE:20260411T060000Z
RDATE;VALUE=DATE:20260412"""


# ------------------------------------------------------------------------------- random RRULEs

FREQ_NAMES = {
    YEARLY: "YEARLY",
    MONTHLY: "MONTHLY",
    WEEKLY: "WEEKLY",
    DAILY: "DAILY",
    HOURLY: "HOURLY",
    MINUTELY: "MINUTELY",
    SECONDLY: "SECONDLY",
}
DAY_CODES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
# roughly one period of each frequency, and how many periods back from DTSTART the tests may look
UNIT = {
    YEARLY: timedelta(days=365),
    MONTHLY: timedelta(days=30),
    WEEKLY: timedelta(days=7),
    DAILY: timedelta(days=1),
    HOURLY: timedelta(hours=1),
    MINUTELY: timedelta(minutes=1),
    SECONDLY: timedelta(seconds=1),
}
BACK = {YEARLY: 120, MONTHLY: 600, WEEKLY: 1500, DAILY: 2000, HOURLY: 5000, MINUTELY: 5000, SECONDLY: 5000}


@dataclass(frozen=True)
class RuleCase:
    """An RRULE value at a DTSTART (wall time): Ordo's compiled rule and dateutil's own reading."""

    value: str  # FREQ=...;...
    dtstart: datetime

    @property
    def freq(self) -> int:
        return parse_recur(self.value).freq

    @property
    def count(self) -> int | None:
        return parse_recur(self.value).count

    def point(self, periods: int, frac: float) -> datetime:
        """A wall time about `periods + frac` periods of the rule after DTSTART (at most BACK periods)."""
        return self.dtstart + UNIT[self.freq] * (min(periods, BACK[self.freq]) + frac)

    def with_count(self, count: int) -> RuleCase:
        parts = [p for p in self.value.split(";") if not p.startswith("COUNT=")]
        return RuleCase(";".join([*parts, f"COUNT={count}"]), self.dtstart)

    def reference(self) -> rrule | rruleset:
        """dateutil parsing the value and iterating from DTSTART: the meaning Ordo must keep."""
        return rrulestr(self.value, dtstart=self.dtstart)

    def compiled(self) -> RebasingRule:
        """Ordo's rule (InvalidSchedule if refused as infeasible, ValueError if dateutil refuses it)."""
        recur = parse_recur(self.value).at(self.dtstart, None)
        rule = RebasingRule(recur, None)
        check_feasible(recur)
        return rule


def _small(values: st.SearchStrategy[int]) -> st.SearchStrategy[tuple[int, ...] | None]:
    return st.one_of(st.none(), st.lists(values, min_size=1, max_size=3, unique=True).map(tuple))


def _case(freq: int, dtstart: datetime, parts: dict[str, object]) -> RuleCase:
    """The case, if Ordo accepts it (feasible by construction is the aim: no 30 February, so the plain
    dateutil reference terminates)."""
    text = [f"FREQ={FREQ_NAMES[freq]}"]
    for name, value in parts.items():
        if value is not None:
            text.append(f"{name}={','.join(map(str, value)) if isinstance(value, tuple) else value}")
    case = RuleCase(";".join(text), dtstart.replace(microsecond=0))
    try:
        case.compiled()
    except (ValueError, InvalidSchedule):
        assume(False)
    return case


@st.composite
def rules(draw: st.DrawFn) -> RuleCase:
    freq = draw(st.sampled_from([YEARLY, MONTHLY, WEEKLY, DAILY, HOURLY, MINUTELY, SECONDLY]))
    parts: dict[str, object] = {
        "INTERVAL": draw(st.integers(1, 4 if freq >= HOURLY else 5)),
        "WKST": DAY_CODES[draw(st.integers(0, 6))],
    }
    # dateutil steps SECONDLY rules one second at a time through filtered hours and days: keep them
    # unfiltered there, or the plain reference alone takes seconds
    day = (
        "none"
        if freq == SECONDLY
        else draw(st.sampled_from(["none", "monthday", "weekday", "nweekday", "yearday", "weekno"]))
    )
    if day == "monthday":
        parts["BYMONTHDAY"] = draw(_small(st.one_of(st.integers(1, 28), st.integers(-28, -1))))
    elif day == "weekday" or (day == "nweekday" and freq not in (MONTHLY, YEARLY)):
        days = draw(_small(st.integers(0, 6)))
        parts["BYDAY"] = days and tuple(DAY_CODES[d] for d in days)
    elif day == "nweekday":
        nth = draw(
            st.lists(
                st.tuples(st.integers(0, 6), st.sampled_from([1, 2, 3, 4, -1, -2])),
                min_size=1,
                max_size=2,
                unique=True,
            )
        )
        parts["BYDAY"] = tuple(f"{n:+d}{DAY_CODES[d]}" for d, n in nth)
    elif day == "yearday" and freq != WEEKLY:
        parts["BYYEARDAY"] = draw(_small(st.one_of(st.integers(1, 365), st.integers(-365, -1))))
    elif day == "weekno" and freq == YEARLY:
        parts["BYWEEKNO"] = draw(_small(st.integers(1, 52)))
    if day in ("none", "monthday", "weekday", "nweekday") and freq != SECONDLY:
        parts["BYMONTH"] = draw(_small(st.integers(1, 12)))
    if freq in (HOURLY, MINUTELY, SECONDLY) or draw(st.booleans()):
        parts["BYHOUR"] = draw(_small(st.integers(0, 23))) if freq != SECONDLY else None
        parts["BYMINUTE"] = (
            draw(_small(st.integers(0, 59))) if freq != HOURLY or draw(st.booleans()) else None
        )
        parts["BYSECOND"] = draw(_small(st.integers(0, 59))) if freq == SECONDLY else None
    if freq in (YEARLY, MONTHLY, WEEKLY) and draw(st.integers(0, 2)):  # BYSETPOS needs whole periods
        parts["BYSETPOS"] = draw(st.sampled_from([(1,), (2,), (-1,), (1, -1)]))
    if draw(st.integers(0, 4)) == 0:
        parts["COUNT"] = draw(st.integers(1, 400))
    dtstart = draw(st.datetimes(min_value=datetime(2015, 1, 1), max_value=datetime(2026, 1, 1)))
    return _case(freq, dtstart, parts)


@st.composite
def count_rules(draw: st.DrawFn) -> RuleCase:
    """Rules whose periods are alike (COUNT is then carried arithmetically) and some that are not."""
    freq = draw(st.sampled_from([WEEKLY, DAILY, HOURLY, MINUTELY, SECONDLY, MONTHLY]))
    parts: dict[str, object] = {
        "INTERVAL": draw(st.integers(1, 3)),
        "WKST": DAY_CODES[draw(st.integers(0, 6))],
    }
    if freq == WEEKLY or (freq == DAILY and draw(st.booleans())):
        days = draw(st.lists(st.integers(0, 6), min_size=1, max_size=3, unique=True))
        parts["BYDAY"] = tuple(DAY_CODES[d] for d in days)
    for name, values, fine in (
        ("BYHOUR", st.integers(0, 23), HOURLY),
        ("BYMINUTE", st.integers(0, 59), MINUTELY),
        ("BYSECOND", st.integers(0, 59), SECONDLY),
    ):
        if freq < fine or (draw(st.integers(0, 3)) == 0 and not (freq == SECONDLY and name == "BYHOUR")):
            # a filter on the stepped unit makes periods unalike (not BYHOUR on SECONDLY: see rules())
            parts[name] = draw(_small(values))
    dtstart = draw(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2026, 1, 1)))
    return _case(freq, dtstart, parts)
