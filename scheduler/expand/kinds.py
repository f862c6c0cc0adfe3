"""The five schedule kinds and the package's entry points: validate and compile a task's schedule
(`parse_schedule`), the form stored in its row (`normalize_expr`) and the next occurrences of a draft
or a task (`preview`; `preview_within_budget` for the API, `ordo preview` and the console).

cron, rrule and once compile to a `Schedule`; event (a topic) and manual (no expression) have no
occurrences. Compiled schedules without a `now`-dependent anchor are cached by expression, so tasks
with the same schedule share one object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from zoneinfo import ZoneInfo

from scheduler.expand.budget import COSTLY_BECAUSE, Budget, ScheduleTooCostly
from scheduler.expand.cron import CronSchedule, compile_cron, cron_schedule
from scheduler.expand.errors import expr_error
from scheduler.expand.expansion import Expansion, Schedule
from scheduler.expand.icalendar import parse_block
from scheduler.expand.once import OnceSchedule, parse_once
from scheduler.expand.recurrence import compile_anchored, compile_recurrence
from scheduler.expand.walltime import as_instant, local_midnight, utc_naive, zone
from store.domain import PREVIEW_MAX_COUNT, SCHEDULE_KINDS, TOPIC_PATTERN
from store.errors import InvalidSchedule

__all__ = [
    "PREVIEW_BUDGET_S",
    "PREVIEW_MAX_COUNT",
    "SCHEDULE_KINDS",
    "Preview",
    "normalize_expr",
    "parse_schedule",
    "preview",
    "preview_within_budget",
    "recurs_more_than",
]

# The kinds, the preview limit and the topic rule are defined once, in store.domain.
_TOPIC_RE = re.compile(TOPIC_PATTERN)
# The most time one preview may compute for (wall clock, so a request answers in about that). The
# count (PREVIEW_MAX_COUNT) bounds what a preview returns, not what it costs: an EXRULE equal to its
# RRULE is walked to the year 9999 for nothing, and an RRULE whose few occurrences hide among many
# examined instants (a SECONDLY rule with an INTERVAL, narrowed by BYHOUR) costs tens of ms per
# occurrence. A daily cron line or RRULE needs well under 0.1 s for 1,000 occurrences on a busy
# 2-core machine.
PREVIEW_BUDGET_S = 1.0


def _check_kind(kind: str, expr: str | None) -> str:
    if kind not in SCHEDULE_KINDS:
        raise InvalidSchedule(
            f"unknown schedule kind {kind!r}; use one of {', '.join(SCHEDULE_KINDS)}",
            details={"field": "schedule_kind"},
        )
    if expr is None:
        expr = ""
    if not isinstance(expr, str):
        raise expr_error(f"schedule_expr must be text, got {type(expr).__name__}")
    return expr


def _compile(
    kind: str, expr: str, tz: ZoneInfo, *, now: datetime, dtstart: datetime | None = None
) -> Expansion | None:
    if kind == "cron":
        if dtstart is None:
            return cron_schedule(expr, tz)
        return CronSchedule(compile_cron(expr), tz, as_instant(dtstart, tz))
    if kind == "rrule":
        block = parse_block(expr)
        anchor = None if block.dtstart is not None else local_midnight(tz, now)
        if dtstart is None:
            return compile_anchored(expr, tz, anchor)
        return compile_recurrence(block, tz, anchor, dtstart)
    if kind == "once":
        return OnceSchedule(parse_once(expr, tz), tz)
    if kind == "event":
        if not _TOPIC_RE.match(expr):
            raise expr_error(
                f"invalid event topic {expr!r}: 1-200 characters, letters, digits and _ . : / - "
                "(not starting with . : / -), e.g. 'orders.created'"
            )
        return None
    if expr.strip():  # manual
        raise expr_error(f"a manual schedule takes no expression, got {expr!r}; leave schedule_expr empty")
    return None


def parse_schedule(kind: str, expr: str, timezone: str, *, now: datetime) -> Schedule | None:
    """Validate and compile. cron/rrule/once -> Schedule; event -> None (expr must be a topic
    matching ^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,199}$); manual -> None (expr must be '').
    A bare RRULE (no DTSTART line) is anchored at local midnight of `now`'s day in `timezone`.
    The time zone is validated for every kind. Raises InvalidSchedule."""
    expr = _check_kind(kind, expr)
    utc_naive(now, "now")
    return _compile(kind, expr, zone(timezone), now=now)


def normalize_expr(kind: str, expr: str, timezone: str, *, now: datetime) -> str:
    """The form stored in the task row: for a bare RRULE, a block with an explicit
    DTSTART;TZID=<timezone>:<local midnight of now's day> line so expansion never depends on when it runs;
    cron lines whitespace-normalised; once timestamps as ISO 8601 with offset; others unchanged.
    Validates like parse_schedule, and additionally rejects `once` earlier than now."""
    expr = _check_kind(kind, expr)
    now_utc = utc_naive(now, "now")
    tz = zone(timezone)
    compiled = _compile(kind, expr, tz, now=now)
    if isinstance(compiled, CronSchedule):
        return compiled.rule.line
    if isinstance(compiled, OnceSchedule):
        if compiled.at_utc < now_utc:
            raise expr_error(
                f"once at {compiled.at.isoformat()} is in the past (now is "
                f"{now.astimezone(compiled.at.tzinfo).isoformat()})"
            )
        return compiled.at.isoformat()
    if kind == "rrule":
        block = parse_block(expr)
        if block.dtstart is not None:
            return expr
        midnight = local_midnight(tz, now)
        return "\n".join((f"DTSTART;TZID={tz.key}:{midnight:%Y%m%dT%H%M%S}", *block.lines))
    return expr


def preview(
    kind: str,
    expr: str,
    timezone: str,
    *,
    count: int,
    now: datetime,
    dtstart: datetime | None = None,
    after: datetime | None = None,
    budget_s: float = PREVIEW_BUDGET_S,
) -> list[datetime]:
    """Next `count` (1..PREVIEW_MAX_COUNT) occurrences as aware datetimes in the schedule's zone (so
    isoformat() gives e.g. 2026-03-29T08:00:00+03:00). `after` given: occurrences >= after. `dtstart`
    given and no `after`: from DTSTART on, as RFC 5545 defines the set. Neither: from now. `dtstart`
    overrides/sets the DTSTART of an rrule (and for cron/once it is only a lower bound). Naive
    `dtstart`/`after` are read in the schedule's zone. event and manual schedules have no occurrences: [].
    A preview that needs more than `budget_s` of computation stops: ScheduleTooCostly (422
    SCHEDULE_TOO_COSTLY) carrying the occurrences `found` before it stopped (see `preview_within_budget`)."""
    expr = _check_kind(kind, expr)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= PREVIEW_MAX_COUNT:
        raise InvalidSchedule(
            f"count must be between 1 and {PREVIEW_MAX_COUNT}, got {count!r}", details={"field": "count"}
        )
    now_utc = utc_naive(now, "now")
    tz = zone(timezone)
    if dtstart is not None and not isinstance(dtstart, datetime):
        raise InvalidSchedule(f"dtstart must be a date-time, got {dtstart!r}", details={"field": "dtstart"})
    sched = _compile(kind, expr, tz, now=now, dtstart=dtstart)
    if sched is None:
        return []
    if after is not None:
        t = as_instant(after, sched.zone)
        if isinstance(sched, CronSchedule | OnceSchedule) and dtstart is not None:
            t = max(t, as_instant(dtstart, sched.zone))
    elif dtstart is not None:
        t = sched.first_instant() or as_instant(dtstart, sched.zone)
    else:
        t = now_utc
    out_zone = sched.zone
    found: list[datetime] = []
    try:
        for i in islice(sched.stream(t, Budget(budget_s)), count):
            found.append(i.replace(tzinfo=UTC).astimezone(out_zone))
    except ScheduleTooCostly as e:
        raise ScheduleTooCostly(
            f"the schedule took more than {budget_s:g} s to preview and gave {len(found)} of the {count} "
            f"occurrences asked for: {COSTLY_BECAUSE}",
            resume=e.resume,
            found=found,
            details={"field": "expr", "found": len(found), "count": count, "budget_s": budget_s},
        ) from None
    return found


@dataclass(frozen=True)
class Preview:
    """What a person asking for a preview is shown: the occurrences, and `cut_short` when the budget
    ran out before `count` were found (its message says why; `occurrences` are those found first)."""

    occurrences: list[datetime]
    cut_short: ScheduleTooCostly | None = None

    def as_json(self) -> dict[str, object]:
        """What every preview answers (the API's, `ordo preview --json`): ISO 8601 with offsets,
        `complete`, and `cut_short` as an error body ({code, message, details}) or None."""
        cut = self.cut_short
        return {
            "occurrences": [o.isoformat() for o in self.occurrences],
            "complete": cut is None,
            "cut_short": None
            if cut is None
            else {"code": cut.code, "message": cut.message, "details": cut.details},
        }


def preview_within_budget(
    kind: str,
    expr: str,
    timezone: str,
    *,
    count: int,
    now: datetime,
    dtstart: datetime | None = None,
    after: datetime | None = None,
    budget_s: float = PREVIEW_BUDGET_S,
) -> Preview:
    """`preview` as the API, the CLI and the console show it: a preview that runs out of budget gives
    the occurrences found so far with the reason, and is refused (ScheduleTooCostly, 422) only when it
    found none."""
    try:
        return Preview(
            preview(
                kind, expr, timezone, count=count, now=now, dtstart=dtstart, after=after, budget_s=budget_s
            )
        )
    except ScheduleTooCostly as e:
        if not e.found:
            raise
        return Preview(e.found, e)


def recurs_more_than(schedule: Schedule, limit: int, start: datetime, end: datetime) -> bool:
    """Whether `schedule` has more than `limit` occurrences in [start, end) (aware), counting no
    further than limit + 1; ScheduleTooCostly if counting takes more than a preview's budget. For
    rules whose every occurrence becomes work elsewhere (a plant's exception windows, holidays)."""
    assert isinstance(schedule, Expansion)
    s, e = utc_naive(start, "start"), utc_naive(end, "end")
    for n, i in enumerate(schedule.stream(s, Budget(PREVIEW_BUDGET_S)), 1):
        if i >= e:
            return False
        if n > limit:
            return True
    return False
