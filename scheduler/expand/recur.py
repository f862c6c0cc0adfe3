"""RFC 5545 RECUR values (section 3.3.10): an RRULE or EXRULE value checked part by part, then, at its
DTSTART, a `Recur` with every part explicit, which is what dateutil is given to iterate.

Why every part is made explicit here rather than left to dateutil: the rule's period grid, the
rebasing and the feasibility checks need the parts the RFC derives from DTSTART ("information, not
contained in the rule, necessary to determine the various recurrence instance start time and dates
are derived from the Start Time"): a YEARLY rule without day parts recurs on DTSTART's month and day,
a MONTHLY one on DTSTART's day of month, a WEEKLY one on DTSTART's weekday, and every time part
finer than the frequency is DTSTART's (a DAILY rule without BYHOUR runs at DTSTART's hour). dateutil
keeps those only in private attributes, so they are derived here the way dateutil derives them and
handed to it explicitly: dateutil then derives nothing itself, and a rule restarted at a later period
boundary (see `rebase`) means exactly what the rule at DTSTART means. The property tests compare
`Recur(...).rrule()` with dateutil's own `rrulestr` from DTSTART over random rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from math import prod
from typing import Any, cast

from dateutil.rrule import (
    DAILY,
    FR,
    HOURLY,
    MINUTELY,
    MO,
    MONTHLY,
    SA,
    SECONDLY,
    SU,
    TH,
    TU,
    WE,
    WEEKLY,
    YEARLY,
    rrule,
)

from scheduler.expand.errors import rrule_error
from scheduler.expand.expansion import CACHE_SIZE
from scheduler.expand.icalendar import DateValue, parse_date_value

__all__ = ["WEEKDAY_CODES", "Recur", "RecurSpec", "parse_recur"]

_FREQS = {
    "YEARLY": YEARLY,
    "MONTHLY": MONTHLY,
    "WEEKLY": WEEKLY,
    "DAILY": DAILY,
    "HOURLY": HOURLY,
    "MINUTELY": MINUTELY,
    "SECONDLY": SECONDLY,
}
_FREQ_HELP = "use SECONDLY, MINUTELY, HOURLY, DAILY, WEEKLY, MONTHLY or YEARLY"
WEEKDAY_CODES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")  # index = Python's date.weekday()
_WEEKDAYS = (MO, TU, WE, TH, FR, SA, SU)
_BYDAY_RE = re.compile(r"^([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)$")
# name -> (Recur field, smallest, largest, negatives allowed)
_LIST_PARTS = {
    "BYSECOND": ("bysecond", 0, 59, False),
    "BYMINUTE": ("byminute", 0, 59, False),
    "BYHOUR": ("byhour", 0, 23, False),
    "BYMONTHDAY": ("bymonthday", 1, 31, True),
    "BYYEARDAY": ("byyearday", 1, 366, True),
    "BYWEEKNO": ("byweekno", 1, 53, True),
    "BYMONTH": ("bymonth", 1, 12, False),
    "BYSETPOS": ("bysetpos", 1, 366, True),
    "BYEASTER": ("byeaster", 0, 366, True),  # a dateutil extension: days from Easter Sunday
}
_KNOWN_PARTS = {"FREQ", "INTERVAL", "COUNT", "UNTIL", "WKST", "BYDAY", *_LIST_PARTS}
_DAY_PARTS = ("bymonthday", "byyearday", "byweekno", "byeaster")  # with BYDAY: which days of a period


@dataclass(frozen=True, slots=True)
class Recur:
    """A RECUR value at its DTSTART with every part explicit (an empty tuple: the part does not
    restrict). Weekdays and times are numbered as Python numbers them (0 = Monday)."""

    freq: int  # dateutil's constant, YEARLY (0) coarsest .. SECONDLY (6) finest
    dtstart: datetime  # wall time, whole seconds
    interval: int
    wkst: int
    count: int | None
    until: datetime | None  # a wall-time bound, inclusive (the exact UNTIL instant is cut elsewhere)
    bysetpos: tuple[int, ...]
    bymonth: tuple[int, ...]
    bymonthday: tuple[int, ...]  # positive and negative (from the month's end)
    byyearday: tuple[int, ...]
    byweekno: tuple[int, ...]
    byweekday: tuple[int, ...]  # every such weekday of the period
    bynweekday: tuple[tuple[int, int], ...]  # (weekday, n): the n-th of the month or year
    byeaster: tuple[int, ...]
    # Time parts as written. On the unit the rule steps through (BYHOUR with FREQ=HOURLY, ...) dateutil
    # drops the values its INTERVAL never reaches from DTSTART (and refuses the rule if none is left).
    # Which were dropped does not matter here: occurrence counts never count values on that unit, and
    # the feasibility check's congruence test finds the unreachable ones unreachable on its own.
    byhour: tuple[int, ...]
    byminute: tuple[int, ...]
    bysecond: tuple[int, ...]

    def rrule(self) -> rrule:
        """dateutil's rrule of these parts (ValueError if dateutil refuses them)."""
        return self.restarted(self.dtstart, self.count)

    def restarted(self, dtstart: datetime, count: int | None) -> rrule:
        """dateutil's rrule of these parts from `dtstart` with `count` occurrences. Each part is given,
        so dateutil derives nothing from DTSTART: from a boundary of the rule's period grid it yields
        the rule's own wall times (see `rebase`)."""
        weekdays = [*self.byweekday, *(_WEEKDAYS[d](n) for d, n in self.bynweekday)]
        return rrule(
            cast(Any, self.freq),
            dtstart=dtstart,
            interval=self.interval,
            wkst=self.wkst,
            count=count,
            until=self.until,
            bysetpos=self.bysetpos or None,
            bymonth=self.bymonth or None,
            bymonthday=self.bymonthday or None,
            byyearday=self.byyearday or None,
            byeaster=self.byeaster or None,
            byweekno=self.byweekno or None,
            byweekday=weekdays or None,
            byhour=self.byhour or None,
            byminute=self.byminute or None,
            bysecond=self.bysecond or None,
        )

    def times_per_unit(self) -> int:
        """How many times of day (DAILY and coarser), of the hour (HOURLY) or of the minute (MINUTELY)
        the rule names: the product of its time parts finer than its frequency (1 for SECONDLY)."""
        finer = {
            HOURLY: (self.byminute, self.bysecond),
            MINUTELY: (self.bysecond,),
            SECONDLY: (),
        }.get(self.freq, (self.byhour, self.byminute, self.bysecond))
        return prod(len(values) for values in finer)


@dataclass(frozen=True)
class RecurSpec:
    """A RECUR value as written, checked part by part, before its DTSTART is known."""

    freq: int
    interval: int
    count: int | None
    until: DateValue | None
    wkst: int
    byday: tuple[tuple[int, int], ...] | None  # (weekday, ordinal); ordinal 0: every such weekday
    lists: tuple[tuple[str, tuple[int, ...]], ...]  # the other BYxxx parts given: (Recur field, values)

    def at(self, dtstart: datetime, until: datetime | None) -> Recur:
        """The rule at `dtstart` with the parts RFC 5545 3.3.10 derives from DTSTART made explicit,
        exactly as dateutil 2.x derives them (see the module docstring). `until`: a wall-time bound."""
        dtstart = dtstart.replace(microsecond=0)
        freq = self.freq
        parts = {name: tuple(sorted(set(values))) for name, values in self.lists}
        every: set[int] = set()
        nth: set[tuple[int, int]] = set()
        for wd, n in self.byday or ():
            # An ordinal picks within a month or a year; in a finer period it is ignored (dateutil),
            # as the RFC allows it only with MONTHLY and YEARLY.
            if n == 0 or freq > MONTHLY:
                every.add(wd)
            else:
                nth.add((wd, n))
        if self.byday is None and not any(name in parts for name in _DAY_PARTS):
            if freq == YEARLY:
                parts.setdefault("bymonth", (dtstart.month,))
                parts["bymonthday"] = (dtstart.day,)
            elif freq == MONTHLY:
                parts["bymonthday"] = (dtstart.day,)
            elif freq == WEEKLY:
                every = {dtstart.weekday()}
        # The times of day finer than the frequency are DTSTART's unless given.
        if freq < HOURLY:
            parts.setdefault("byhour", (dtstart.hour,))
        if freq < MINUTELY:
            parts.setdefault("byminute", (dtstart.minute,))
        if freq < SECONDLY:
            parts.setdefault("bysecond", (dtstart.second,))
        if _steps_through_filtered_time(freq, self.interval, parts):
            freq = DAILY
            parts["byhour"] = parts.get("byhour") or tuple(range(24))
            parts["byminute"] = parts.get("byminute") or tuple(range(60))
            parts["bysecond"] = parts.get("bysecond") or tuple(range(60))
        return Recur(
            freq=freq,
            dtstart=dtstart,
            interval=self.interval,
            wkst=self.wkst,
            count=self.count,
            until=until,
            bysetpos=parts.get("bysetpos", ()),
            bymonth=parts.get("bymonth", ()),
            bymonthday=parts.get("bymonthday", ()),
            byyearday=parts.get("byyearday", ()),
            byweekno=parts.get("byweekno", ()),
            byweekday=tuple(sorted(every)),
            bynweekday=tuple(sorted(nth)),
            byeaster=parts.get("byeaster", ()),
            byhour=parts.get("byhour", ()),
            byminute=parts.get("byminute", ()),
            bysecond=parts.get("bysecond", ()),
        )


# The most times of day a sub-daily rule may name to be iterated as the DAILY rule it equals.
_DAILY_TIMES_MAX = 3600


def _steps_through_filtered_time(freq: int, interval: int, parts: dict[str, tuple[int, ...]]) -> bool:
    """Whether a sub-daily rule is better iterated as the DAILY rule it equals. dateutil walks an
    HOURLY, MINUTELY or SECONDLY rule one hour, minute or second at a time, also through the units its
    BYHOUR/BYMINUTE/BYSECOND filter out: FREQ=SECONDLY;BYHOUR=3;BYMINUTE=0;BYSECOND=0 costs ~60 ms per
    daily occurrence, and ~20 s to find one when a day filter (BYMONTH=2;BYMONTHDAY=29) matches
    rarely. With INTERVAL=1 every time of day is reachable on every day, so the rule is exactly
    FREQ=DAILY at the named times (the unnamed coarser units in full: BYHOUR=3 with SECONDLY is every
    second of 03:00-03:59), with the same day filters, COUNT and UNTIL. Not with BYSETPOS (it picks
    within a period, and the period would change), nor when the times are too many to list per day."""
    if interval != 1 or freq not in (HOURLY, MINUTELY, SECONDLY) or parts.get("bysetpos"):
        return False
    coarser = {
        HOURLY: ("byhour",),
        MINUTELY: ("byhour", "byminute"),
        SECONDLY: ("byhour", "byminute", "bysecond"),
    }
    if not any(parts.get(name) for name in coarser[freq]):
        return False
    full = {"byhour": 24, "byminute": 60, "bysecond": 60}
    return prod(len(parts.get(name) or ()) or full[name] for name in full) <= _DAILY_TIMES_MAX


def _int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise rrule_error(f"{name}={text}: {text!r} is not an integer") from None


@lru_cache(maxsize=CACHE_SIZE)
def parse_recur(value: str) -> RecurSpec:
    """An RRULE or EXRULE value (with or without its `RRULE:`/`EXRULE:` name), or InvalidSchedule
    naming the part at fault."""
    text = value.strip()
    if text.upper().startswith("RRULE:"):
        text = text[6:]
    if text.upper().startswith("EXRULE:"):
        text = text[7:]
    parts: dict[str, str] = {}
    for raw in text.strip().strip(";").split(";"):
        name, eq, val = raw.partition("=")
        name = name.strip().upper()
        if not eq or not name:
            raise rrule_error(f"{raw.strip()!r} is not NAME=VALUE (e.g. FREQ=DAILY;BYHOUR=8)")
        if name not in _KNOWN_PARTS:
            raise rrule_error(f"{name} is not an RRULE part; use FREQ, INTERVAL, COUNT, UNTIL, WKST, BYxxx")
        if name in parts:
            raise rrule_error(f"{name} is given twice")
        parts[name] = val.strip()
    if "FREQ" not in parts:
        raise rrule_error("FREQ is required (e.g. FREQ=DAILY;BYHOUR=8)")
    freq_name = parts.pop("FREQ").upper()
    if freq_name not in _FREQS:
        raise rrule_error(f"FREQ={freq_name} is not a frequency; {_FREQ_HELP}")
    numbers: dict[str, int] = {}
    for name in ("INTERVAL", "COUNT"):
        if name in parts:
            number = _int(name, parts.pop(name))
            if number < 1:
                raise rrule_error(f"{name} must be 1 or more")
            numbers[name] = number
    until = None
    if "UNTIL" in parts:
        if "COUNT" in numbers:
            raise rrule_error("COUNT and UNTIL cannot both be given (RFC 5545 3.3.10)")
        until = parse_date_value(parts.pop("UNTIL"), "UNTIL")
    wkst = parts.pop("WKST", "MO").upper()  # RFC 5545 default; dateutil would use calendar's global
    if wkst not in WEEKDAY_CODES:
        raise rrule_error(f"WKST={wkst} is not a weekday; use MO, TU, WE, TH, FR, SA or SU")
    byday = None
    if "BYDAY" in parts:
        days = []
        for item in parts.pop("BYDAY").split(","):
            m = _BYDAY_RE.match(item.strip().upper())
            n = int(m.group(1)) if m and m.group(1) else 0
            if not m or not -53 <= n <= 53:
                raise rrule_error(
                    f"BYDAY {item!r} is not a weekday; use MO, TU, WE, TH, FR, SA, SU, "
                    "optionally with an ordinal such as 1MO or -1FR"
                )
            days.append((WEEKDAY_CODES.index(m.group(2)), n))
        byday = tuple(days)
    lists = []
    for name, raw in parts.items():
        field, lo, hi, signed = _LIST_PARTS[name]
        values = []
        for item in raw.split(","):
            v = _int(name, item.strip())
            if not (lo <= v <= hi or (signed and -hi <= v <= -max(lo, 1))):
                span = f"{lo}..{hi}" + (f" or -{hi}..-{max(lo, 1)}" if signed else "")
                raise rrule_error(f"{name}={raw}: {v} is out of range ({span})")
            values.append(v)
        lists.append((field, tuple(values)))
    return RecurSpec(
        freq=_FREQS[freq_name],
        interval=numbers.get("INTERVAL", 1),
        count=numbers.get("COUNT"),
        until=until,
        wkst=WEEKDAY_CODES.index(wkst),
        byday=byday,
        lists=tuple(lists),
    )
