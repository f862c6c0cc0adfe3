"""The `rrule` kind: an RFC 5545 recurrence set (DTSTART, RRULE, EXRULE, RDATE, EXDATE) compiled into
a `Schedule`, deciding which zone each value is read in and which instant it means.

* Zone. A DTSTART TZID wins over the task's zone for expansion; a UTC DTSTART (`Z`) recurs in UTC
  (section 3.3.5, form 2); a floating DTSTART is read in the task's zone; a `VALUE=DATE` DTSTART is
  local midnight. A bare rule (no DTSTART) is anchored at local midnight of `now`'s day, and
  `normalize_expr` writes that DTSTART into the stored form, so expansion never depends on when it runs.
* DTSTART is an instance only when it matches the rule (dateutil's reading; the RFC calls an
  unsynchronised DTSTART undefined), except in a block without RRULE, where it is the first instance.
* UNTIL in UTC is compared with instants; a floating UNTIL is read in the rule's zone; a date-only
  UNTIL includes that whole local day.
* A date-only EXDATE removes every occurrence on that local date; a date-only RDATE adds that date at
  DTSTART's time of day. Other RDATE/EXDATE values are instants: UTC, or wall times in their TZID's
  zone (else the rule's), read with the package's one wall-clock rule (see `walltime`).
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections.abc import Iterator
from datetime import date, datetime
from functools import lru_cache
from itertools import islice
from zoneinfo import ZoneInfo

from scheduler.expand.budget import Budget, ScheduleTooCostly, metered
from scheduler.expand.errors import rrule_error
from scheduler.expand.expansion import CACHE_SIZE, Expansion
from scheduler.expand.feasibility import check_feasible
from scheduler.expand.icalendar import Block, DateValue, date_values, parse_block, parse_date_value
from scheduler.expand.rebase import RebasingRule
from scheduler.expand.recur import parse_recur
from scheduler.expand.walltime import DAY, MAX_AHEAD, TINY, YEARS, instant, instants, wall_floor

__all__ = ["RecurrenceSchedule", "compile_anchored", "compile_recurrence"]


class RecurrenceSchedule(Expansion):
    kind = "rrule"

    def __init__(
        self,
        tz: ZoneInfo,
        dtstart: datetime,
        rules: list[RebasingRule],
        exrules: list[RebasingRule],
        rdates: list[datetime],
        exdates: frozenset[datetime],
        exdays: frozenset[date],
    ) -> None:
        super().__init__()
        self.zone = tz
        self.dtstart = dtstart  # wall time in self.zone
        self._rules = rules
        self._exrules = exrules
        self._rdates = sorted(set(rdates))
        self._exdates = exdates
        self._exdays = exdays

    def first_instant(self) -> datetime | None:
        # Wall times >= DTSTART can map up to a gap length before its instant; RDATEs may precede it.
        first = instant(self.zone, self.dtstart) - DAY
        return min(first, self._rdates[0]) if self._rdates else first

    def stream(self, t: datetime, budget: Budget | None = None) -> Iterator[datetime]:
        tz = self.zone
        w_lo = wall_floor(tz, t)
        try:  # a COUNT rule may count its history here first
            streams: list[Iterator[datetime]] = [
                instants(rule.walls_from(w_lo, budget), tz, t, rule.until) for rule in self._rules
            ]
        except ScheduleTooCostly:
            assert budget is not None
            raise budget.exceeded(t) from None
        if self._rdates:
            streams.append(islice(self._rdates, bisect_left(self._rdates, t), None))
        merged = streams[0] if len(streams) == 1 else heapq.merge(*streams)
        if budget is not None:  # metered before EXRULE/EXDATE: what they drop is work too
            merged = metered(merged, budget)
        if not (self._exrules or self._exdates or self._exdays or len(streams) > 1):
            return merged
        return self._filtered(merged, t, w_lo, budget)

    def _filtered(
        self, merged: Iterator[datetime], t: datetime, w_lo: datetime, budget: Budget | None
    ) -> Iterator[datetime]:
        tz = self.zone
        ex: Iterator[datetime] | None = None
        next_ex = None
        if self._exrules:
            try:  # before the first instant is yielded
                ex = heapq.merge(
                    *(instants(r.walls_from(w_lo, budget), tz, t, r.until) for r in self._exrules)
                )
            except ScheduleTooCostly:
                assert budget is not None
                raise budget.exceeded(t) from None
            next_ex = next(ex, None)
        last = None
        for i in merged:
            if i == last:
                continue
            last = i
            if i in self._exdates:
                continue
            if self._exdays and tz.fromutc(i.replace(tzinfo=tz)).date() in self._exdays:
                continue
            if ex is not None:
                while next_ex is not None and next_ex < i:
                    next_ex = next(ex, None)
                if next_ex == i:
                    continue
            yield i


def _instant_of(value: DateValue, tz: ZoneInfo) -> datetime:
    """The instant of a DATE-TIME value: as written in UTC, else a wall time in `tz`."""
    return value.wall if value.is_utc else instant(tz, value.wall)


def _compile_rule(value: str, dtstart: datetime, tz: ZoneInfo) -> RebasingRule:
    spec = parse_recur(value)
    until_instant = None
    until_wall = None
    if spec.until is not None:
        u = spec.until
        try:
            # a date-only UNTIL keeps that whole local day
            until_instant = instant(tz, u.wall + DAY) - TINY if u.is_date else _instant_of(u, tz)
            # dateutil compares wall times; give it a bound no earlier than any wall time whose instant
            # is <= UNTIL, and cut at the instant in walltime.instants.
            until_wall = until_instant + MAX_AHEAD
        except OverflowError:  # UNTIL at the end of the calendar bounds nothing
            until_instant = until_wall = None
    recur = spec.at(dtstart, until_wall)
    try:
        rule = RebasingRule(recur, until_instant)
    except ValueError as exc:  # dateutil refuses e.g. an HOURLY BYHOUR its INTERVAL never reaches
        raise rrule_error(str(exc)) from None
    check_feasible(recur)
    return rule


def compile_recurrence(
    block: Block, tz: ZoneInfo, anchor: datetime | None, override: datetime | None
) -> RecurrenceSchedule:
    """`anchor`: DTSTART wall time for a block without one; `override`: preview's dtstart (aware or
    naive, naive read in the expansion zone)."""
    if block.dtstart is not None:
        value = parse_date_value(block.dtstart.value, "DTSTART")
        # a UTC DTSTART recurs in UTC (RFC 5545 3.3.5, form 2); a TZID wins over the task's zone
        exp_zone = ZoneInfo("UTC") if value.is_utc else block.dtstart.zone(tz)
        start = value.wall
    else:
        exp_zone = tz
        assert anchor is not None
        start = anchor
    if override is not None:
        if override.tzinfo is not None:
            start = override.astimezone(exp_zone).replace(tzinfo=None, fold=0)
        else:
            start = override
    start = start.replace(microsecond=0)
    if not YEARS[0] <= start.year <= YEARS[1]:
        raise rrule_error(f"DTSTART {start:%Y-%m-%dT%H:%M:%S} is outside the years {YEARS[0]}..{YEARS[1]}")
    rules = [_compile_rule(v, start, exp_zone) for v in block.rrules]
    exrules = [_compile_rule(v, start, exp_zone) for v in block.exrules]
    rdates: list[datetime] = []
    for prop in block.rdates:
        pz = prop.zone(exp_zone)
        for v in date_values(prop):
            if v.is_date:  # at DTSTART's time of day
                rdates.append(instant(exp_zone, datetime.combine(v.wall.date(), start.time())))
            else:
                rdates.append(_instant_of(v, pz))
    if not rules and (block.dtstart is not None or override is not None):
        rdates.append(instant(exp_zone, start))  # without a rule, DTSTART is the first instance
    exdates: set[datetime] = set()
    exdays: set[date] = set()
    for prop in block.exdates:
        pz = prop.zone(exp_zone)
        for v in date_values(prop):
            if v.is_date:
                exdays.add(v.wall.date())
            else:
                exdates.add(_instant_of(v, pz))
    return RecurrenceSchedule(exp_zone, start, rules, exrules, rdates, frozenset(exdates), frozenset(exdays))


@lru_cache(maxsize=CACHE_SIZE)
def compile_anchored(expr: str, tz: ZoneInfo, anchor: datetime | None) -> RecurrenceSchedule:
    """The shared schedule of an expression in a zone (what the scheduler expands)."""
    return compile_recurrence(parse_block(expr), tz, anchor, None)
