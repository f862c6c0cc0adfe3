"""The cron dialect: a crontab line checked and compiled to APScheduler 3.11 triggers, and the cron
`Schedule` that turns their wall times into instants.

Lines: five fields, minute hour day month weekday, or `@hourly`/`@daily`/`@midnight`/`@weekly`/
`@monthly`/`@yearly`/`@annually`. Two crontab meanings that APScheduler 3.x does not share are
restored before the line reaches it (`CronTrigger.from_crontab`): weekday numbers are crontab's (0 or
7 = Sunday; APScheduler 3.x counts 0 = Monday), and when both day of month and weekday are restricted
a day matching *either* fires (Vixie cron), which is expanded as the union of two triggers.

Why APScheduler is not given the zone (measured with 3.11.3): it keeps a fixed time on both sides of a
transition (08:00 Chisinau stays 08:00), and fires a time in the gap with the pre-gap offset (02:30
New York on 2026-03-08 = 07:30Z = 03:30 EDT) *only if the search starts before the gap*: a search
starting between 03:00 and 03:30 EDT (as the rolling 10-minute window that contains 07:30Z does) sees
hour 3, moves to the next day and silently skips that day's run, and `next_at_or_after` would disagree
with `between`. In the repeated hour it fires a fixed time twice (01:30 EDT and 01:30 EST). So lines
are evaluated by APScheduler in UTC used as a wall clock (a zone without transitions, where its walk is
exact) and the wall times are localised by `walltime.instants` with the package's one rule: a gap time
fires once, shifted later by the gap; an ambiguous fixed time fires once, at its first occurrence.
One refinement, as cronie does for jobs that run every hour: when the hour field is `*`, the repeated
hour after fall-back fires again (01:00, 01:20, 01:40 EDT and then EST), so an every-N-minutes job keeps
running through the night instead of pausing for an hour.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from scheduler.expand.budget import Budget, metered
from scheduler.expand.errors import expr_error
from scheduler.expand.expansion import CACHE_SIZE, Expansion
from scheduler.expand.walltime import instants, wall_floor
from store.errors import InvalidSchedule

__all__ = ["CRON_MACROS", "CronRule", "CronSchedule", "compile_cron", "cron_schedule"]

CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_CRON_FIELDS = ("minute", "hour", "day", "month", "weekday")
_CRONTAB_DAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_APS_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # by crontab number; names mean the same
_CRON_PROBE_FROM = datetime(2000, 1, 1, tzinfo=UTC)
_APS_PREFIX = re.compile(r"^Error validating expression '.*?': ")


@dataclass(frozen=True)
class CronRule:
    line: str  # the normalised line
    triggers: tuple[CronTrigger, ...]  # evaluated in UTC used as a wall clock (see module docstring)
    every_hour: bool  # the hour field is '*': the repeated hour after fall-back fires again


class CronSchedule(Expansion):
    kind = "cron"

    def __init__(self, rule: CronRule, tz: ZoneInfo, lower: datetime | None = None) -> None:
        super().__init__()
        self.rule = rule
        self.zone = tz
        self._lower = lower  # preview's dtstart: a lower bound only

    def stream(self, t: datetime, budget: Budget | None = None) -> Iterator[datetime]:
        if self._lower is not None and t < self._lower:
            t = self._lower
        w_lo = wall_floor(self.zone, t, self.rule.every_hour)
        triggers = self.rule.triggers
        if len(triggers) == 1:
            walls: Iterable[datetime] = _cron_walls(triggers[0], w_lo)
        else:
            walls = heapq.merge(*(_cron_walls(tr, w_lo) for tr in triggers))
        found = instants(walls, self.zone, t, None, self.rule.every_hour)
        return found if budget is None else metered(found, budget)

    def first_instant(self) -> datetime | None:
        return self._lower


@lru_cache(maxsize=CACHE_SIZE)
def cron_schedule(expr: str, tz: ZoneInfo) -> CronSchedule:
    """The shared schedule of a line in a zone (no lower bound: what the scheduler expands)."""
    return CronSchedule(compile_cron(expr), tz)


def _cron_walls(trigger: CronTrigger, w_lo: datetime) -> Iterator[datetime]:
    """Wall times >= w_lo matching the trigger, one get_next_fire_time per occurrence."""
    cur = w_lo.replace(tzinfo=UTC)
    step = timedelta(seconds=1)
    while True:
        nxt = trigger.get_next_fire_time(None, cur)
        if nxt is None:
            return
        yield nxt.replace(tzinfo=None)
        cur = nxt + step


def _cron_error(line: str, message: str) -> InvalidSchedule:
    return expr_error(f"invalid cron line {line!r}: {message}")


def _crontab_weekdays(line: str, text: str) -> str:
    """The weekday field in APScheduler's terms: crontab numbers (0 or 7 = Sunday) become names."""
    if text == "*":
        return "*"
    days: set[int] = set()

    def value(token: str) -> int:
        if token.lower() in _CRONTAB_DAYS:
            return _CRONTAB_DAYS[token.lower()]
        if token.isdigit() and int(token) <= 7:
            return int(token)
        raise _cron_error(line, f"weekday field {text!r}: {token!r} is not a weekday (0-7 or sun-sat)")

    for item in text.split(","):
        rng, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise _cron_error(
                    line, f"weekday field {text!r}: step {step_text!r} must be a positive number"
                )
            step = int(step_text)
        if rng == "*":
            lo, hi = 0, 7
        elif "-" in rng:
            a, _, b = rng.partition("-")
            lo, hi = value(a), value(b)
            if lo > hi:
                raise _cron_error(line, f"weekday field {text!r}: range {rng!r} runs backwards")
        else:
            lo = value(rng)
            hi = 7 if slash else lo
        days.update(d % 7 for d in range(lo, hi + 1, step))
    return ",".join(_APS_DAYS[d] for d in sorted(days))


@lru_cache(maxsize=CACHE_SIZE)
def compile_cron(expr: str) -> CronRule:
    """Check a crontab line and compile it, or InvalidSchedule naming the field at fault."""
    line = " ".join(expr.split())
    if not line:
        raise expr_error("cron line is empty: it must have 5 fields (minute hour day month weekday)")
    macro = CRON_MACROS.get(line.lower())
    if line.startswith("@") and macro is None:
        raise _cron_error(line, f"unknown macro; use one of {', '.join(sorted(CRON_MACROS))}")
    fields = (macro or line).split()
    if len(fields) != 5:
        raise expr_error(f"cron line must have 5 fields (minute hour day month weekday), got {len(fields)}")
    minute, hour, dom, month, dow = fields
    aps_dow = _crontab_weekdays(line, dow)
    # Vixie cron: when both day fields are restricted, a day matching either one fires.
    if not dom.startswith("*") and not dow.startswith("*"):
        texts = [f"{minute} {hour} {dom} {month} *", f"{minute} {hour} * {month} {aps_dow}"]
    else:
        texts = [f"{minute} {hour} {dom} {month} {aps_dow}"]
    try:
        triggers = tuple(CronTrigger.from_crontab(text, timezone=UTC) for text in texts)
    except ValueError:
        for name, value in zip(_CRON_FIELDS[:4], fields[:4], strict=True):
            try:
                CronTrigger(**{name: value}, timezone=UTC)
            except ValueError as exc:
                reason = _APS_PREFIX.sub("", str(exc))
                raise _cron_error(line, f"{name} field {value!r}: {reason}") from None
        raise _cron_error(line, "it cannot be read as minute hour day month weekday") from None
    # A line naming only days that do not exist (31 February) would otherwise be searched to 9999 on
    # every expansion; the search is bounded, so pay it once here (only a day of month can be missing).
    if not dom.startswith("*") and all(
        tr.get_next_fire_time(None, _CRON_PROBE_FROM) is None for tr in triggers
    ):
        raise _cron_error(line, "it never fires (no such day in the months it names)")
    return CronRule(line=line.lower() if macro else line, triggers=triggers, every_hour=hour in ("*", "*/1"))
