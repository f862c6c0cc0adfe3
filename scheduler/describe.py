"""Schedules in words: the `schedule_text` people read next to a task ("Every weekday at 05:30
(Europe/Chisinau)").

Pure, like expansion: a stored `schedule_kind`/`schedule_expr`/`timezone` in, one English sentence
out, with no database, environment or clock. Cron lines are described by `cron-descriptor` (crontab
meanings: 0 or 7 is Sunday, and a line restricting both day fields fires on either, as expansion
reads it). RRULEs are read by expansion's own RFC 5545 parser, so the words describe exactly the
parts the scheduler expands; the phrasing is ours because no well-kept Python library formats
RRULEs. What is not written in the rule comes from DTSTART, as in expansion (a weekly rule without
BYDAY recurs on DTSTART's weekday, a daily one at DTSTART's time of day).

Every text names the zone its times are read in: the task's, or the DTSTART's TZID when the block
has one (it wins for expansion too). A sentence is a description, never a second source of truth:
if a rule holds something this formatter does not phrase, it says so rather than guessing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from cron_descriptor import ExpressionDescriptor, Options
from dateutil.rrule import DAILY, HOURLY, MINUTELY, MONTHLY, SECONDLY, WEEKLY, YEARLY

# Expansion's parser (one reading of RFC 5545 text for the whole product), its reading of what a rule
# takes from DTSTART, and its cron macros.
from scheduler.expand.cron import CRON_MACROS
from scheduler.expand.icalendar import parse_block, parse_date_value
from scheduler.expand.recur import parse_recur

__all__ = ["describe"]

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_UNITS = {SECONDLY: "second", MINUTELY: "minute", HOURLY: "hour", DAILY: "day", WEEKLY: "week"}
_UNITS |= {MONTHLY: "month", YEARLY: "year"}
_ORDINAL_WORDS = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}
_WEEKDAYS = (0, 1, 2, 3, 4)
# Above this many times of day a list stops being readable; the hours and minutes are named instead.
_MAX_TIMES = 6
_MAX_DATES = 3


@lru_cache(maxsize=4096)
def describe(kind: str, expr: str, timezone: str) -> str:
    """One sentence for a stored schedule. The arguments are a task's (already validated)."""
    if kind == "manual":
        return "Only when run by hand"
    if kind == "event":
        return f"When an event {expr} is published"
    if kind == "once":
        at = datetime.fromisoformat(expr)
        zone = ZoneInfo(timezone)
        local = at.astimezone(zone) if at.tzinfo else at
        return f"Once, on {_date(local)} at {_clock(local.time())} ({zone.key})"
    if kind == "cron":
        return f"{_cron(expr)} ({timezone})"
    if kind == "rrule":
        return _recurrence(expr, timezone)
    raise ValueError(f"unknown schedule kind {kind!r}")


def _cron(line: str) -> str:
    options = Options()
    options.use_24hour_time_format = True
    options.locale_code = "en_US"  # not the server's locale: the API speaks English
    options.day_of_week_start_index_zero = True  # crontab: 0 (and 7) is Sunday
    return ExpressionDescriptor(CRON_MACROS.get(line.lower(), line), options).get_description()


# ------------------------------------------------------------------------------------------ rrule


def _recurrence(expr: str, timezone: str) -> str:
    block = parse_block(expr)
    zone, start = timezone, datetime(2000, 1, 1)  # a bare rule is anchored at local midnight
    dates: list[str] = []
    if block.dtstart is not None:
        value = parse_date_value(block.dtstart.value, "DTSTART")
        zone = "UTC" if value.is_utc else (block.dtstart.param("TZID") or timezone).lstrip("/")
        start = value.wall
        if not block.rrules:  # without a rule, DTSTART is the first instance
            dates.append(_date_time(value))
    dates += [_date_time(v) for prop in block.rdates for v in _values(prop.value, "RDATE")]
    text = " and ".join(_rule(value, start) for value in block.rrules)
    if not text:
        text = "On " + _dates(dates)
    elif dates:
        text += ", and also on " + _dates(dates)
    if block.exrules:
        text += ", except " + " or ".join(_lower_first(_rule(v, start)) for v in block.exrules)
    exdates = [_date_time(v) for prop in block.exdates for v in _values(prop.value, "EXDATE")]
    if exdates:
        text += ", not on " + _dates(exdates)
    return f"{text} ({zone})"


def _values(text: str, what: str) -> list[Any]:
    return [parse_date_value(item, what) for item in text.split(",") if item.strip()]


def _dates(dates: Sequence[str]) -> str:
    return _listing(dates) if len(dates) <= _MAX_DATES else f"{len(dates)} dates"


def _rule(value: str, start: datetime) -> str:
    spec = parse_recur(value)
    # What the rule leaves out comes from DTSTART, read exactly as expansion reads it (a weekly rule
    # without day parts recurs on DTSTART's weekday, a daily one at DTSTART's time of day, ...).
    recur = spec.at(start, None)
    freq, interval = recur.freq, recur.interval
    plain, ordinal = list(recur.byweekday), list(recur.bynweekday)  # ordinal: (weekday, n)
    byday = plain or ordinal
    months, monthdays = list(recur.bymonth), list(recur.bymonthday)
    yeardays, weeknos = list(recur.byyearday), list(recur.byweekno)
    setpos, easter = list(recur.bysetpos), list(recur.byeaster)
    hours, minutes, seconds = list(recur.byhour), list(recur.byminute), list(recur.bysecond)

    # BYSETPOS picks from each period's whole set (days x times). Said as "the last weekday" when the
    # set is a list of weekdays at one time of day; otherwise named as a selection after the rest.
    one_time = freq <= DAILY and len(hours) * len(minutes) * len(seconds) == 1
    pick_day = bool(setpos) and bool(plain) and one_time and not (ordinal or monthdays or yeardays or weeknos)
    pick = _listing([_nth(p) for p in setpos])
    # Frequency, with the weekdays folded in where that reads naturally ("Every weekday").
    days_in_head = bool(plain) and not pick_day and (freq == WEEKLY or (freq == DAILY and interval == 1))
    text = _every(freq, interval, plain if days_in_head else [])
    filters = []
    if freq in (DAILY, WEEKLY) and interval == 1 and monthdays and not plain:
        # A day-of-month filter on a daily or weekly rule: "On the 1st and 15th of every month".
        text = f"On the {_listing([_monthday(d) for d in monthdays])} of every month"
        monthdays = []
    if ordinal:
        of = " of the year" if freq == YEARLY and not months else ""
        filters.append(f"on the {_listing([f'{_nth(n)} {_DAYS[d]}' for d, n in ordinal])}{of}")
    if freq == YEARLY and months and monthdays and not (byday or yeardays or weeknos or setpos):
        # "on 25 December" rather than "on the 25th day in December"
        filters.append("on " + _listing([_month_day(d, m) for m in months for d in monthdays]))
        months = []
    elif monthdays:
        of = "" if freq == MONTHLY else " of the month"
        filters.append(f"on the {_listing([_monthday(d) for d in monthdays])}{of}")
    if plain and not days_in_head and not pick_day:
        days = _weekdays(plain, plural=True)
        filters.append(f"when it is a {_weekdays(plain)}" if monthdays else f"on {days}")
    if weeknos:
        filters.append(f"in week {_listing([_day_ordinal(w) if w < 0 else str(w) for w in weeknos])}")
    if yeardays:
        filters.append(f"on the {_listing([_day_ordinal(d) for d in yeardays])} day of the year")
    filters += [_easter(d) for d in easter]
    if months:
        filters.append(f"in {_listing([_MONTHS[m - 1] for m in months])}")
    if pick_day:
        pool = "weekday" if plain == list(_WEEKDAYS) else f"of the {_weekdays(plain, plural=True)}"
        filters.insert(0, f"on the {pick} {pool}")
    if filters:
        text += " " + " ".join(filters)
    text += _times(freq, hours, minutes, seconds)
    if setpos and not pick_day:
        text += f", only the {pick} of these in each {_UNITS[freq]}"
    count = recur.count
    if count is not None or interval > 1:
        # Which occurrences count (COUNT) or which period is "every other" (INTERVAL) depends on DTSTART.
        text += f", starting {_date(start)}" + (f" {_clock(start.time())}" if freq >= HOURLY else "")
    if count is not None:
        text += ", once" if count == 1 else f", {count} times"
    if spec.until is not None:
        text += f", until {_date_time(spec.until)}"
    return text


def _every(freq: int, interval: int, days: Sequence[int]) -> str:
    unit = _UNITS[freq]
    if days and interval == 1:
        return "Every " + (
            _weekdays(days) if list(days) == list(_WEEKDAYS) else _listing([_DAYS[d] for d in days])
        )
    every = f"Every {unit}" if interval == 1 else f"Every {interval} {unit}s"
    if days:
        every += " on " + (
            _weekdays(days, plural=True)
            if list(days) == list(_WEEKDAYS)
            else _listing([_DAYS[d] for d in days])
        )
    return every


def _times(freq: int, hours: Sequence[int], minutes: Sequence[int], seconds: Sequence[int]) -> str:
    show_seconds = any(seconds)
    if freq <= DAILY:
        times = [time(h, m, s) for h in hours for m in minutes for s in seconds]
        if len(times) <= _MAX_TIMES:
            return " at " + _listing([_clock(t, show_seconds) for t in times])
        return f" at minute {_listing([str(m) for m in minutes])} of hours {_ranges(hours, width=2)}"
    # Sub-daily: the interval steps through the day; say which minutes, and which hours when filtered.
    text = ""
    if freq == HOURLY:
        text = (
            " on the hour"
            if list(minutes) == [0] and not show_seconds
            else (f" at minute {_listing([str(m) for m in minutes])}")
        )
    elif minutes:
        text = f" during minute {_ranges(minutes)}"
    if hours:
        text += f" during hours {_ranges(hours, width=2)}"
    return text


# ---------------------------------------------------------------------------------------- phrasing


def _weekdays(days: Sequence[int], plural: bool = False) -> str:
    if list(days) == list(_WEEKDAYS):
        return "weekdays" if plural else "weekday"
    return _listing([_DAYS[d] + ("s" if plural else "") for d in days], "and" if plural else "or")


def _nth(n: int) -> str:
    """first, second, ..., last, second-to-last; 6th, 20th beyond the words."""
    if n == -1:
        return "last"
    if n < 0:
        return f"{_ORDINAL_WORDS.get(-n) or _suffix(-n)}-to-last"
    return _ORDINAL_WORDS.get(n) or _suffix(n)


def _day_ordinal(n: int) -> str:
    """1st, 2nd, ..., 31st; last, 2nd-to-last for negative days."""
    if n == -1:
        return "last"
    return f"{_suffix(-n)}-to-last" if n < 0 else _suffix(n)


def _suffix(n: int) -> str:
    tail = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{tail}"


def _monthday(day: int) -> str:
    """15th; last day, 2nd-to-last day."""
    return _suffix(day) if day > 0 else f"{_day_ordinal(day)} day"


def _month_day(day: int, month: int) -> str:
    name = _MONTHS[month - 1]
    return f"{day} {name}" if day > 0 else f"the {_day_ordinal(day)} day of {name}"


def _easter(offset: int) -> str:
    if offset == 0:
        return "on Easter Sunday"
    n = abs(offset)
    return f"{n} day{'s' if n > 1 else ''} {'after' if offset > 0 else 'before'} Easter Sunday"


def _ranges(values: Sequence[int], width: int = 1) -> str:
    """8, 9, 10, 11, 14 -> 08 to 11 and 14: runs of consecutive numbers shown as ranges."""
    ordered = sorted(set(values))
    spans: list[tuple[int, int]] = []
    for v in ordered:
        if spans and v == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], v)
        else:
            spans.append((v, v))
    fmt = f"{{:0{width}d}}"
    return _listing([fmt.format(a) if a == b else f"{fmt.format(a)} to {fmt.format(b)}" for a, b in spans])


def _listing(items: Sequence[str], conjunction: str = "and") -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {conjunction} " + items[-1]


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _clock(t: time, seconds: bool = False) -> str:
    return t.strftime("%H:%M:%S" if seconds or t.second else "%H:%M")


def _date(t: datetime) -> str:
    return f"{_DAYS[t.weekday()][:3]} {t.day} {_MONTHS[t.month - 1][:3]} {t.year}"


def _date_time(value: Any) -> str:
    """A parsed RFC 5545 date or date-time, as written (UTC ones say so)."""
    if value.is_date:
        return _date(value.wall)
    return f"{_date(value.wall)} {_clock(value.wall.time())}" + (" UTC" if value.is_utc else "")
