"""Operating patterns: when a resource is planned to run, as shifts of local wall-clock time.

Pure: definitions in, shifts of a date out. Turning wall-clock shifts into real instants in a zone
(and DST) is `engine.tools.availability`'s job.

Two kinds of pattern, written as JSON documents (the built-ins below are written the same way and
pass the same checks):

* **weekly**: rules per weekday, `{"days": "mon-fri", "start": "06:00", "end": "14:00",
  "shift_code": "D"}`. An end at or before the start is an overnight shift that belongs to the day it
  starts (`22:00`-`06:00`); `24:00` ends at the next midnight, so `00:00`-`24:00` is a whole day.
* **rotation**: a cycle of `cycle_days` days counted from an anchor date (the assignment's, or the
  preview's `--anchor`); shifts are defined once (`{"D": {"start": "06:00", "end": "18:00"}}`) and each
  crew's roster is a string with one mark per cycle day: a one-letter shift code, or `-` for a day
  off (a list of codes and nulls does the same for longer codes). A resource runs a shift on a day
  when any crew works it; the shift names its crew (`A`, or `A+B` if two crews share it), and each
  crew's own roster is available too (`Pattern.crew_shift_on`).

Rules that would run a resource twice at the same moment are refused: two weekly rules whose times
overlap (an overnight shift included, Sunday night into Monday too), or two rotation shifts that
overlap. Built-in rotations use 12-hour shifts 06:00-18:00 / 18:00-06:00 or 8-hour shifts
06:00-14:00 / 14:00-22:00 / 22:00-06:00, crews A-D, each crew's roster the first one moved on by
a week per crew.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time
from types import MappingProxyType
from typing import Any

from store.problems import Problems

__all__ = [
    "BUILT_IN_NAMES",
    "WEEKDAYS",
    "DayShift",
    "Pattern",
    "built_in",
    "built_in_definitions",
    "parse_pattern",
]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES = {
    **{d: i for i, d in enumerate(WEEKDAYS)},
    **{
        n: i
        for i, n in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))
    },
}
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,19}$")
_TIME = re.compile(r"^(\d{2}):(\d{2})$")
_DAY_MINUTES = 1440
_WEEK_MINUTES = 7 * _DAY_MINUTES
_OFF = "-"
MAX_CYCLE_DAYS = 366


@dataclass(frozen=True, slots=True)
class DayShift:
    """One shift of one day in wall-clock terms: from `start` on the day to `end` on the day, or on
    the next day when `next_day`."""

    shift_code: str
    start: time
    end: time
    next_day: bool
    crew: str | None = None

    @property
    def minutes(self) -> int:
        """Nominal length (a DST day changes the real length; availability computes that)."""
        span = _minutes(self.end) - _minutes(self.start)
        return span + _DAY_MINUTES if self.next_day else span


@dataclass(frozen=True)
class Pattern:
    """A parsed pattern. Hashable: generation caches computed shifts by pattern."""

    name: str
    kind: str  # "weekly" | "rotation"
    cycle_days: int  # 7 for weekly patterns
    # What the resource runs on each day of the cycle (weekly: index 0 = Monday), crews merged.
    days: tuple[tuple[DayShift, ...], ...]
    # Each crew's own shift on each day of the cycle (rotations; weekly rules with a crew).
    rosters: tuple[tuple[str, tuple[DayShift | None, ...]], ...] = ()
    description: str = ""
    definition: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def shifts_on(self, day: date, anchor: date | None = None) -> tuple[DayShift, ...]:
        """The shifts that start on `day`. Rotations count cycle days from `anchor`."""
        return self.days[self._index(day, anchor)]

    def crew_shift_on(self, crew: str, day: date, anchor: date | None = None) -> DayShift | None:
        """`crew`'s shift on `day` (None: a day off). KeyError for a crew the pattern does not have."""
        roster = dict(self.rosters)[crew]
        return roster[self._index(day, anchor)]

    @property
    def crews(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.rosters)

    @property
    def weekly_hours(self) -> float:
        """Planned hours in an average week (nominal, no DST), the resource's view."""
        minutes = sum(s.minutes for day in self.days for s in day)
        return round(minutes * 7 / self.cycle_days / 60, 4)

    def crew_weekly_hours(self, crew: str) -> float:
        roster = dict(self.rosters)[crew]
        minutes = sum(s.minutes for s in roster if s is not None)
        return round(minutes * 7 / self.cycle_days / 60, 4)

    def for_crew(self, crew: str) -> Pattern:
        """The pattern as one crew lives it: only the shifts that crew works (its roster).
        KeyError for a crew the pattern does not have."""
        roster = dict(self.rosters)[crew]
        days = tuple((s,) if s is not None else () for s in roster)
        return Pattern(f"{self.name}/{crew}", self.kind, self.cycle_days, days, ((crew, roster),))

    def describe(self) -> dict[str, Any]:
        """The public form: the definition plus derived figures."""
        out = dict(self.definition)
        out["weekly_hours"] = self.weekly_hours
        if self.rosters:
            out["crew_weekly_hours"] = {crew: self.crew_weekly_hours(crew) for crew in self.crews}
        return out

    def _index(self, day: date, anchor: date | None) -> int:
        if self.kind == "weekly":
            return day.weekday()
        return (day - (anchor or day)).days % self.cycle_days


# --------------------------------------------------------------------------------------- parsing


def parse_pattern(doc: Any, problems: Problems, path: str, *, name: str | None = None) -> Pattern | None:
    """Check a pattern document; every problem goes to `problems` (path + field). None if invalid.
    `name` given: the name comes from elsewhere (the URL) and the document need not repeat it."""
    if not isinstance(doc, Mapping):
        problems.add(path, None, "a pattern is an object with kind and rules (weekly) or shifts (rotation)")
        return None
    before = problems.count
    known = {"name", "description", "kind", "rules", "cycle_days", "shifts", "crews"}
    for key in doc:
        if key not in known:
            problems.add(path, str(key), f"unknown field; a pattern has {', '.join(sorted(known))}")
    if name is None or "name" in doc:
        name = problems.name(doc.get("name"), path, expected=name)
    description = doc.get("description", "")
    if not isinstance(description, str) or len(description) > 2000:
        problems.add(path, "description", "description must be text of at most 2000 characters")
    kind = doc.get("kind")
    pattern: Pattern | None = None
    if kind == "weekly":
        pattern = _parse_weekly(doc, problems, path, name or "")
    elif kind == "rotation":
        pattern = _parse_rotation(doc, problems, path, name or "")
    else:
        problems.add(path, "kind", f"kind must be 'weekly' or 'rotation', not {kind!r}")
    if problems.count > before or pattern is None or name is None:
        return None
    definition = {k: doc[k] for k in ("kind", "rules", "cycle_days", "shifts", "crews") if k in doc}
    return Pattern(
        name=name,
        kind=pattern.kind,
        cycle_days=pattern.cycle_days,
        days=pattern.days,
        rosters=pattern.rosters,
        description=description if isinstance(description, str) else "",
        definition=MappingProxyType({"name": name, "description": description, **definition}),
    )


def _parse_weekly(doc: Mapping[str, Any], problems: Problems, path: str, name: str) -> Pattern | None:
    for key in ("cycle_days", "shifts", "crews"):
        if key in doc:
            problems.add(path, key, f"{key} belongs to rotations; a weekly pattern has rules")
    rules = doc.get("rules")
    if not isinstance(rules, list) or not rules:
        problems.add(path, "rules", "a weekly pattern needs a non-empty list of rules")
        return None
    before = problems.count
    days: list[list[DayShift]] = [[] for _ in WEEKDAYS]
    spans: list[tuple[int, int, int]] = []  # (start minute in the week, end, rule index)
    for i, rule in enumerate(rules):
        where = f"rules[{i}]"
        if not isinstance(rule, Mapping):
            problems.add(path, where, "a rule is an object with days, start, end and shift_code")
            continue
        for key in rule:
            if key not in ("days", "start", "end", "shift_code", "crew"):
                problems.add(
                    path, f"{where}.{key}", "unknown field; a rule has days, start, end, shift_code, crew"
                )
        weekdays = _weekdays(rule.get("days"), problems, path, f"{where}.days")
        shift = _shift(
            rule, problems, path, where, rule.get("shift_code"), rule.get("crew"), f"{where}.shift_code"
        )
        if weekdays is None or shift is None:
            continue
        for d in weekdays:
            days[d].append(shift)
            lo = d * _DAY_MINUTES + _minutes(shift.start)
            spans.append((lo, lo + shift.minutes, i))
    _check_overlaps(spans, _WEEK_MINUTES, problems, path, lambda i: f"rules[{i}]")
    if problems.count > before:
        return None
    rosters = _weekly_rosters(days)
    return Pattern(name, "weekly", 7, tuple(_sorted(d) for d in days), rosters)


def _weekly_rosters(days: list[list[DayShift]]) -> tuple[tuple[str, tuple[DayShift | None, ...]], ...]:
    crews = sorted({s.crew for day in days for s in day if s.crew})
    out = []
    for crew in crews:
        roster = tuple(next((s for s in day if s.crew == crew), None) for day in days)
        out.append((crew, roster))
    return tuple(out)


def _parse_rotation(doc: Mapping[str, Any], problems: Problems, path: str, name: str) -> Pattern | None:
    before = problems.count
    if "rules" in doc:
        problems.add(path, "rules", "rules belong to weekly patterns; a rotation has shifts and crews")
    cycle = doc.get("cycle_days")
    if isinstance(cycle, bool) or not isinstance(cycle, int) or not 1 <= cycle <= MAX_CYCLE_DAYS:
        problems.add(path, "cycle_days", f"cycle_days must be a whole number from 1 to {MAX_CYCLE_DAYS}")
        return None
    raw_shifts = doc.get("shifts")
    if not isinstance(raw_shifts, Mapping) or not raw_shifts:
        problems.add(
            path,
            "shifts",
            'shifts maps each shift code to its times: {"D": {"start": "06:00", "end": "18:00"}}',
        )
        return None
    shifts: dict[str, DayShift] = {}
    for code, spec in raw_shifts.items():
        where = f"shifts.{code}"
        if not isinstance(spec, Mapping):
            problems.add(path, where, "a shift is an object with start and end")
            continue
        for key in spec:
            if key not in ("start", "end"):
                problems.add(path, f"{where}.{key}", "unknown field; a rotation shift has start and end")
        shift = _shift(spec, problems, path, where, code, None, where)
        if shift is not None:
            shifts[code] = shift
    # Two shifts of a rotation may be worked on the same day by different crews: they must not overlap,
    # the previous day's overnight shift included.
    spans = [
        (day * _DAY_MINUTES + _minutes(s.start), day * _DAY_MINUTES + _minutes(s.start) + s.minutes, code)
        for code, s in shifts.items()
        for day in (0, 1)
    ]
    _check_overlaps(spans, None, problems, path, lambda code: f"shifts.{code}")
    raw_crews = doc.get("crews")
    if not isinstance(raw_crews, Mapping) or not raw_crews:
        problems.add(path, "crews", 'crews maps each crew to its roster: {"A": "DDNN----"}')
        return None
    rosters: list[tuple[str, tuple[DayShift | None, ...]]] = []
    for crew, marks in raw_crews.items():
        where = f"crews.{crew}"
        if not isinstance(crew, str) or not _CODE.match(crew):
            problems.add(path, where, "a crew name is 1-20 letters, digits, _ or -")
            continue
        roster = _roster(marks, cycle, shifts, problems, path, where)
        if roster is not None:
            rosters.append((crew, tuple(None if c is None else _with_crew(shifts[c], crew) for c in roster)))
    if problems.count > before:
        return None
    days = []
    for i in range(cycle):
        worked: dict[str, list[str]] = {}
        for crew, roster in rosters:
            s = roster[i]
            if s is not None:
                worked.setdefault(s.shift_code, []).append(crew)
        days.append(_sorted([_with_crew(shifts[code], "+".join(crews)) for code, crews in worked.items()]))
    return Pattern(name, "rotation", cycle, tuple(days), tuple(rosters))


def _roster(
    marks: Any, cycle: int, shifts: Mapping[str, DayShift], problems: Problems, path: str, where: str
) -> list[str | None] | None:
    if isinstance(marks, str):
        items: list[Any] = [None if m == _OFF else m for m in marks]
    elif isinstance(marks, list):
        items = list(marks)
    else:
        problems.add(path, where, "a roster is a string of shift codes and '-' (one per cycle day) or a list")
        return None
    if len(items) != cycle:
        problems.add(path, where, f"the roster has {len(items)} days; the cycle has {cycle}")
        return None
    for day, code in enumerate(items):
        if code is not None and code not in shifts:
            known = ", ".join(sorted(shifts))
            problems.add(
                path, where, f"day {day + 1}: {code!r} is not a shift of this rotation ({known}, or '-')"
            )
            return None
    return items


def _shift(
    spec: Mapping[str, Any], problems: Problems, path: str, where: str, code: Any, crew: Any, code_field: str
) -> DayShift | None:
    ok = True
    if not isinstance(code, str) or not _CODE.match(code):
        problems.add(path, code_field, "a shift code is 1-20 letters, digits, _ or - (e.g. D, A, N)")
        ok = False
    if crew is not None and (not isinstance(crew, str) or not _CODE.match(crew)):
        problems.add(path, f"{where}.crew", "a crew is 1-20 letters, digits, _ or -")
        ok = False
    start = _clock(spec.get("start"), problems, path, f"{where}.start", allow_24=False)
    end = _clock(spec.get("end"), problems, path, f"{where}.end", allow_24=True)
    if not ok or start is None or end is None:
        return None
    end_time = time(0) if end == _DAY_MINUTES else time(end // 60, end % 60)
    next_day = end == _DAY_MINUTES or end <= start
    return DayShift(code, time(start // 60, start % 60), end_time, next_day, crew)


def _clock(value: Any, problems: Problems, path: str, where: str, *, allow_24: bool) -> int | None:
    """Minutes after midnight of an `HH:MM` time (1440 for `24:00` where allowed)."""
    match = _TIME.match(value) if isinstance(value, str) else None
    if match:
        hour, minute = int(match[1]), int(match[2])
        if allow_24 and (hour, minute) == (24, 0):
            return _DAY_MINUTES
        if hour < 24 and minute < 60:
            return hour * 60 + minute
    problems.add(path, where, f"expected a time HH:MM{' (or 24:00)' if allow_24 else ''}, got {value!r}")
    return None


def _weekdays(value: Any, problems: Problems, path: str, where: str) -> list[int] | None:
    """`["mon", "tue"]`, `"mon-fri"`, `"mon,wed,fri"`, `"daily"`."""
    parts: list[Any]
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
    elif isinstance(value, list) and value:
        parts = value
    else:
        problems.add(path, where, "days is a list of weekdays (mon ... sun) or text such as 'mon-fri'")
        return None
    out: list[int] = []
    for part in parts:
        if not isinstance(part, str):
            problems.add(path, where, f"{part!r} is not a weekday")
            return None
        text = part.strip().lower()
        if text in ("daily", "all", "every day"):
            out.extend(range(7))
            continue
        lo, sep, hi = text.partition("-")
        if lo not in _DAY_NAMES or (sep and hi not in _DAY_NAMES):
            problems.add(
                path,
                where,
                f"{part!r} is not a weekday (mon, tue, wed, thu, fri, sat, sun) or range (mon-fri)",
            )
            return None
        a, b = _DAY_NAMES[lo], _DAY_NAMES[hi] if sep else _DAY_NAMES[lo]
        out.extend(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    if len(set(out)) != len(out):
        problems.add(path, where, "a weekday is listed twice")
        return None
    return out


def _check_overlaps(
    spans: list[tuple[int, int, Any]], wrap: int | None, problems: Problems, path: str, label: Any
) -> None:
    """Refuse two spans (minute ranges, each with its owner) that share a minute. With `wrap`, a span
    past the end continues at 0: Sunday night runs into Monday morning."""
    pieces: list[tuple[int, int, Any]] = []
    for lo, hi, owner in spans:
        if wrap is not None and hi > wrap:
            pieces += [(lo, wrap, owner), (0, hi - wrap, owner)]
        else:
            pieces.append((lo, hi, owner))
    pieces.sort(key=lambda p: (p[0], p[1]))
    reported: set[frozenset[Any]] = set()
    reach, holder = -1, pieces[0][2] if pieces else None  # the furthest end so far, and whose span it is
    for lo, hi, owner in pieces:
        pair = frozenset((holder, owner))
        if lo < reach and holder != owner and pair not in reported:
            reported.add(pair)
            day = f" on {WEEKDAYS[(lo // _DAY_MINUTES) % 7]}" if wrap else ""
            first, second = sorted((holder, owner))  # type: ignore[type-var]  # the later rule reports
            problems.add(
                path,
                label(second),
                f"overlaps {label(first)} at {_hhmm(lo % _DAY_MINUTES)}{day}: a resource cannot run two "
                "shifts at once",
            )
        if hi > reach:
            reach, holder = hi, owner


def _with_crew(shift: DayShift, crew: str) -> DayShift:
    return DayShift(shift.shift_code, shift.start, shift.end, shift.next_day, crew)


def _sorted(shifts: list[DayShift]) -> tuple[DayShift, ...]:
    return tuple(sorted(shifts, key=lambda s: (_minutes(s.start), s.shift_code)))


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


# ------------------------------------------------------------------------------------- built-ins


def _rotated(base: str, crews: str, step: int = 7) -> dict[str, str]:
    """Each crew works `base` moved on by `step` days per crew: together they cover every shift."""
    return {crew: base[k * step :] + base[: k * step] for k, crew in enumerate(crews)}


_TWELVE = {"D": {"start": "06:00", "end": "18:00"}, "N": {"start": "18:00", "end": "06:00"}}
_EIGHT = {
    "D": {"start": "06:00", "end": "14:00"},
    "A": {"start": "14:00", "end": "22:00"},
    "N": {"start": "22:00", "end": "06:00"},
}
_PITMAN_DAYS = "DD--DDD--DD---"  # 2 on, 2 off, 3 on, 2 off, 2 on, 3 off

_BUILT_INS: dict[str, dict[str, Any]] = {
    "24x7": {
        "description": "Around the clock, every day: one 24-hour shift per day (168 h a week).",
        "kind": "weekly",
        "rules": [{"days": "mon-sun", "start": "00:00", "end": "24:00", "shift_code": "C"}],
    },
    "two_shift": {
        "description": "Monday to Friday, 06:00-14:00 (D) and 14:00-22:00 (A): 80 h a week.",
        "kind": "weekly",
        "rules": [
            {"days": "mon-fri", "start": "06:00", "end": "14:00", "shift_code": "D"},
            {"days": "mon-fri", "start": "14:00", "end": "22:00", "shift_code": "A"},
        ],
    },
    "day_only": {
        "description": "Monday to Friday, 08:00-17:00 (D): 45 h a week.",
        "kind": "weekly",
        "rules": [{"days": "mon-fri", "start": "08:00", "end": "17:00", "shift_code": "D"}],
    },
    "extended": {
        "description": "Monday to Saturday, 06:00-02:00 in shifts D 06-14, A 14-22, N 22-02: 120 h a week.",
        "kind": "weekly",
        "rules": [
            {"days": "mon-sat", "start": "06:00", "end": "14:00", "shift_code": "D"},
            {"days": "mon-sat", "start": "14:00", "end": "22:00", "shift_code": "A"},
            {"days": "mon-sat", "start": "22:00", "end": "02:00", "shift_code": "N"},
        ],
    },
    "dupont": {
        "description": "DuPont: 4 crews, 12-hour shifts, 28-day cycle (4 nights, 3 off, 3 days, 1 off, "
        "3 nights, 3 off, 4 days, 7 off): 168 h a week, 42 h per crew.",
        "kind": "rotation",
        "cycle_days": 28,
        "shifts": _TWELVE,
        "crews": _rotated("NNNN---DDD-NNN---DDDD-------", "ABCD"),
    },
    "pitman": {
        "description": "Pitman (2-2-3): 4 crews, 12-hour shifts, 14-day cycle; A and B share the days, "
        "C and D the nights: 168 h a week, 42 h per crew.",
        "kind": "rotation",
        "cycle_days": 14,
        "shifts": _TWELVE,
        "crews": {
            **_rotated(_PITMAN_DAYS, "AB"),
            **{c: r.replace("D", "N") for c, r in _rotated(_PITMAN_DAYS, "CD").items()},
        },
    },
    "continental": {
        "description": "Continental: 4 crews, three 8-hour shifts, 28-day cycle (2 D, 2 A, 3 N, 2 off, "
        "2 D, 3 A, 2 N, 2 off, 3 D, 2 A, 2 N, 3 off): 168 h a week, 42 h per crew.",
        "kind": "rotation",
        "cycle_days": 28,
        "shifts": _EIGHT,
        "crews": _rotated("DDAANNN--DDAAANN--DDDAANN---", "ABCD"),
    },
}
BUILT_IN_NAMES = tuple(_BUILT_INS)


def _load_built_ins() -> dict[str, Pattern]:
    problems = Problems()
    out = {}
    for name, doc in _BUILT_INS.items():
        pattern = parse_pattern({"name": name, **doc}, problems, f"built-in {name}")
        problems.raise_if_any("a built-in pattern")  # a programming error, caught by the unit tests
        assert pattern is not None
        out[name] = pattern
    return out


_PATTERNS = _load_built_ins()


def built_in(name: str) -> Pattern | None:
    return _PATTERNS.get(name)


def built_in_definitions() -> list[Pattern]:
    return list(_PATTERNS.values())
