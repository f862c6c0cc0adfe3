"""Equipment availability, computed: a resource's pattern, holidays and exceptions turned into shifts
of real time. Pure: the plant comes in as data (`Plant`), shifts go out as rows; storing them is
`engine.tools.plant`'s job, over `store.plant_availability`.

Rules, one place each:

* **Which pattern** runs a resource on a date: its own assignment valid that day (the one with the
  latest `effective_from` when several are), else its parent's, up to the root (`Plant.plan`).
  The zone and the holiday calendar are inherited the same way; exceptions of every ancestor apply
  (a site's shutdown stops every machine under it), each read in the zone of the resource it is
  attached to.
* **Real time.** A shift's wall-clock start and end are read in the resource's zone on the date the
  shift belongs to (the day it starts) and stored as instants. A wall time inside a spring-forward
  gap takes the offset before the gap (it lands later by the gap); a time that occurs twice means its
  first occurrence: the scheduler's rule (scheduler.expand). So a 24x7 day in Europe/Chisinau lasts
  23 h on 2026-03-29 and 25 h on 2026-10-25, and a 22:00-06:00 shift across a transition 7 or 9 h.
* **Holidays** stop every shift that belongs to a holiday date (the plant's local date): the shift
  is kept with status `holiday` and no capacity, so planned and holiday hours both show it.
* **Exceptions** cut shifts: only the time outside an exception keeps operating; the part inside is
  a row of its own with the exception's kind as status, its capacity (0 for `no_operation`, the
  percentage for `reduced`) and its id. Where exceptions overlap, the lowest capacity wins. A holiday
  shift is not cut: the plant is not running anyway.

Row statuses: `available` (operating, 100 %), `holiday`, and the exception kinds `maintenance`,
`breakdown`, `shutdown`, `other`. Only `available` rows (and, on request, reduced ones) open a
solver calendar (`calendars_from_rows`).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import pairwise
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.tools.holiday_calendars import OBSERVED_SETTINGS, HolidayCalendar, parse_region, region_error
from engine.tools.shift_patterns import Pattern, built_in
from scheduler.expand import ScheduleTooCostly, parse_schedule, recurs_more_than
from scheduler.expand.budget import COSTLY_BECAUSE
from store.errors import InvalidPlant, InvalidSchedule
from store.problems import Problems

__all__ = [
    "AVAILABLE",
    "EXCEPTION_KINDS",
    "IMPACTS",
    "LEVELS",
    "MAX_DAYS",
    "STATUSES",
    "Assignment",
    "ExceptionRule",
    "Node",
    "PatternSpan",
    "Plant",
    "ResourcePlan",
    "ShiftRow",
    "calendars_from_rows",
    "check_zone",
    "checked_preview",
    "compute_shifts",
    "parse_exception",
    "preview",
    "range_problem",
]

LEVELS = ("enterprise", "site", "area", "work_center", "work_unit")  # ISA-95, top down
AVAILABLE = "available"
HOLIDAY = "holiday"
EXCEPTION_KINDS = ("maintenance", "breakdown", "shutdown", "other")
STATUSES = (AVAILABLE, HOLIDAY, *EXCEPTION_KINDS)
IMPACTS = ("no_operation", "reduced")
DEFAULT_ZONE = "UTC"
MAX_DAYS = 3660  # ten years at once (a generation, a query, a preview)
# The dates availability may cover: any plant's history or plan, and far enough from the calendar's
# ends (years 1 and 9999) that a range's shifts, zones and surrounding days stay computable.
FIRST_DATE, LAST_DATE = date(1900, 1, 1), date(2999, 12, 31)
_MAX_EXCEPTION = timedelta(days=366)
_MAX_EXCEPTION_WINDOWS = 366 * 24  # occurrences of a recurring exception in a year: hourly at most
_LOCAL = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?$")
_ZONED = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$")


class ShiftRow(NamedTuple):
    """One stored availability row. `exception` indexes the plan's exceptions (the caller maps it to
    the exception's id); `start`/`end` are UTC instants."""

    shift_date: date
    start: datetime
    end: datetime
    shift_code: str
    crew: str | None
    status: str
    capacity_pct: int
    exception: int | None
    note: str | None


# ------------------------------------------------------------------------------------- exceptions


@dataclass(frozen=True)
class ExceptionRule:
    """A maintenance window, breakdown, shutdown...: one window, or one per RRULE occurrence, each as
    long as the first (`starts_at` to `ends_at`). The rule is read in `zone` (wall-clock occurrences)."""

    kind: str
    impact: str
    capacity_pct: int
    starts_at: datetime
    ends_at: datetime
    rrule: str | None = None
    zone: str = DEFAULT_ZONE
    description: str = ""

    def windows(self, lo: datetime, hi: datetime) -> list[tuple[datetime, datetime]]:
        """Occurrences overlapping [lo, hi), as UTC instants."""
        length = self.ends_at - self.starts_at
        if self.rrule is None:
            return [(self.starts_at, self.ends_at)] if self.starts_at < hi and self.ends_at > lo else []
        schedule = _recurrence(_block(self.rrule, self.starts_at, self.zone), self.zone)
        return [(s, s + length) for s in schedule.between(lo - length, hi)]


def parse_exception(doc: Mapping[str, Any], zone: str, problems: Problems, path: str) -> ExceptionRule | None:
    """Check an exception document (its resource already resolved to `zone`). Times without an
    offset are wall-clock times in that zone."""
    before = problems.count
    known = {"resource", "kind", "impact", "capacity_pct", "start", "end", "rrule", "description"}
    for key in doc:
        if key not in known:
            problems.add(path, str(key), f"unknown field; an exception has {', '.join(sorted(known))}")
    kind = doc.get("kind")
    if kind not in EXCEPTION_KINDS:
        problems.add(path, "kind", f"kind must be one of {', '.join(EXCEPTION_KINDS)}, not {kind!r}")
    impact = doc.get("impact", "no_operation")
    capacity = doc.get("capacity_pct")
    if impact == "no_operation":
        if capacity not in (None, 0):
            problems.add(path, "capacity_pct", "capacity_pct belongs to impact 'reduced' (no_operation is 0)")
        capacity = 0
    elif impact == "reduced":
        if isinstance(capacity, bool) or not isinstance(capacity, int) or not 1 <= capacity <= 99:
            problems.add(
                path, "capacity_pct", "impact 'reduced' needs capacity_pct, a whole number from 1 to 99"
            )
    else:
        problems.add(path, "impact", f"impact must be one of {', '.join(IMPACTS)}, not {impact!r}")
    start = _instant(doc.get("start"), zone, problems, path, "start")
    end = _instant(doc.get("end"), zone, problems, path, "end")
    if start is not None and end is not None:
        if end <= start:
            problems.add(
                path, "end", f"the exception ends ({doc.get('end')}) before it starts ({doc.get('start')})"
            )
        elif end - start > _MAX_EXCEPTION:
            problems.add(path, "end", "an exception lasts at most 366 days (split longer ones)")
    description = doc.get("description", "")
    if not isinstance(description, str) or len(description) > 500:
        problems.add(path, "description", "description must be text of at most 500 characters")
    rule = doc.get("rrule")
    if rule is not None:
        if not isinstance(rule, str) or not rule.strip():
            problems.add(path, "rrule", "rrule is an RFC 5545 rule such as FREQ=MONTHLY;BYDAY=1MO")
            rule = None
        elif "DTSTART" in rule.upper():
            problems.add(path, "rrule", "the first occurrence is the exception's start; leave DTSTART out")
            rule = None
        elif start is not None:
            try:
                why = _too_dense(_recurrence(_block(rule, start, zone), zone), start)
            except InvalidSchedule as e:
                why = e.message
            if why is not None:
                problems.add(path, "rrule", why)
    if problems.count > before:
        return None
    assert start is not None and end is not None and isinstance(capacity, int) and isinstance(kind, str)
    return ExceptionRule(
        kind, impact, capacity, start, end, rule.strip() if rule else None, zone, description
    )


def _too_dense(schedule: Any, start: datetime) -> str | None:
    """Why an exception's rule is refused, or None. Every occurrence is a window each generation cuts
    shifts with: a rule recurring every second or minute would make millions of them (and hold the
    worker's memory, not just fail its run). At most hourly on average over its first year, and
    expandable within a preview's budget."""
    try:
        if recurs_more_than(schedule, _MAX_EXCEPTION_WINDOWS, start, start + timedelta(days=366)):
            return f"an exception recurs at most {_MAX_EXCEPTION_WINDOWS} times a year (hourly)"
    except ScheduleTooCostly:
        return f"the rule is too costly to expand: {COSTLY_BECAUSE}"
    return None


def _instant(value: Any, zone: str, problems: Problems, path: str, name: str) -> datetime | None:
    parsed: datetime | None = value if isinstance(value, datetime) else None
    if isinstance(value, str) and (_LOCAL.match(value) or _ZONED.match(value)):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
    if parsed is not None:
        if not FIRST_DATE <= parsed.date() <= LAST_DATE:  # (year 1 in UTC+2 is before year 1 in UTC)
            problems.add(path, name, f"dates are from {FIRST_DATE} to {LAST_DATE}, not {parsed.date()}")
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=ZoneInfo(zone))
        return parsed.astimezone(UTC)
    problems.add(
        path, name, f"expected a date-time such as 2026-03-02T06:00 (local) or with an offset, got {value!r}"
    )
    return None


def _block(rule: str, start: datetime, zone: str) -> str:
    local = start.astimezone(ZoneInfo(zone))
    lines = [line.strip() for line in rule.strip().splitlines() if line.strip()]
    if not any(":" in line for line in lines):
        lines = [f"RRULE:{lines[0]}", *lines[1:]]
    return "\n".join([f"DTSTART;TZID={zone}:{local:%Y%m%dT%H%M%S}", *lines])


@lru_cache(maxsize=1024)
def _recurrence(block: str, zone: str) -> Any:
    return parse_schedule("rrule", block, zone, now=datetime(2000, 1, 1, tzinfo=UTC))


# ---------------------------------------------------------------------------- shifts of a plan


@dataclass(frozen=True)
class PatternSpan:
    """From `first` to `last` (both included) the resource follows `pattern`, rotations counted from
    `anchor`."""

    first: date
    last: date
    pattern: Pattern
    anchor: date


@dataclass(frozen=True)
class ResourcePlan:
    """Everything that decides a resource's availability. Equal plans give equal shifts: resources
    that inherit the same pattern, zone, calendar and exception rules share one computation."""

    zone: str
    spans: tuple[PatternSpan, ...]
    calendar: HolidayCalendar | None = None
    exceptions: tuple[ExceptionRule, ...] = ()


def compute_shifts(plan: ResourcePlan, start: date, end: date) -> list[ShiftRow]:
    """The plan's shifts on the dates `start`..`end` (both included), in time order."""
    zone = ZoneInfo(plan.zone)
    holidays = plan.calendar.dates(start, end) if plan.calendar is not None else {}
    cutter = _Cutter(plan.exceptions, start, end)
    rows: list[ShiftRow] = []
    one_day = timedelta(days=1)
    for span in plan.spans:
        day, last = max(span.first, start), min(span.last, end)
        while day <= last:
            holiday = holidays.get(day)
            for s in span.pattern.shifts_on(day, span.anchor):
                a = datetime.combine(day, s.start, zone).astimezone(UTC)
                b = datetime.combine(day + one_day if s.next_day else day, s.end, zone).astimezone(UTC)
                if b <= a:
                    continue  # the whole shift lies in a spring-forward gap
                if holiday is not None:
                    rows.append(ShiftRow(day, a, b, s.shift_code, s.crew, HOLIDAY, 0, None, holiday))
                else:
                    cutter.cut(rows, day, a, b, s.shift_code, s.crew)
            day += one_day
    return rows


class _Cutter:
    """Exception windows over the range, and the cutting of shifts by them."""

    def __init__(self, exceptions: Sequence[ExceptionRule], start: date, end: date) -> None:
        self.exceptions = exceptions
        # Shifts of the range start no earlier than its first local midnight (no zone is more than
        # 14 h off UTC) and end within a day after its last date.
        lo = datetime.combine(start, time(), UTC) - timedelta(days=1)
        hi = datetime.combine(end, time(), UTC) + timedelta(days=3)
        windows = sorted((a, b, i) for i, rule in enumerate(exceptions) for a, b in rule.windows(lo, hi))
        self.windows = windows
        self.starts = [w[0] for w in windows]
        self.longest = max((b - a for a, b, _ in windows), default=timedelta(0))

    def cut(
        self, rows: list[ShiftRow], day: date, a: datetime, b: datetime, code: str, crew: str | None
    ) -> None:
        if not self.windows:
            rows.append(ShiftRow(day, a, b, code, crew, AVAILABLE, 100, None, None))
            return
        lo, hi = bisect_left(self.starts, a - self.longest), bisect_left(self.starts, b)
        hits = [w for w in self.windows[lo:hi] if w[1] > a]
        if not hits:
            rows.append(ShiftRow(day, a, b, code, crew, AVAILABLE, 100, None, None))
            return
        points = sorted({a, b, *(max(a, w[0]) for w in hits), *(min(b, w[1]) for w in hits)})
        pieces: list[list[Any]] = []  # [start, end, exception index or None]
        for p, q in pairwise(points):
            covering = [w[2] for w in hits if w[0] <= p and w[1] >= q]
            # The lowest capacity wins; between equals, the earlier exception.
            which = min(covering, key=lambda i: (self.exceptions[i].capacity_pct, i)) if covering else None
            if pieces and pieces[-1][2] == which:
                pieces[-1][1] = q
            else:
                pieces.append([p, q, which])
        for p, q, which in pieces:
            if which is None:
                rows.append(ShiftRow(day, p, q, code, crew, AVAILABLE, 100, None, None))
            else:
                rule = self.exceptions[which]
                rows.append(
                    ShiftRow(
                        day, p, q, code, crew, rule.kind, rule.capacity_pct, which, rule.description or None
                    )
                )


# ----------------------------------------------------------------------------------- the plant


@dataclass(frozen=True)
class Node:
    """A resource as generation needs it."""

    id: str
    code: str
    level: str
    parent_id: str | None = None
    timezone: str | None = None
    requires_scheduling: bool = False
    calendar: str | None = None  # holiday calendar name attached here


@dataclass(frozen=True)
class Assignment:
    resource_id: str
    pattern: str
    effective_from: date
    effective_to: date | None = None
    anchor: date | None = None
    order: int = 0  # later-created wins between assignments with the same effective_from


@dataclass
class Plant:
    """One agent's plant as data: the resource tree with its assignments, calendars, exceptions and
    custom patterns. Answers inheritance questions; memoised per instance."""

    nodes: Mapping[str, Node]
    assignments: Sequence[Assignment] = ()
    calendars: Mapping[str, HolidayCalendar] = field(default_factory=dict)
    exceptions: Sequence[tuple[str, str, ExceptionRule]] = ()  # (exception id, resource id, rule)
    patterns: Mapping[str, Pattern] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._children: dict[str | None, list[str]] = {}
        for node in self.nodes.values():
            self._children.setdefault(node.parent_id, []).append(node.id)
        self._own: dict[str, list[Assignment]] = {}
        for a in sorted(self.assignments, key=lambda a: (a.effective_from, a.order)):
            self._own.setdefault(a.resource_id, []).append(a)
        self._exceptions: dict[str, list[tuple[str, ExceptionRule]]] = {}
        for exception_id, resource_id, rule in self.exceptions:
            self._exceptions.setdefault(resource_id, []).append((exception_id, rule))
        self._timelines: dict[tuple[str, date, date], list[tuple[date, date, Assignment]]] = {}

    def pattern(self, name: str) -> Pattern | None:
        return self.patterns.get(name) or built_in(name)

    def ancestors(self, resource_id: str) -> Iterator[Node]:
        """The resource itself, then its parent, up to the root."""
        seen: set[str] = set()
        node: Node | None = self.nodes[resource_id]
        while node is not None and node.id not in seen:
            seen.add(node.id)
            yield node
            node = self.nodes.get(node.parent_id) if node.parent_id else None

    def zone(self, resource_id: str) -> str:
        return next((n.timezone for n in self.ancestors(resource_id) if n.timezone), DEFAULT_ZONE)

    def calendar(self, resource_id: str) -> HolidayCalendar | None:
        name = next((n.calendar for n in self.ancestors(resource_id) if n.calendar), None)
        return self.calendars.get(name) if name else None

    def subtree(self, resource_id: str) -> Iterator[str]:
        stack = [resource_id]
        while stack:
            current = stack.pop()
            yield current
            stack.extend(self._children.get(current, ()))

    def schedulable(self, roots: Iterable[str] | None = None) -> list[str]:
        """Resources to generate: those under `roots` (every resource when None) that require
        scheduling, sorted by id (the order rows are written in)."""
        ids = set(self.nodes) if roots is None else {r for root in roots for r in self.subtree(root)}
        return sorted(r for r in ids if self.nodes[r].requires_scheduling)

    def plan(self, resource_id: str, start: date, end: date) -> tuple[ResourcePlan, tuple[str, ...]]:
        """The resource's plan for `start`..`end`, and the ids of the exceptions its rows refer to
        (by position in plan.exceptions)."""
        spans = []
        for first, last, a in self._timeline(resource_id, start, end):
            pattern = self.pattern(a.pattern)
            if pattern is None:
                code = self.nodes[resource_id].code
                raise InvalidPlant(
                    f"resource {code!r} follows pattern {a.pattern!r}, which does not exist",
                    details={"resource_id": resource_id, "pattern": a.pattern},
                )
            spans.append(PatternSpan(first, last, pattern, a.anchor or a.effective_from))
        exceptions: list[tuple[datetime, str, ExceptionRule]] = []
        for node in self.ancestors(resource_id):
            zone = self.zone(node.id)
            for exception_id, rule in self._exceptions.get(node.id, ()):
                exceptions.append((rule.starts_at, exception_id, _in_zone(rule, zone)))
        exceptions.sort(key=lambda e: (e[0], e[1]))
        plan = ResourcePlan(
            zone=self.zone(resource_id),
            spans=tuple(spans),
            calendar=self.calendar(resource_id),
            exceptions=tuple(e[2] for e in exceptions),
        )
        return plan, tuple(e[1] for e in exceptions)

    def _timeline(self, resource_id: str, start: date, end: date) -> list[tuple[date, date, Assignment]]:
        key = (resource_id, start, end)
        cached = self._timelines.get(key)
        if cached is not None:
            return cached
        own: list[tuple[date, date, Assignment]] = []
        for a in self._own.get(resource_id, ()):
            first, last = max(a.effective_from, start), min(a.effective_to or end, end)
            if first <= last:
                own = _overlay([(first, last, a)], own)  # a later effective_from wins
        parent = self.nodes[resource_id].parent_id
        inherited = self._timeline(parent, start, end) if parent is not None and parent in self.nodes else []
        timeline = _overlay(own, inherited)
        self._timelines[key] = timeline
        return timeline


def _in_zone(rule: ExceptionRule, zone: str) -> ExceptionRule:
    return rule if rule.zone == zone else replace(rule, zone=zone)


def _overlay(
    top: list[tuple[date, date, Assignment]], bottom: list[tuple[date, date, Assignment]]
) -> list[tuple[date, date, Assignment]]:
    """`top`'s spans, and `bottom`'s where `top` has none."""
    one = timedelta(days=1)
    out = list(top)
    for lo, hi, a in bottom:
        pieces = [(lo, hi)]
        for t_lo, t_hi, _ in top:
            rest = []
            for p_lo, p_hi in pieces:
                if t_hi < p_lo or t_lo > p_hi:
                    rest.append((p_lo, p_hi))
                    continue
                if p_lo < t_lo:
                    rest.append((p_lo, t_lo - one))
                if p_hi > t_hi:
                    rest.append((t_hi + one, p_hi))
            pieces = rest
        out.extend((p_lo, p_hi, a) for p_lo, p_hi in pieces)
    return sorted(out, key=lambda s: s[0])


# ---------------------------------------------------------------------------------- previewing


def check_zone(value: Any) -> str | None:
    """The message for a value that is not an IANA time zone name; None when it is one."""
    if not isinstance(value, str) or not value.strip() or len(value) > 100:
        return "a time zone is an IANA name such as 'Africa/Johannesburg' or 'UTC'"
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {value!r}: use an IANA name such as 'Africa/Johannesburg' or 'UTC'"
    return None


def range_problem(start: date, end: date | None = None, *, days: int | None = None) -> str | None:
    """What is wrong with a range of dates (`end` or a number of `days`, both included), or None: the
    one rule for generations, queries, previews and holiday lists."""
    if not FIRST_DATE <= start <= LAST_DATE:
        return f"dates are from {FIRST_DATE} to {LAST_DATE}, not {start}"
    if days is not None:
        if not 1 <= days <= MAX_DAYS:
            return f"days is from 1 to {MAX_DAYS}"
        end = start + timedelta(days=days - 1)
    assert end is not None
    if end < start:
        return f"end ({end}) is before start ({start})"
    if end > LAST_DATE:
        return f"dates are from {FIRST_DATE} to {LAST_DATE}, not {end}"
    if (end - start).days + 1 > MAX_DAYS:
        return f"at most {MAX_DAYS} days at once"
    return None


def checked_preview(
    pattern: Pattern,
    timezone: str,
    start: date,
    days: int,
    *,
    holidays: str | None = None,
    observed: str = "both",
    anchor: date | None = None,
    crew: str | None = None,
) -> dict[str, Any]:
    """`preview` after checking its arguments as a person typed them (`ordo availability preview`,
    GET /patterns/{name}/preview): the zone, the holiday region (`CC` or `CC-SUB`), the crew. Every
    problem is reported at once (InvalidPlant naming the argument)."""
    problems = Problems()
    if message := check_zone(timezone):
        problems.add("arguments", "timezone", message)
    calendar = None
    if holidays:
        country, subdivision = parse_region(holidays)
        error = region_error(country, subdivision)
        if error is not None:
            problems.add("arguments", "holidays", error[1])
        else:
            calendar = HolidayCalendar("preview", country, subdivision, observed)
    if observed not in OBSERVED_SETTINGS:
        problems.add("arguments", "observed", f"observed is one of {', '.join(OBSERVED_SETTINGS)}")
    if crew is not None and crew not in pattern.crews:
        known = ", ".join(pattern.crews) or "none"
        problems.add("arguments", "crew", f"pattern {pattern.name!r} has no crew {crew!r} (crews: {known})")
    if why := range_problem(start, days=days):
        problems.add("arguments", "days" if "days" in why else "start", why)
    problems.raise_if_any("the preview", storing=False)
    return preview(pattern, timezone, start, days, calendar=calendar, anchor=anchor, crew=crew)


def preview(
    pattern: Pattern,
    zone: str,
    start: date,
    days: int,
    *,
    calendar: HolidayCalendar | None = None,
    anchor: date | None = None,
    crew: str | None = None,
) -> dict[str, Any]:
    """What a pattern gives, without storing anything: `{"days": [{"date", "planned_hours",
    "holiday", "shifts": [{"start", "end", "shift_code", "crew"}]}], "total_hours"}`. Holidays stop
    every shift of their date; times are ISO 8601 with the zone's offset. `crew` shows that crew's
    roster instead of the resource's shifts."""
    if crew is not None:
        pattern = pattern.for_crew(crew)
    end = start + timedelta(days=days - 1)
    plan = ResourcePlan(zone, (PatternSpan(start, end, pattern, anchor or start),), calendar)
    tz = ZoneInfo(zone)
    holidays = calendar.dates(start, end) if calendar is not None else {}
    by_day: dict[date, list[ShiftRow]] = {}
    for row in compute_shifts(plan, start, end):
        if row.status == AVAILABLE:
            by_day.setdefault(row.shift_date, []).append(row)
    out_days = []
    total = 0.0
    for i in range(days):
        day = start + timedelta(days=i)
        shifts = by_day.get(day, [])
        hours = sum((r.end - r.start).total_seconds() for r in shifts) / 3600
        total += hours
        out_days.append(
            {
                "date": day.isoformat(),
                "planned_hours": round(hours, 4),
                "holiday": holidays.get(day),
                "shifts": [
                    {
                        "start": r.start.astimezone(tz).isoformat(),
                        "end": r.end.astimezone(tz).isoformat(),
                        "shift_code": r.shift_code,
                        "crew": r.crew,
                    }
                    for r in shifts
                ],
            }
        )
    return {"days": out_days, "total_hours": round(total, 4)}


# ------------------------------------------------------------------------- solver calendars


def calendars_from_rows(
    codes: Iterable[str], rows: Iterable[Mapping[str, Any]], *, include_reduced: bool = False
) -> dict[str, list[dict[str, str]]]:
    """Stored availability as `solver.solve` calendars: `{code: [{"start", "end"}, ...]}`, the open
    windows of each resource (touching rows merged), UTC ISO 8601. A resource in `codes` without an
    open row gets an empty calendar (never open), not none (always open). Rows need `code`,
    `starts_at`, `ends_at`, `status`, `capacity_pct`; `available` rows open a window, and with
    `include_reduced` so do exception rows that leave some capacity."""
    windows: dict[str, list[list[datetime]]] = {code: [] for code in codes}
    for row in sorted(rows, key=lambda r: (r["code"], r["starts_at"])):
        opens = row["status"] == AVAILABLE or (
            include_reduced and row["status"] in EXCEPTION_KINDS and row["capacity_pct"] > 0
        )
        if not opens:
            continue
        spans = windows.setdefault(row["code"], [])
        if spans and spans[-1][1] >= row["starts_at"]:
            spans[-1][1] = max(spans[-1][1], row["ends_at"])
        else:
            spans.append([row["starts_at"], row["ends_at"]])
    return {code: [{"start": _utc(a), "end": _utc(b)} for a, b in spans] for code, spans in windows.items()}


def _utc(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")
