"""Expanding an RRULE from any point without iterating its history.

dateutil iterates from DTSTART, so a minutely rule that started a year ago would be walked through a
year of minutes on every tick. Instead a rule is restarted ("rebased") at a boundary of its period
grid shortly before the point asked about: a whole number of INTERVAL periods after DTSTART's own
period, with every part explicit (`recur.Recur`), so the restarted rule yields exactly the wall times
the rule yields from DTSTART. Two dateutil behaviours shape this:

* DTSTART's own period is truncated at DTSTART (for WEEKLY even before BYSETPOS picks), so a rule is
  never restarted inside that first period: it is iterated from DTSTART there.
* COUNT counts from DTSTART. A COUNT rule keeps a checkpoint (a period boundary and the occurrences
  still left) that only moves forward; when every period holds the same number of occurrences the
  COUNT used up is computed, not iterated.

Known cost left: a rule whose INTERVAL phase never meets its day filters (YEARLY;INTERVAL=4 on 29
February from a common year) passes `feasibility` and costs one bounded scan (up to a few seconds) per
schedule object before it is known to be exhausted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, time, timedelta

from dateutil.rrule import DAILY, HOURLY, MINUTELY, MONTHLY, SECONDLY, WEEKLY, YEARLY, rrule

from scheduler.expand.budget import Budget
from scheduler.expand.recur import Recur

__all__ = ["RebasingRule", "walls_before"]

_MONTHS = {YEARLY: 12, MONTHLY: 1}  # periods counted in calendar months
_FIXED = {  # periods of a fixed length of wall-clock time
    WEEKLY: timedelta(days=7),
    DAILY: timedelta(days=1),
    HOURLY: timedelta(hours=1),
    MINUTELY: timedelta(minutes=1),
    SECONDLY: timedelta(seconds=1),
}


def _grid_origin(r: Recur) -> datetime:
    """The start of DTSTART's own period (for WEEKLY: the WKST day of its week)."""
    d = r.dtstart
    freq = r.freq
    if freq == YEARLY:
        return datetime(d.year, 1, 1)
    if freq == MONTHLY:
        return datetime(d.year, d.month, 1)
    if freq == WEEKLY:
        return datetime.combine(d.date() - timedelta(days=(d.weekday() - r.wkst) % 7), time())
    if freq == DAILY:
        return datetime.combine(d.date(), time())
    if freq == HOURLY:
        return d.replace(minute=0, second=0, microsecond=0)
    if freq == MINUTELY:
        return d.replace(second=0, microsecond=0)
    return d.replace(microsecond=0)


def _boundary(r: Recur, k: int) -> datetime:
    """The start of the k-th period dateutil visits after DTSTART's own (k * INTERVAL units on)."""
    origin = _grid_origin(r)
    steps = k * r.interval
    months = _MONTHS.get(r.freq)
    if months is not None:
        month = origin.year * 12 + origin.month - 1 + steps * months
        return datetime(month // 12, month % 12 + 1, 1)
    return origin + _FIXED[r.freq] * steps


def _period_start(r: Recur, w: datetime) -> tuple[int, datetime] | None:
    """(k, start) of the latest period boundary of `r`'s grid (k whole INTERVALs after DTSTART's own
    period) that is <= w, with k >= 1 because dateutil truncates DTSTART's own period at DTSTART
    (for WEEKLY even before BYSETPOS picks); None if w is still in that first period."""
    if w <= r.dtstart:
        return None
    origin = _grid_origin(r)
    months = _MONTHS.get(r.freq)
    if months is not None:
        units = ((w.year - origin.year) * 12 + w.month - origin.month) // months
    else:
        units = (w - origin) // _FIXED[r.freq]
    k = units // r.interval
    return (k, _boundary(r, k)) if k > 0 else None


def _per_period(r: Recur) -> int | None:
    """Occurrences in every period after DTSTART's own when that number is fixed (no day filters,
    no BYSETPOS, no filter on a unit the frequency steps through); None otherwise."""
    if r.bysetpos or r.bymonth or r.bymonthday or r.byyearday or r.byweekno or r.bynweekday or r.byeaster:
        return None
    freq = r.freq
    if freq == WEEKLY:
        return len(r.byweekday) * r.times_per_unit()
    if r.byweekday:
        return None
    if freq in (YEARLY, MONTHLY):  # months and years hold different numbers of days
        return None
    # A time part as coarse as the frequency (BYHOUR on HOURLY, BYMINUTE on MINUTELY, ...) filters
    # whole periods out instead of choosing within each one.
    filters = {
        DAILY: (),
        HOURLY: (r.byhour,),
        MINUTELY: (r.byhour, r.byminute),
        SECONDLY: (r.byhour, r.byminute, r.bysecond),
    }[freq]
    return None if any(filters) else r.times_per_unit()


def walls_before(walls: Iterable[datetime], end: datetime) -> Iterator[datetime]:
    """The leading wall times < end."""
    for w in walls:
        if w >= end:
            return
        yield w


class RebasingRule:
    """One RRULE (or EXRULE) line at its DTSTART, expandable from any point (ValueError if dateutil
    refuses its parts)."""

    __slots__ = ("_checkpoint", "_first", "_per_period", "_rebased", "recur", "rule", "until")

    def __init__(self, recur: Recur, until: datetime | None) -> None:
        self.recur = recur
        self.rule: rrule = recur.rrule()  # iterated from DTSTART
        self.until = until  # instant (naive UTC), inclusive; recur.until is a generous wall bound
        self._rebased: tuple[datetime, rrule] | None = None
        # COUNT rules: (period index, period start, rule restarted there with the occurrences left, left)
        self._checkpoint: tuple[int, datetime, rrule | None, int] = (
            0,
            recur.dtstart,
            self.rule,
            recur.count or 0,
        )
        self._per_period = _per_period(recur) if recur.count else None
        self._first: int | None = None  # occurrences in DTSTART's own period, counted once

    def walls_from(self, w_lo: datetime, budget: Budget | None = None) -> Iterator[datetime]:
        """Ascending wall times of the rule, from a point at or before w_lo (never from further back
        than one period of the rule, whatever the age of DTSTART). With a budget, counting a COUNT
        rule's history stops once it is spent (ScheduleTooCostly), keeping the count so far in the
        checkpoint: the next call goes on from there."""
        r = self.recur
        found = _period_start(r, w_lo)
        if found is None:
            return iter(self.rule)
        k, start = found
        if r.count is None:
            cached = self._rebased
            if cached is None or cached[0] != start:
                cached = (start, self.recur.restarted(start, None))
                self._rebased = cached
            return iter(cached[1])
        ck_k, ck_start, ck_rule, ck_left = self._checkpoint
        if ck_start > w_lo:  # asked about the past (a preview): begin again from DTSTART
            ck_k, ck_start, ck_rule, ck_left = 0, r.dtstart, self.rule, r.count
        if k <= ck_k or ck_rule is None:
            return iter(ck_rule) if ck_rule is not None else iter(())
        left = ck_left - self._used(ck_k, ck_rule, ck_left, k, start, budget)
        restarted = self.recur.restarted(start, left) if left > 0 else None
        self._checkpoint = (k, start, restarted, left)
        return iter(restarted) if restarted is not None else iter(())

    def _used(
        self, ck_k: int, ck_rule: rrule, ck_left: int, k: int, start: datetime, budget: Budget | None
    ) -> int:
        """Occurrences between the checkpoint (period ck_k) and period k: they use up the COUNT. A
        budget spent while iterating them: the count goes on to the end of the current period, the
        checkpoint moves to the next one, and ScheduleTooCostly is raised."""
        m = self._per_period
        if m is not None:  # every period alike: arithmetic instead of O(history) iteration
            if ck_k > 0:
                return (k - ck_k) * m
            if self._first is None:
                first_end = _boundary(self.recur, 1)
                self._first = sum(1 for _ in walls_before(self.rule, first_end))
            return self._first + (k - 1) * m
        used = 0
        finishing: int | None = None  # once the budget is spent: the period being counted to its end
        for w in walls_before(ck_rule, start):
            if finishing is None and budget is not None and budget.spent():
                here = _period_start(self.recur, w)
                finishing = here[0] if here is not None else 0
            if finishing is not None:
                here = _period_start(self.recur, w)
                if here is not None and here[0] > finishing:
                    left = ck_left - used  # every wall counted so far is before this period
                    restarted = self.recur.restarted(here[1], left) if left > 0 else None
                    self._checkpoint = (here[0], here[1], restarted, left)
                    assert budget is not None
                    raise budget.exceeded(None)
            used += 1
        return used
