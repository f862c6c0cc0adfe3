"""Refusing RRULEs that can never produce an occurrence (February 30, an unreachable BYHOUR, BYSETPOS
beyond the set): dateutil would otherwise scan to the year 9999 looking for one on every expansion.

RFC 5545 gives such rules no meaning beyond an empty set; a person who writes one almost certainly
meant something else, so it is refused with the reason when the task is created.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from math import gcd

from dateutil.rrule import DAILY, MINUTELY, MONTHLY, SECONDLY, WEEKLY, YEARLY

from scheduler.expand.errors import rrule_error
from scheduler.expand.recur import WEEKDAY_CODES, Recur

__all__ = ["check_feasible"]

_PROBE_FROM = datetime(9600, 1, 1)  # 400 years (a whole Gregorian cycle) before 9999
_NEVER = "the rule never produces an occurrence"


def check_feasible(r: Recur) -> None:
    """InvalidSchedule if the rule can never produce an occurrence."""
    freq, n, d = r.freq, r.interval, r.dtstart
    bymonth = r.bymonth
    if freq == MONTHLY and n > 1:  # every n months from DTSTART's month reaches one coset of months only
        g = gcd(n, 12)
        reachable = tuple(m for m in bymonth or range(1, 13) if (m - d.month) % g == 0)
        if not reachable:
            raise rrule_error(f"{_NEVER} (INTERVAL={n} from DTSTART's month never reaches its BYMONTH)")
        bymonth = reachable
    # Day filters (31 April, week 1 in June, ...): probe the last 400 years dateutil can reach, a whole
    # Gregorian cycle, at the rule's own granularity for YEARLY/MONTHLY/WEEKLY (ordinal BYDAY and
    # BYSETPOS depend on it), else per day.
    day_filters = r.bymonthday or r.byyearday or r.byweekno or r.bynweekday or r.byeaster
    if day_filters or (r.bysetpos and freq <= WEEKLY):
        if freq in (YEARLY, MONTHLY, WEEKLY):
            probe = replace(r, dtstart=_PROBE_FROM, interval=1, count=1, until=None, bymonth=bymonth)
        else:  # per day: any day of the year with the rule's day filters, ordinals dropped
            weekdays = tuple(sorted({*r.byweekday, *(wd for wd, _ in r.bynweekday)}))
            probe = replace(
                r,
                freq=YEARLY,
                dtstart=_PROBE_FROM,
                interval=1,
                count=1,
                until=None,
                bysetpos=(),
                bymonth=bymonth,
                byweekday=weekdays,
                bynweekday=(),
                byhour=(0,),
                byminute=(0,),
                bysecond=(0,),
            )
        if next(iter(probe.rrule()), None) is None:
            raise rrule_error(f"{_NEVER} (no date satisfies its BYxxx parts, e.g. 30 February)")
    # DAILY with an INTERVAL that is a multiple of 7 always lands on DTSTART's weekday.
    if freq == DAILY and r.byweekday and n % 7 == 0 and d.weekday() not in r.byweekday:
        raise rrule_error(f"{_NEVER} (every {n} days from DTSTART is always a {WEEKDAY_CODES[d.weekday()]})")
    # BYSETPOS beyond the set of one period (finer than WEEKLY: one day's or one hour's times).
    if r.bysetpos and freq >= DAILY:
        size = r.times_per_unit()
        if not any(-size <= p <= size for p in r.bysetpos):
            raise rrule_error(f"{_NEVER} (BYSETPOS is beyond the {size} instance(s) of each period)")
    # MINUTELY/SECONDLY with BYHOUR/BYMINUTE: only times of day congruent to DTSTART's modulo the step
    # are reachable (dateutil raises mid-iteration or spins otherwise).
    if freq in (MINUTELY, SECONDLY) and (r.byhour or (freq == SECONDLY and r.byminute)):
        unit = 60 if freq == MINUTELY else 1
        g = gcd(n * unit, 86400)
        s0 = (d.hour * 3600 + d.minute * 60 + (d.second if freq == SECONDLY else 0)) % g
        hours = r.byhour or range(24)
        minutes = r.byminute or range(60)
        seconds = (r.bysecond or range(60)) if freq == SECONDLY else (0,)
        if not any((h * 3600 + m * 60 + s) % g == s0 for h in hours for m in minutes for s in seconds):
            raise rrule_error(f"{_NEVER} (INTERVAL={n} from DTSTART never reaches its BYHOUR/BYMINUTE)")
