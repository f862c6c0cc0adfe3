"""The planning problem shared by solver.solve, schedule.validate and schedule.analyze.

Owns: reading a solver.solve input into integer minutes (times are ISO 8601 with an offset, or
integer minutes from `horizon_start`), checking ids and references (every machine, operator and
operation named exists, once), calendars (merged open windows and the breaks between them), setup
times between families, objective weights, reading a plan's assignments back into minutes, and the
per-job outcome of a plan (completion, lateness, tardiness, flow time).

Everything downstream works in integer minutes from the origin; `TimeBase.render` turns minutes
back into the representation the input used, so a plan reads like the problem it answers.
Bad input raises `Permanent` with a stable code; nothing here knows about OR-Tools.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, Literal

from store.errors import Permanent

__all__ = [
    "DEFAULT_TIME_LIMIT_S",
    "OBJECTIVE_TERMS",
    "Calendar",
    "Frozen",
    "Job",
    "JobOutcome",
    "Machine",
    "OpKey",
    "Operation",
    "Operator",
    "Placement",
    "Problem",
    "SetupTimes",
    "TimeBase",
    "job_outcomes",
    "label",
    "objective_terms",
    "parse_problem",
    "read_assignments",
    "with_stored_inputs",
]

OpKey = tuple[str, str]  # (job id, operation id)
Rounding = Literal["exact", "ceil", "floor", "nearest"]

OBJECTIVE_TERMS = ("makespan", "total_tardiness", "weighted_tardiness")
# solver.solve's search limit when the input gives none: the tool, `ordo solve` and the catalog's
# documented default all use this one (here, not in the solver, so the CLI can read it without OR-Tools)
DEFAULT_TIME_LIMIT_S = 30.0


def label(key: OpKey) -> str:
    """How messages name an operation: job/operation."""
    return f"{key[0]}/{key[1]}"


_AVAILABLE = "available"  # the only window status that opens a calendar (availability rows carry others)


# --- time ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeBase:
    """How the input writes time: ISO 8601 instants (`iso`) or integer minutes from the origin."""

    iso: bool
    origin: datetime | None  # the instant of minute 0; None when the input is minutes only

    def minutes(self, value: Any, where: str, rounding: Rounding = "nearest") -> int:
        """Minutes from the origin. Instants between whole minutes round as the caller's role needs:
        an earliest time rounds up (`ceil`), a latest time down (`floor`)."""
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise Permanent(
                f"{where}: a time must be an ISO 8601 string or integer minutes", code="INVALID_TIME"
            )
        if isinstance(value, int):
            return value
        if self.origin is None:  # pragma: no cover - parse_problem sets an origin whenever a string exists
            raise Permanent(f"{where}: ISO times need horizon_start", code="MISSING_HORIZON_START")
        exact = (_parse_instant(value, where) - self.origin) / timedelta(minutes=1)
        if rounding == "ceil":
            return math.ceil(exact - 1e-9)
        if rounding == "floor":
            return math.floor(exact + 1e-9)
        return round(exact)

    def render(self, minutes: int) -> int | str:
        """A time in the input's representation."""
        if not self.iso or self.origin is None:
            return int(minutes)
        return (self.origin + timedelta(minutes=int(minutes))).isoformat()

    def instant(self, minutes: int) -> datetime | None:
        """The wall-clock instant of a minute, when the problem is anchored to one."""
        return None if self.origin is None else self.origin + timedelta(minutes=int(minutes))


def _parse_instant(value: str, where: str) -> datetime:
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        raise Permanent(f"{where}: {value!r} is not an ISO 8601 date-time", code="INVALID_TIME") from None
    if instant.tzinfo is None:
        raise Permanent(f"{where}: {value!r} has no UTC offset (write e.g. {value}Z)", code="INVALID_TIME")
    return instant


# --- calendars -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calendar:
    """Open time of a machine or operator: sorted, disjoint, non-touching windows [start, end)."""

    windows: tuple[tuple[int, int], ...]
    _starts: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _open_before: tuple[int, ...] = field(init=False, repr=False, compare=False)  # per window

    def __post_init__(self) -> None:
        object.__setattr__(self, "_starts", tuple(a for a, _ in self.windows))
        before, total = [], 0
        for a, b in self.windows:
            before.append(total)
            total += b - a
        object.__setattr__(self, "_open_before", tuple(before))

    @classmethod
    def of(cls, windows: Iterable[tuple[int, int]]) -> Calendar:
        """Merge overlapping and touching windows: back-to-back shifts are one open stretch, not a break."""
        merged: list[list[int]] = []
        for a, b in sorted(w for w in windows if w[1] > w[0]):
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        return cls(tuple((a, b) for a, b in merged))

    @property
    def first_open(self) -> int | None:
        return self.windows[0][0] if self.windows else None

    @property
    def last_close(self) -> int | None:
        return self.windows[-1][1] if self.windows else None

    def breaks(self) -> list[tuple[int, int]]:
        """The closed stretches between consecutive windows."""
        return [(self.windows[i][1], self.windows[i + 1][0]) for i in range(len(self.windows) - 1)]

    def window_at(self, t: int) -> tuple[int, int] | None:
        """The window holding minute t, if the calendar is open then."""
        i = bisect.bisect_right(self._starts, t) - 1
        if i >= 0 and t < self.windows[i][1]:
            return self.windows[i]
        return None

    def contains(self, start: int, end: int) -> bool:
        """True when [start, end) lies inside one window (an empty span: its instant is open or a close)."""
        i = bisect.bisect_right(self._starts, start) - 1
        return i >= 0 and end <= self.windows[i][1] and (start < self.windows[i][1] or start == end)

    def open_minutes(self, start: int, end: int) -> int:
        """Open minutes in [start, end)."""
        return max(0, self._open_until(end) - self._open_until(start))

    def _open_until(self, t: int) -> int:
        """Open minutes before minute t."""
        i = bisect.bisect_right(self._starts, t) - 1
        if i < 0:
            return 0
        a, b = self.windows[i]
        return self._open_before[i] + min(t, b) - a

    def fits_whole(self, duration: int, earliest: int, latest_end: int) -> bool:
        """Some window holds `duration` consecutive open minutes inside [earliest, latest_end)."""
        return any(min(b, latest_end) - max(a, earliest) >= duration for a, b in self.windows)

    def start_domain(self, duration: int) -> list[list[int]]:
        """Starts [a, b - duration] of windows long enough to hold the whole operation."""
        return [[a, b - duration] for a, b in self.windows if b - a >= duration]

    def next_fit(self, t: int, duration: int) -> int | None:
        """Earliest start >= t with the whole operation inside one window."""
        i = max(0, bisect.bisect_right(self._starts, t) - 1)
        for a, b in self.windows[i:]:
            s = max(a, t)
            if s + duration <= b:
                return s
        return None

    def next_open(self, t: int) -> int | None:
        """Earliest open minute >= t."""
        i = max(0, bisect.bisect_right(self._starts, t) - 1)
        for a, b in self.windows[i:]:
            if t < b:
                return max(a, t)
        return None

    def finish(self, start: int, work: int) -> int | None:
        """End of `work` open minutes begun at an open minute `start`, running through breaks."""
        i = bisect.bisect_right(self._starts, start) - 1
        if work == 0:
            return start
        for a, b in self.windows[max(i, 0) :]:
            s = max(a, start)
            if s + work <= b:
                return s + work
            work -= max(0, b - s)
        return None


# --- the problem -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    job: str
    id: str
    position: int  # index within the job: operations run in this order
    durations: Mapping[str, int]  # eligible machine -> minutes of work there, in input order
    skill: str | None = None
    family: str | None = None
    may_span_breaks: bool = False  # may pause over a machine break instead of fitting in one window

    @property
    def key(self) -> OpKey:
        return (self.job, self.id)

    @cached_property
    def min_duration(self) -> int:
        return min(self.durations.values())

    @cached_property
    def max_duration(self) -> int:
        return max(self.durations.values())


@dataclass(frozen=True)
class Job:
    id: str
    operations: tuple[Operation, ...]
    release: int | None = None  # no operation starts earlier
    due: int | None = None  # finishing later is tardiness (a soft target)
    deadline: int | None = None  # finishing later is not allowed (a hard limit)
    weight: float = 1.0
    priority: int | None = None


@dataclass(frozen=True)
class Machine:
    id: str
    calendar: Calendar | None = None  # None: always open


@dataclass(frozen=True)
class Operator:
    id: str
    skills: frozenset[str]
    calendar: Calendar | None = None


@dataclass(frozen=True)
class Frozen:
    """An operation already running: it stays where it is, whatever the calendars say now."""

    key: OpKey
    machine: str
    start: int
    end: int  # as given, else the start plus the work (through breaks if the operation may span them)
    operator: str | None


@dataclass(frozen=True)
class SetupTimes:
    """Minutes a machine needs between an operation of one family and the next of another."""

    by_machine: Mapping[tuple[str, str, str], int] = field(default_factory=dict)
    everywhere: Mapping[tuple[str, str], int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.by_machine) or bool(self.everywhere)

    def between(self, machine: str, before: str | None, after: str | None) -> int:
        if before is None or after is None:
            return 0
        specific = self.by_machine.get((machine, before, after))
        return specific if specific is not None else self.everywhere.get((before, after), 0)


@dataclass(frozen=True)
class Placement:
    """One operation of a plan, in minutes: where, by whom, when."""

    job: str
    operation: str
    machine: str
    operator: str | None
    start: int
    end: int

    @property
    def key(self) -> OpKey:
        return (self.job, self.operation)


@dataclass(frozen=True)
class Problem:
    time: TimeBase
    jobs: tuple[Job, ...]
    machines: Mapping[str, Machine]
    operators: Mapping[str, Operator]
    setups: SetupTimes
    objective: Mapping[str, float]  # term -> weight, terms from OBJECTIVE_TERMS
    now: int | None
    frozen: Mapping[OpKey, Frozen]
    hint: Sequence[Placement]
    operations: Mapping[OpKey, Operation] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "operations", {op.key: op for job in self.jobs for op in job.operations})

    @property
    def job_by_id(self) -> dict[str, Job]:
        return {job.id: job for job in self.jobs}

    def qualified(self, skill: str) -> list[Operator]:
        return [o for o in self.operators.values() if skill in o.skills]

    def slot(self, op: Operation, machine: str, t: int) -> tuple[int, int] | None:
        """The earliest (start, end) of `op` on `machine` at or after minute t, by that machine's
        calendar alone: inside one open window, or through breaks when the operation may span them.
        None: no such time before the calendar ends."""
        duration, calendar = op.durations[machine], self.machines[machine].calendar
        if calendar is None:
            return t, t + duration
        if op.may_span_breaks and duration > 0:
            start = calendar.next_open(t)
            end = None if start is None else calendar.finish(start, duration)
            return None if start is None or end is None else (start, end)
        start = calendar.next_fit(t, duration)
        return None if start is None else (start, start + duration)

    def is_plain(self) -> bool:
        """The textbook job shop: one machine per operation; no calendars, operators, setups, deadlines or
        frozen operations (releases and `now` are fine)."""
        return (
            all(len(op.durations) == 1 and op.skill is None for op in self.operations.values())
            and all(job.deadline is None for job in self.jobs)
            and all(m.calendar is None for m in self.machines.values())
            and not self.setups
            and not self.frozen
        )


# --- parsing ---------------------------------------------------------------------------------


def with_stored_inputs(problem: Mapping[str, Any], ctx: Any) -> Mapping[str, Any]:
    """The problem with the inputs kept in Ordo's tables filled in: `availability` becomes the
    machines' calendars from the plant's stored shifts (engine/tools/plant.py, through the worker's
    database in ctx.db), so solve, validate and analyze read the same calendars."""
    if "availability" not in problem:
        return problem
    from engine.tools.plant import with_stored_calendars  # the model itself never touches the database

    return with_stored_calendars(problem, ctx)


def parse_problem(args: Mapping[str, Any], plan: Mapping[str, Any] | None = None) -> Problem:
    """Read a solver.solve input (already schema-checked) into minutes; raise Permanent on bad data.
    A plan read with the problem (validate, analyze) takes part in choosing the time representation."""
    time = _time_base(args, plan)
    machines = _machines(args, time)
    operators = _operators(args, time)
    jobs = _jobs(args, time, machines)
    operations = {op.key: op for job in jobs for op in job.operations}
    return Problem(
        time=time,
        jobs=jobs,
        machines=machines,
        operators=operators,
        setups=_setups(args, machines),
        objective=_objective(args.get("objective", "makespan")),
        now=None if args.get("now") is None else time.minutes(args["now"], "now", "ceil"),
        frozen=_frozen(args, time, operations, machines, operators),
        hint=_hint(args, time, operations),
    )


def _time_base(args: Mapping[str, Any], plan: Mapping[str, Any] | None) -> TimeBase:
    values = [*_time_values(args), *_plan_times(plan)]
    iso_values = [v for _, v in values if isinstance(v, str)]
    origin_text = args.get("horizon_start")
    origin = _parse_instant(origin_text, "horizon_start") if origin_text is not None else None
    if not iso_values:
        return TimeBase(iso=False, origin=origin)
    if origin is None:
        integers = [where for where, v in values if isinstance(v, int) and not isinstance(v, bool)]
        if integers:
            raise Permanent(
                f"{integers[0]} is integer minutes but other times are ISO 8601: set horizon_start "
                "so minutes have an origin",
                code="MISSING_HORIZON_START",
                details={"path": integers[0]},
            )
        origin = min(_parse_instant(v, "time") for v in iso_values)
    return TimeBase(iso=True, origin=origin)


def _time_values(args: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """Every time in the problem with its path: the times that decide the representation."""
    for key in ("now",):
        if args.get(key) is not None:
            yield key, args[key]
    for j, job in enumerate(args.get("jobs") or []):
        for key in ("release", "due", "deadline"):
            if isinstance(job, dict) and job.get(key) is not None:
                yield f"jobs[{j}].{key}", job[key]
    for kind in ("machines", "operators"):
        for i, resource in enumerate(args.get(kind) or []):
            for w, window in enumerate((resource or {}).get("calendar") or []):
                for key in ("start", "end"):
                    yield f"{kind}[{i}].calendar[{w}].{key}", window.get(key)
    for name, windows in (args.get("calendars") or {}).items():
        for w, window in enumerate(windows or []):
            for key in ("start", "end"):
                yield f"calendars.{name}[{w}].{key}", window.get(key)
    for f, item in enumerate(args.get("frozen") or []):
        for key in ("start", "end"):
            if item.get(key) is not None:
                yield f"frozen[{f}].{key}", item[key]


def _plan_times(plan: Mapping[str, Any] | None) -> Iterator[tuple[str, Any]]:
    for i, a in enumerate((plan or {}).get("assignments") or []):
        for key in ("start", "end"):
            yield f"plan.assignments[{i}].{key}", a.get(key)


def _calendar(windows: Any, time: TimeBase, where: str) -> Calendar:
    spans = []
    for w, window in enumerate(windows):
        if window.get("status", _AVAILABLE) != _AVAILABLE:
            continue  # a maintenance or holiday row from availability generation closes, never opens
        start = time.minutes(window["start"], f"{where}[{w}].start", "ceil")
        end = time.minutes(window["end"], f"{where}[{w}].end", "floor")
        if end < start:
            raise Permanent(
                f"{where}[{w}] ends before it starts",
                code="INVALID_WINDOW",
                details={"path": f"{where}[{w}]"},
            )
        spans.append((start, end))
    return Calendar.of(spans)


def _resource_calendar(
    resource: Mapping[str, Any], shared: Mapping[str, Any], time: TimeBase, where: str
) -> Calendar | None:
    if resource.get("calendar") is not None:
        return _calendar(resource["calendar"], time, f"{where}.calendar")
    if resource["id"] in shared:
        return _calendar(shared[resource["id"]], time, f"calendars.{resource['id']}")
    return None


def _machines(args: Mapping[str, Any], time: TimeBase) -> dict[str, Machine]:
    shared = args.get("calendars") or {}
    listed = args.get("machines")
    if listed is None:  # machines are then exactly those the operations name, always open
        names = dict.fromkeys(
            o["machine"] for j in args.get("jobs") or [] for op in j["operations"] for o in op["machines"]
        )
        return {
            m: Machine(m, _calendar(shared[m], time, f"calendars.{m}") if m in shared else None)
            for m in names
        }
    machines: dict[str, Machine] = {}
    for i, item in enumerate(listed):
        _unique(item["id"], machines, f"machines[{i}].id", "machine")
        machines[item["id"]] = Machine(item["id"], _resource_calendar(item, shared, time, f"machines[{i}]"))
    return machines


def _operators(args: Mapping[str, Any], time: TimeBase) -> dict[str, Operator]:
    shared = args.get("calendars") or {}
    operators: dict[str, Operator] = {}
    for i, item in enumerate(args.get("operators") or []):
        _unique(item["id"], operators, f"operators[{i}].id", "operator")
        operators[item["id"]] = Operator(
            item["id"],
            frozenset(item.get("skills") or ()),
            _resource_calendar(item, shared, time, f"operators[{i}]"),
        )
    return operators


def _jobs(args: Mapping[str, Any], time: TimeBase, machines: Mapping[str, Machine]) -> tuple[Job, ...]:
    raw_jobs = args.get("jobs") or []
    if not raw_jobs:
        raise Permanent("the problem has no jobs: give at least one job with operations", code="EMPTY_JOBS")
    jobs: dict[str, Job] = {}
    for j, raw in enumerate(raw_jobs):
        _unique(raw["id"], jobs, f"jobs[{j}].id", "job")
        if not raw.get("operations"):
            raise Permanent(
                f"job {raw['id']!r} has no operations", code="EMPTY_JOB", details={"job": raw["id"]}
            )
        operations: dict[str, Operation] = {}
        for o, op in enumerate(raw["operations"]):
            where = f"jobs[{j}].operations[{o}]"
            _unique(op["id"], operations, f"{where}.id", f"operation of job {raw['id']!r}")
            operations[op["id"]] = Operation(
                job=raw["id"],
                id=op["id"],
                position=o,
                durations=_options(op, machines, label((raw["id"], op["id"])), where),
                skill=op.get("skill"),
                family=op.get("family"),
                may_span_breaks=bool(op.get("may_span_breaks", False)),
            )
        weight = next((w for w in (raw.get("weight"), raw.get("priority")) if w is not None), 1)
        if weight < 0:
            raise Permanent(
                f"job {raw['id']!r} has a negative weight", code="INVALID_WEIGHT", details={"job": raw["id"]}
            )
        jobs[raw["id"]] = Job(
            id=raw["id"],
            operations=tuple(operations.values()),
            release=_optional_minutes(raw, "release", time, f"jobs[{j}]", "ceil"),
            due=_optional_minutes(raw, "due", time, f"jobs[{j}]", "floor"),
            deadline=_optional_minutes(raw, "deadline", time, f"jobs[{j}]", "floor"),
            weight=float(weight),
            priority=raw.get("priority"),
        )
    return tuple(jobs.values())


def _options(op: Mapping[str, Any], machines: Mapping[str, Machine], name: str, where: str) -> dict[str, int]:
    if not op.get("machines"):
        raise Permanent(
            f"operation {name} lists no eligible machine",
            code="NO_ELIGIBLE_MACHINE",
            details={"operation": name},
        )
    durations: dict[str, int] = {}
    for k, option in enumerate(op["machines"]):
        machine, duration = option["machine"], option["duration"]
        if machine not in machines:
            raise Permanent(
                f"operation {name} names machine {machine!r}, which is not in machines",
                code="UNKNOWN_MACHINE",
                details={"operation": name, "machine": machine, "path": f"{where}.machines[{k}]"},
            )
        if duration < 0:
            raise Permanent(
                f"operation {name} has a negative duration ({duration}) on {machine}",
                code="NEGATIVE_DURATION",
                details={"operation": name, "machine": machine, "path": f"{where}.machines[{k}].duration"},
            )
        _unique(machine, durations, f"{where}.machines[{k}].machine", f"machine of operation {name}")
        durations[machine] = int(duration)
    return durations


def _setups(args: Mapping[str, Any], machines: Mapping[str, Machine]) -> SetupTimes:
    by_machine: dict[tuple[str, str, str], int] = {}
    everywhere: dict[tuple[str, str], int] = {}
    for i, item in enumerate(args.get("setups") or []):
        if item["duration"] < 0:
            raise Permanent(
                f"setups[{i}] has a negative duration",
                code="NEGATIVE_DURATION",
                details={"path": f"setups[{i}]"},
            )
        machine = item.get("machine")
        if machine is None:
            everywhere[(item["from"], item["to"])] = int(item["duration"])
        elif machine not in machines:
            raise Permanent(
                f"setups[{i}] names machine {machine!r}, which is not in machines",
                code="UNKNOWN_MACHINE",
                details={"machine": machine, "path": f"setups[{i}].machine"},
            )
        else:
            by_machine[(machine, item["from"], item["to"])] = int(item["duration"])
    return SetupTimes(by_machine, everywhere)


def _objective(spec: Any) -> dict[str, float]:
    weights = {spec: 1.0} if isinstance(spec, str) else {k: float(v) for k, v in dict(spec).items()}
    unknown = sorted(set(weights) - set(OBJECTIVE_TERMS))
    if unknown:
        raise Permanent(
            f"unknown objective term {unknown[0]!r}; use {', '.join(OBJECTIVE_TERMS)}",
            code="INVALID_OBJECTIVE",
        )
    if any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
        raise Permanent("objective weights must be >= 0 with at least one > 0", code="INVALID_OBJECTIVE")
    return {k: w for k, w in weights.items() if w > 0}


def _frozen(
    args: Mapping[str, Any],
    time: TimeBase,
    operations: Mapping[OpKey, Operation],
    machines: Mapping[str, Machine],
    operators: Mapping[str, Operator],
) -> dict[OpKey, Frozen]:
    frozen: dict[OpKey, Frozen] = {}
    for i, item in enumerate(args.get("frozen") or []):
        where = f"frozen[{i}]"
        key = (item["job"], item["operation"])
        name = label(key)
        if key not in operations:
            raise Permanent(
                f"{where} names operation {name}, which is not in jobs",
                code="UNKNOWN_OPERATION",
                details={"path": where},
            )
        _unique(key, frozen, where, "frozen operation")
        op = operations[key]
        if item["machine"] not in op.durations:
            code = "UNKNOWN_MACHINE" if item["machine"] not in machines else "NOT_ELIGIBLE"
            raise Permanent(
                f"{where}: operation {name} cannot run on {item['machine']!r}",
                code=code,
                details={"path": where},
            )
        operator = item.get("operator")
        if operator is not None and operator not in operators:
            raise Permanent(
                f"{where} names operator {operator!r}, which is not in operators",
                code="UNKNOWN_OPERATOR",
                details={"path": where},
            )
        start = time.minutes(item["start"], f"{where}.start")
        if item.get("end") is not None:
            end = time.minutes(item["end"], f"{where}.end")
        else:
            end = _finish(op, item["machine"], machines[item["machine"]].calendar, start)
        if end < start:
            raise Permanent(f"{where} ends before it starts", code="INVALID_WINDOW", details={"path": where})
        frozen[key] = Frozen(key, item["machine"], start, end, operator)
    return frozen


def _finish(op: Operation, machine: str, calendar: Calendar | None, start: int) -> int:
    """End of an operation begun at `start`: its work later, or later still if it pauses over breaks."""
    duration = op.durations[machine]
    if op.may_span_breaks and calendar is not None and calendar.window_at(start) is not None:
        end = calendar.finish(start, duration)
        if end is not None:
            return end
    return start + duration


def _hint(args: Mapping[str, Any], time: TimeBase, operations: Mapping[OpKey, Operation]) -> list[Placement]:
    """A previous plan to start from. Advisory: operations it names that no longer exist are skipped."""
    hint = args.get("hint")
    if not hint:
        return []
    return [p for p in read_assignments(time, hint.get("assignments") or [], "hint") if p.key in operations]


def _optional_minutes(
    raw: Mapping[str, Any], key: str, time: TimeBase, where: str, rounding: Rounding
) -> int | None:
    return None if raw.get(key) is None else time.minutes(raw[key], f"{where}.{key}", rounding)


def _unique(key: Any, seen: Mapping[Any, Any], where: str, what: str) -> None:
    if key in seen:
        raise Permanent(
            f"{where}: {what} {key!r} appears twice", code="DUPLICATE_ID", details={"path": where}
        )


# --- plans -----------------------------------------------------------------------------------


def read_assignments(
    time: TimeBase, assignments: Sequence[Mapping[str, Any]], where: str = "plan"
) -> list[Placement]:
    """A plan's assignments in minutes, in the order given (unknown ids are kept for the caller to judge)."""
    placements = []
    for i, a in enumerate(assignments):
        path = f"{where}.assignments[{i}]"
        placements.append(
            Placement(
                job=str(a["job"]),
                operation=str(a["operation"]),
                machine=str(a["machine"]),
                operator=a.get("operator"),
                start=time.minutes(a["start"], f"{path}.start"),
                end=time.minutes(a["end"], f"{path}.end"),
            )
        )
    return placements


@dataclass(frozen=True)
class JobOutcome:
    job: Job
    start: int | None
    end: int | None
    complete: bool  # every operation of the job is in the plan

    @property
    def lateness(self) -> int | None:
        return None if self.end is None or self.job.due is None else self.end - self.job.due

    @property
    def tardiness(self) -> int:
        late = self.lateness
        return max(0, late) if late is not None else 0

    @property
    def flow_time(self) -> int | None:
        if self.end is None:
            return None
        return self.end - (
            self.job.release if self.job.release is not None else 0
        )  # else from the horizon start


def job_outcomes(problem: Problem, placements: Iterable[Placement]) -> list[JobOutcome]:
    by_job: dict[str, list[Placement]] = {}
    for p in placements:
        if p.key in problem.operations:
            by_job.setdefault(p.job, []).append(p)
    outcomes = []
    for job in problem.jobs:
        mine = by_job.get(job.id, [])
        outcomes.append(
            JobOutcome(
                job=job,
                start=min((p.start for p in mine), default=None),
                end=max((p.end for p in mine), default=None),
                complete={p.operation for p in mine} >= {op.id for op in job.operations},
            )
        )
    return outcomes


def objective_terms(problem: Problem, placements: Sequence[Placement]) -> dict[str, float]:
    """The value of every objective term for a plan, and the weighted objective itself."""
    outcomes = job_outcomes(problem, placements)
    terms: dict[str, float] = {
        "makespan": max((p.end for p in placements), default=0),
        "total_tardiness": sum(o.tardiness for o in outcomes),
        "weighted_tardiness": sum(o.job.weight * o.tardiness for o in outcomes),
    }
    terms["objective"] = sum(w * terms[t] for t, w in problem.objective.items())
    return terms
