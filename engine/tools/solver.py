"""solver.solve: a flexible job-shop plan with OR-Tools CP-SAT.

Owns the CP-SAT model and its reading, in the passes the style asks for: data (planning_model) →
bounds → variables → constraints → objective → solve → read. Why the formulation is shaped so:

- An operation with one eligible machine is one fixed-size interval with no literal, so the plain
  job shop is exactly the textbook model, with tighter domains (heads, tails, a makespan lower bound).
- Alternatives share the operation's start: one optional fixed-size interval and one presence
  literal per eligible machine, exactly one present.
- Calendars restrict starts to the windows that can hold the operation, and the closed stretches
  are fixed intervals in the machine's NoOverlap, so disjunctive reasoning sees the lost capacity.
- An operation allowed to span breaks has a variable length: its work plus each break it crosses.
- Setups: a circuit over a machine's operations chooses direct successors; a chosen arc delays the
  successor by the setup between the two families.
- An operation needing a skill occupies one qualified operator for its whole span.

The plan the solver returns is then shifted left (same machine sequences and operators, every
operation as early as allowed): a regular objective can only improve, and planners get the compact
plan they expect instead of whatever slack placement the search happened to stop on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Any

from ortools.sat.python import cp_model

from engine.context import ToolContext
from engine.tools.planning_model import (
    Calendar,
    Operation,
    OpKey,
    Placement,
    Problem,
    objective_terms,
    parse_problem,
)
from store.errors import Permanent, ToolError

__all__ = ["DEFAULT_TIME_LIMIT_S", "solve"]

DEFAULT_TIME_LIMIT_S = 30.0
_RESERVE_S = 0.5  # kept from the step's deadline for reading the answer and checking its schema
_DIAGNOSIS_S = 5.0  # at most this long, after a proof of infeasibility, to find which deadlines cause it
_PROVABLE_OPERATIONS = 200  # job shops up to this size are usually proven optimal in seconds to minutes
_DISPATCH_WORK = 100_000  # above this many operation x job steps, one dispatching rule only
_STATUS = {
    cp_model.OPTIMAL: "optimal",
    cp_model.FEASIBLE: "feasible",
    cp_model.INFEASIBLE: "infeasible",
    cp_model.UNKNOWN: "unknown",
}


def solve(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Job-shop plan with CP-SAT. Schemas: catalogs/tools.json, solver.solve."""
    clock = time.monotonic()
    time_limit = _time_limit(args, ctx)
    workers = _workers(args, ctx)
    problem = parse_problem(args)
    bounds = _bounds(problem)
    reasons = _infeasibility_reasons(problem, bounds)
    if reasons:
        return _answer(problem, "infeasible", [], None, clock, reasons=reasons)
    if bounds.dispatch and set(problem.objective) == {"makespan"}:
        makespan = max(p.end for p in bounds.dispatch)
        if makespan <= bounds.makespan_lb:  # it meets the lower bound: optimal without searching
            return _answer(problem, "optimal", bounds.dispatch, float(bounds.makespan_lb), clock)
    seconds = min(time_limit, ctx.remaining() - _RESERVE_S)
    jobshop, solver, status = _search(problem, bounds, seconds, workers, args.get("random_seed", 0), ctx)
    name = _STATUS.get(status, "unknown")
    if status == cp_model.INFEASIBLE:
        reasons = _deadline_reasons(problem, workers, ctx) or [
            _reason(
                "CONSTRAINTS_CONFLICT",
                "no plan satisfies all constraints together; the solver proved it "
                "(check calendars, operators, setups and frozen operations)",
            )
        ]
        return _answer(problem, name, [], None, clock, reasons=reasons, solver=solver)
    if status != cp_model.OPTIMAL and status != cp_model.FEASIBLE:
        reasons = [_reason("NO_PLAN_IN_TIME", f"no plan was found within the {time_limit:g} s time limit")]
        return _answer(
            problem, name, [], _scaled_bound(solver, jobshop), clock, reasons=reasons, solver=solver
        )
    plan = _left_shift(problem, bounds, jobshop.read(solver))
    return _answer(problem, name, plan, _scaled_bound(solver, jobshop), clock, solver=solver)


def _search(
    problem: Problem, bounds: _Bounds, seconds: float, workers: int, seed: int, ctx: ToolContext
) -> tuple[_JobShopModel, cp_model.CpSolver, int]:
    jobshop = _JobShopModel(problem, bounds)
    solver = cp_model.CpSolver()
    _set_parameters(
        solver,
        seconds,
        workers,
        seed,
        makespan_only=set(problem.objective) == {"makespan"},
        operations=len(problem.operations),
    )
    status = _solve_cancellably(solver, jobshop.model, ctx)
    if status == cp_model.MODEL_INVALID:  # a bug in this module, never the user's data
        raise ToolError(
            f"the CP-SAT model is invalid: {jobshop.model.validate()}", code="SOLVER_MODEL_INVALID"
        )
    return jobshop, solver, status


def _deadline_reasons(problem: Problem, workers: int, ctx: ToolContext) -> list[dict[str, Any]]:
    """When deadlines are why no plan exists: solve again with each deadline as a due date, minimizing
    the overrun, and name the jobs that still finish late (the deadlines to move or negotiate)."""
    seconds = min(_DIAGNOSIS_S, ctx.remaining() - _RESERVE_S)
    if seconds < 0.1 or all(job.deadline is None for job in problem.jobs):
        return []
    relaxed = replace(
        problem,
        jobs=tuple(replace(job, deadline=None, due=job.deadline, weight=1.0) for job in problem.jobs),
        objective={"total_tardiness": 1.0},
    )
    bounds = _bounds(relaxed)
    if _infeasibility_reasons(relaxed, bounds):
        return []
    jobshop, solver, status = _search(relaxed, bounds, seconds, workers, 0, ctx)
    if status != cp_model.OPTIMAL and status != cp_model.FEASIBLE:
        return []
    ends: dict[str, int] = {}
    for p in jobshop.read(solver):
        ends[p.job] = max(ends.get(p.job, p.end), p.end)
    late = [
        (job.id, ends[job.id] - job.deadline)
        for job in problem.jobs
        if job.deadline is not None and ends[job.id] > job.deadline
    ]
    if not late:
        return []
    which = "the plan that overruns them least" if status == cp_model.OPTIMAL else "the best plan found"
    overruns = ", ".join(f"{job} by {minutes} min" for job, minutes in late)
    return [
        _reason(
            "DEADLINES_CONFLICT",
            f"the deadlines cannot all be met together; without them a plan exists, and {which} still "
            f"misses: {overruns}",
            jobs=[job for job, _ in late],
        )
    ]


# --- inputs the solver alone reads -----------------------------------------------------------


def _time_limit(args: dict[str, Any], ctx: ToolContext) -> float:
    limit = args.get("time_limit_s", DEFAULT_TIME_LIMIT_S)
    if isinstance(limit, bool) or not isinstance(limit, int | float) or limit <= 0:
        raise Permanent(
            f"time_limit_s must be a positive number of seconds, not {limit!r}", code="INVALID_TIME_LIMIT"
        )
    if ctx.remaining() - _RESERVE_S <= 0:
        raise ToolError("no time left in the step to solve", code="NO_TIME_LEFT")
    return float(limit)


def _workers(args: dict[str, Any], ctx: ToolContext) -> int:
    workers = args.get("num_workers", ctx.limits.cpus)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise Permanent(
            f"num_workers must be a positive integer, not {workers!r}", code="INVALID_NUM_WORKERS"
        )
    return workers


# --- bounds: heads, tails, horizon -----------------------------------------------------------


@dataclass
class _Bounds:
    lo: int  # the earliest minute anything occupies (a frozen operation may have begun before 0)
    horizon: int  # some optimal plan ends every operation by then
    earliest: dict[OpKey, int]  # earliest start: release, now, predecessors' work, calendars
    earliest_end: dict[OpKey, int | None]  # None: the operation fits nowhere
    latest: dict[OpKey, int]  # latest end: deadline, horizon, successors' work
    makespan_lb: int
    frozen_order: list[OpKey] = field(default_factory=list)  # frozen, yet a predecessor cannot end before
    dispatch: list[Placement] | None = None  # a quick feasible plan, for the plain job shop


def _bounds(problem: Problem) -> _Bounds:
    frozen = {key: (f.start, f.end) for key, f in problem.frozen.items()}
    lo = min([0, *(s for s, _ in frozen.values())])
    earliest: dict[OpKey, int] = {}
    earliest_end: dict[OpKey, int | None] = {}
    frozen_order: list[OpKey] = []
    for job in problem.jobs:
        ready: int | None = max(lo, job.release if job.release is not None else lo)
        if problem.now is not None:
            ready = max(ready, problem.now)
        for op in job.operations:
            if op.key in frozen:
                start, end = frozen[op.key]
                if ready is not None and op.position > 0 and ready > start:
                    frozen_order.append(op.key)  # an unfrozen predecessor cannot end before it began
                earliest[op.key], earliest_end[op.key], ready = start, end, end
                continue
            if ready is None:
                earliest[op.key], earliest_end[op.key] = lo, None
                continue
            finishes = [
                f for f in (_earliest_finish(problem, op, m, ready) for m in op.durations) if f is not None
            ]
            earliest[op.key] = ready
            earliest_end[op.key] = min((f for _, f in finishes), default=None)
            if finishes:
                earliest[op.key] = min(s for s, _ in finishes)
            ready = earliest_end[op.key]
    events = [0, *(e for _, e in frozen.values())]
    events += [problem.now] if problem.now is not None else []
    events += [job.release for job in problem.jobs if job.release is not None]
    calendars = [r.calendar for r in [*problem.machines.values(), *problem.operators.values()] if r.calendar]
    events += [c.last_close for c in calendars if c.last_close is not None]
    spans_breaks = any(op.may_span_breaks for op in problem.operations.values())
    crossed = (
        max((c.last_close - c.first_open for c in calendars if c.windows), default=0) if spans_breaks else 0
    )
    longest_setup = max([0, *problem.setups.by_machine.values(), *problem.setups.everywhere.values()])
    work = sum(
        op.max_duration + longest_setup for op in problem.operations.values() if op.key not in problem.frozen
    )
    horizon = max(events) + work + crossed
    dispatch = _dispatch_plan(problem, lo) if problem.is_plain() else None
    if dispatch and set(problem.objective) == {"makespan"}:
        horizon = min(horizon, max(p.end for p in dispatch))  # some optimal plan is no longer
    latest: dict[OpKey, int] = {}
    for job in problem.jobs:
        due = horizon if job.deadline is None else min(horizon, job.deadline)
        for op in reversed(job.operations):
            if op.key in frozen:
                due = frozen[op.key][0]
                latest[op.key] = frozen[op.key][1]
                continue
            latest[op.key] = due
            due -= op.min_duration
    return _Bounds(
        lo=lo,
        horizon=horizon,
        earliest=earliest,
        earliest_end=earliest_end,
        latest=latest,
        makespan_lb=_makespan_lower_bound(problem, earliest, earliest_end),
        frozen_order=frozen_order,
        dispatch=dispatch,
    )


def _earliest_finish(problem: Problem, op: Operation, machine: str, ready: int) -> tuple[int, int] | None:
    """Earliest (start, end) of `op` on `machine` from `ready`, by that machine's calendar alone."""
    duration, calendar = op.durations[machine], problem.machines[machine].calendar
    if calendar is None:
        return ready, ready + duration
    if op.may_span_breaks and duration > 0:
        start = calendar.next_open(ready)
        end = None if start is None else calendar.finish(start, duration)
        return None if start is None or end is None else (start, end)
    start = calendar.next_fit(ready, duration)
    return None if start is None else (start, start + duration)


def _makespan_lower_bound(
    problem: Problem, earliest: dict[OpKey, int], earliest_end: dict[OpKey, int | None]
) -> int:
    """max(longest job from its release, busiest machine from its first possible start plus the
    shortest remaining work after it): both hold for every plan, so they bound the makespan."""
    bound = max((e for e in earliest_end.values() if e is not None), default=0)
    tails: dict[OpKey, int] = {}
    for job in problem.jobs:
        rest = 0
        for op in reversed(job.operations):
            tails[op.key] = rest
            rest += op.min_duration
    only_on: dict[str, list[Operation]] = {}
    for op in problem.operations.values():
        if len(op.durations) == 1:
            only_on.setdefault(next(iter(op.durations)), []).append(op)
    for ops in only_on.values():
        load = sum(op.min_duration for op in ops)
        bound = max(bound, min(earliest[op.key] for op in ops) + load + min(tails[op.key] for op in ops))
    return bound


def _dispatch_plan(problem: Problem, lo: int) -> list[Placement]:
    """A feasible plain job-shop plan, the best of three classic dispatching rules (most work
    remaining, most operations remaining, shortest operation): each repeatedly starts, among the
    operations that can start first, the one the rule prefers. It bounds the horizon, and when it
    meets the lower bound it is optimal as it stands; otherwise CP-SAT does the optimizing."""
    rules = (
        lambda duration, work_left, ops_left: (-work_left, -ops_left),
        lambda duration, work_left, ops_left: (-ops_left, -work_left),
        lambda duration, work_left, ops_left: (duration, -work_left),
    )
    if len(problem.operations) * len(problem.jobs) > _DISPATCH_WORK:
        rules = rules[:1]  # each rule costs operations x jobs steps in Python
    plans = [_dispatch(problem, lo, rule) for rule in rules]
    return min(plans, key=lambda plan: max(p.end for p in plan))


def _dispatch(problem: Problem, lo: int, rule: Any) -> list[Placement]:
    routes = [[(*next(iter(op.durations.items())), op) for op in job.operations] for job in problem.jobs]
    ready = [max([lo, *(t for t in (job.release, problem.now) if t is not None)]) for job in problem.jobs]
    work_left = [sum(duration for _, duration, _ in route) for route in routes]
    position = [0] * len(routes)
    machine_free: dict[str, int] = {}
    waiting = list(range(len(routes)))
    plan = []
    while waiting:
        best: tuple[int, Any, int] | None = None
        for j in waiting:
            machine, duration, _ = routes[j][position[j]]
            start = max(ready[j], machine_free.get(machine, lo))
            candidate = (start, rule(duration, work_left[j], len(routes[j]) - position[j]), j)
            if best is None or candidate < best:
                best = candidate
        assert best is not None
        start, _, j = best
        machine, duration, op = routes[j][position[j]]
        plan.append(Placement(op.job, op.id, machine, None, start, start + duration))
        ready[j] = machine_free[machine] = start + duration
        work_left[j] -= duration
        position[j] += 1
        if position[j] == len(routes[j]):
            waiting.remove(j)
    return plan


# --- reasons a plan cannot exist, found before searching -------------------------------------


def _infeasibility_reasons(problem: Problem, bounds: _Bounds) -> list[dict[str, Any]]:
    reasons: list[dict[str, Any]] = []
    for key in bounds.frozen_order:
        reasons.append(
            _reason(
                "FROZEN_ORDER",
                f"operation {_label(key)} is frozen at its start, but an earlier operation of its job cannot "
                "finish before then (give the earlier operations as frozen too, or drop the finished ones)",
                operations=[key],
            )
        )
    reasons += _frozen_clashes(problem)
    for job in problem.jobs:
        unplaceable = [op for op in job.operations if bounds.earliest_end[op.key] is None]
        if unplaceable:  # the first one only: the operations after it are blocked by it
            reasons.append(_no_window_reason(problem, unplaceable[0]))
    for op in problem.operations.values():
        if op.skill is not None and op.key not in problem.frozen:
            reason = _operator_reason(problem, op)
            if reason:
                reasons.append(reason)
    for job in problem.jobs:
        last = job.operations[-1].key
        end = bounds.earliest_end[last]
        if job.deadline is not None and end is not None and end > job.deadline:
            need = sum(op.min_duration for op in job.operations)
            reasons.append(
                _reason(
                    "DEADLINE_TOO_SHORT",
                    f"job {job.id} cannot finish by its deadline {problem.time.render(job.deadline)}: "
                    "it needs at "
                    f"least {need} min of work and the earliest it can finish is {problem.time.render(end)}",
                    jobs=[job.id],
                )
            )
    reasons += _capacity_reasons(problem, bounds)
    return reasons


def _no_window_reason(problem: Problem, op: Operation) -> dict[str, Any]:
    parts = []
    for machine, duration in op.durations.items():
        calendar = problem.machines[machine].calendar
        longest = max((b - a for a, b in calendar.windows), default=0) if calendar else 0
        parts.append(f"{machine} needs {duration} min, longest window {longest} min")
    hint = "" if op.may_span_breaks else "; allow may_span_breaks or widen the windows"
    return _reason(
        "NO_FEASIBLE_WINDOW",
        f"operation {op.label()} fits in no calendar window of its eligible machines "
        f"({'; '.join(parts)}){hint}",
        operations=[op.key],
        machines=list(op.durations),
    )


def _operator_reason(problem: Problem, op: Operation) -> dict[str, Any] | None:
    assert op.skill is not None
    qualified = problem.qualified(op.skill)
    if not qualified:
        return _reason(
            "NO_QUALIFIED_OPERATOR",
            f"operation {op.label()} needs skill {op.skill!r}, which no operator has",
            operations=[op.key],
        )
    if not any(
        o.calendar is None or o.calendar.fits_whole(op.min_duration, -(2**40), 2**40) for o in qualified
    ):
        return _reason(
            "NO_QUALIFIED_OPERATOR",
            f"operation {op.label()} needs skill {op.skill!r} for {op.min_duration} min, "
            "but no qualified operator "
            f"({', '.join(o.id for o in qualified)}) has a shift that long",
            operations=[op.key],
        )
    return None


def _capacity_reasons(problem: Problem, bounds: _Bounds) -> list[dict[str, Any]]:
    """A machine open for less time than the work only it can do, between the earliest of those
    operations' starts and the latest of their ends (calendars and deadlines shrink that span)."""
    reasons = []
    for machine in problem.machines.values():
        ops = [
            op
            for op in problem.operations.values()
            if list(op.durations) == [machine.id] and op.key not in problem.frozen
        ]
        if not ops:
            continue
        work = sum(op.min_duration for op in ops)
        first = min(bounds.earliest[op.key] for op in ops)
        last = max(bounds.latest[op.key] for op in ops)
        calendar = machine.calendar
        available = max(0, last - first) if calendar is None else calendar.open_minutes(first, last)
        if available >= work:
            continue
        span = f"between {problem.time.render(first)} and {problem.time.render(last)}"
        if calendar is not None:
            code, message = "CALENDAR_TOO_SMALL", f"machine {machine.id} is open {available} min {span}"
        else:
            code, message = (
                "MACHINE_OVERLOADED",
                f"machine {machine.id} has {available} min {span} (deadlines)",
            )
        reasons.append(
            _reason(
                code,
                f"{message}, but the operations only it can run need {work} min",
                machines=[machine.id],
                operations=[op.key for op in ops],
            )
        )
    return reasons


def _frozen_clashes(problem: Problem) -> list[dict[str, Any]]:
    spans: dict[tuple[str, str], list[tuple[int, int, OpKey]]] = {}
    for key, f in problem.frozen.items():
        end = f.end
        spans.setdefault(("machine", f.machine), []).append((f.start, end, key))
        if f.operator is not None:
            spans.setdefault(("operator", f.operator), []).append((f.start, end, key))
    reasons = []
    for (kind, name), items in spans.items():
        items.sort()
        for (_, end_a, a), (start_b, _, b) in pairwise(items):
            if start_b < end_a:
                reasons.append(
                    _reason(
                        "FROZEN_CONFLICT",
                        f"frozen operations {_label(a)} and {_label(b)} overlap on {kind} {name}",
                        operations=[a, b],
                    )
                )
    return reasons


# --- variables and constraints ---------------------------------------------------------------


@dataclass
class _Op:
    """The variables of one operation."""

    start: cp_model.IntVar
    end: cp_model.LinearExprT
    size: cp_model.LinearExprT  # span: work plus any break crossed
    on: dict[str, Any]  # machine -> presence literal (True when it is the only machine)
    by: dict[str, Any] = field(default_factory=dict)  # operator -> presence literal


class _JobShopModel:
    """The CP-SAT model of a problem, and the reading of a solution back into placements."""

    def __init__(self, problem: Problem, bounds: _Bounds) -> None:
        self.problem, self.bounds = problem, bounds
        self.model = cp_model.CpModel()
        self.ops: dict[OpKey, _Op] = {}
        self.on_machine: dict[str, list[tuple[Any, bool]]] = {m: [] for m in problem.machines}
        self.by_operator: dict[str, list[tuple[Any, bool]]] = {o: [] for o in problem.operators}
        self.scale = 1
        for op in problem.operations.values():
            self._operation_variables(op)
        self._job_order()
        self._machines_one_at_a_time()
        self._operators()
        self._setups()
        self._objective()
        self._hint()

    # variables: start_j_o, end_j_o, and one literal per alternative machine

    def _operation_variables(self, op: Operation) -> None:
        frozen = self.problem.frozen.get(op.key)
        name = f"{op.job}_{op.id}"
        if frozen is not None:
            start_value, end_value = frozen.start, frozen.end
            start = self.model.new_constant(start_value)
            interval = self.model.new_fixed_size_interval_var(
                start_value, end_value - start_value, f"frozen_{name}"
            )
            self.on_machine[frozen.machine].append((interval, False))
            self.ops[op.key] = _Op(start, end_value, end_value - start_value, {frozen.machine: True})
            return
        lo, hi = self.bounds.earliest[op.key], self.bounds.latest[op.key]
        start = self.model.new_int_var(lo, max(lo, hi - op.min_duration), f"start_{name}")
        # machines whose calendar cannot hold it are left out (none left: the solver proves infeasibility)
        options = {m: d for m, d in op.durations.items() if self._can_hold(op, m, d, lo, hi)} or dict(
            op.durations
        )
        if len(options) == 1:
            ((machine, duration),) = options.items()
            end, size, interval, keeps_calendar = self._on_machine(op, machine, duration, start, True, lo, hi)
            self.on_machine[machine].append((interval, keeps_calendar))
            self.ops[op.key] = _Op(start, end, size, {machine: True})
            return
        # alternatives share the start; each machine brings its own end when spans differ
        present = {m: self.model.new_bool_var(f"on_{name}_{m}") for m in options}
        self.model.add_exactly_one(present.values())
        end = self.model.new_int_var(lo + op.min_duration, max(lo + op.min_duration, hi), f"end_{name}")
        size: Any = None
        if op.skill is not None:  # an operator's interval needs the span as one variable
            size = self.model.new_int_var(op.min_duration, max(op.min_duration, hi - lo), f"size_{name}")
            self.model.add(end == start + size)
        for machine, duration in options.items():
            end_m, size_m, interval, keeps_calendar = self._on_machine(
                op, machine, duration, start, present[machine], lo, hi
            )
            if size is not None:
                self.model.add(size == size_m).only_enforce_if(present[machine])
            self.model.add(end == end_m).only_enforce_if(present[machine])
            self.on_machine[machine].append((interval, keeps_calendar))
        self.ops[op.key] = _Op(start, end, size, dict(present))

    def _can_hold(self, op: Operation, machine: str, duration: int, lo: int, hi: int) -> bool:
        calendar = self.problem.machines[machine].calendar
        if calendar is None:
            return lo + duration <= hi
        if op.may_span_breaks:
            return calendar.open_minutes(lo, hi) >= duration
        return calendar.fits_whole(duration, lo, hi)

    def _on_machine(
        self,
        op: Operation,
        machine: str,
        duration: int,
        start: cp_model.IntVar,
        present: Any,
        lo: int,
        hi: int,
    ) -> tuple[Any, Any, Any, bool]:
        """(end, size, interval, keeps the calendar) of `op` on `machine`, present when `present`."""
        name = f"{op.job}_{op.id}_{machine}"
        calendar = self.problem.machines[machine].calendar
        if calendar is not None and op.may_span_breaks and duration > 0:
            return self._spanning(op, calendar, duration, start, present, lo, hi, name)
        if calendar is not None:
            # the whole operation lies in one window: its start is in a window that can hold it
            starts = cp_model.Domain.from_intervals(calendar.start_domain(duration))
            self._enforce(self.model.add_linear_expression_in_domain(start, starts), present)
        if present is True:
            interval = self.model.new_fixed_size_interval_var(start, duration, f"task_{name}")
        else:
            interval = self.model.new_optional_fixed_size_interval_var(
                start, duration, present, f"task_{name}"
            )
        return start + duration, duration, interval, True

    def _spanning(
        self,
        op: Operation,
        calendar: Calendar,
        duration: int,
        start: Any,
        present: Any,
        lo: int,
        hi: int,
        name: str,
    ) -> tuple[Any, Any, Any, bool]:
        """An operation that pauses over breaks: span = work + the length of each break it crosses."""
        breaks = [(a, b) for a, b in calendar.breaks() if lo < a and b < hi]
        size = self.model.new_int_var(duration, duration + sum(b - a for a, b in breaks), f"size_{name}")
        end = self.model.new_int_var(lo + duration, max(lo + duration, hi), f"end_{name}")
        if present is True:
            interval = self.model.new_interval_var(start, size, end, f"task_{name}")
        else:
            interval = self.model.new_optional_interval_var(start, size, end, present, f"task_{name}")
        # it starts at an open minute and ends at a close or inside a window
        opens = cp_model.Domain.from_intervals([[a, b - 1] for a, b in calendar.windows])
        closes = cp_model.Domain.from_intervals([[a + 1, b] for a, b in calendar.windows])
        self._enforce(self.model.add_linear_expression_in_domain(start, opens), present)
        self._enforce(self.model.add_linear_expression_in_domain(end, closes), present)
        crossed = []
        for a, b in breaks:
            # crossing break [a, b) means starting before it and ending after it
            starts_before = self.model.new_bool_var(f"starts_before_{name}_{a}")
            ends_after = self.model.new_bool_var(f"ends_after_{name}_{a}")
            crosses = self.model.new_bool_var(f"crosses_{name}_{a}")
            self.model.add(start <= a - 1).only_enforce_if(starts_before)
            self.model.add(start >= a).only_enforce_if(~starts_before)
            self.model.add(end >= b + 1).only_enforce_if(ends_after)
            self.model.add(end <= b).only_enforce_if(~ends_after)
            self.model.add_bool_and([starts_before, ends_after]).only_enforce_if(crosses)
            self.model.add_bool_or([~starts_before, ~ends_after, crosses])
            crossed.append((b - a) * crosses)
        self._enforce(self.model.add(size == duration + sum(crossed)), present)
        return end, size, interval, False

    def _enforce(self, constraint: cp_model.Constraint, present: Any) -> None:
        if present is not True:
            constraint.only_enforce_if(present)

    # constraints

    def _job_order(self) -> None:
        # the operations of a job run in order
        for job in self.problem.jobs:
            for before, after in pairwise(job.operations):
                if before.key in self.problem.frozen and after.key in self.problem.frozen:
                    continue  # both facts already
                self.model.add(self.ops[after.key].start >= self.ops[before.key].end)

    def _machines_one_at_a_time(self) -> None:
        # a machine runs one operation at a time; its closed stretches are fixed intervals
        for machine, occupations in self.on_machine.items():
            self._no_overlap(machine, occupations, self.problem.machines[machine].calendar)

    def _no_overlap(self, name: str, occupations: list[tuple[Any, bool]], calendar: Calendar | None) -> None:
        everything = [interval for interval, _ in occupations]
        if calendar is None:
            if len(everything) > 1:
                self.model.add_no_overlap(everything)
            return
        closed = [
            self.model.new_fixed_size_interval_var(a, b - a, f"closed_{name}_{a}")
            for a, b in _closed_stretches(calendar, self.bounds.lo, self.bounds.horizon)
        ]
        keeping = [interval for interval, keeps in occupations if keeps]
        if len(keeping) == len(everything):
            self.model.add_no_overlap(everything + closed)
            return
        # operations that pause over breaks, and frozen ones, may cover closed time: they only
        # exclude each other; the rest also exclude the closed stretches
        self.model.add_no_overlap(everything)
        if keeping:
            self.model.add_no_overlap(keeping + closed)

    def _operators(self) -> None:
        # an operation needing a skill occupies one qualified operator for its whole span
        for op in self.problem.operations.values():
            if op.skill is None:
                continue
            frozen = self.problem.frozen.get(op.key)
            if frozen is not None and frozen.operator is not None:
                candidates = [frozen.operator]
            else:
                candidates = [o.id for o in self.problem.qualified(op.skill)]
            v = self.ops[op.key]
            name = f"{op.job}_{op.id}"
            if len(candidates) == 1:
                v.by = {candidates[0]: True}
            else:
                v.by = {o: self.model.new_bool_var(f"by_{name}_{o}") for o in candidates}
                self.model.add_exactly_one(v.by.values())
            for operator, present in v.by.items():
                if present is True:
                    interval = self.model.new_interval_var(v.start, v.size, v.end, f"work_{name}_{operator}")
                else:
                    interval = self.model.new_optional_interval_var(
                        v.start, v.size, v.end, present, f"work_{name}_{operator}"
                    )
                self.by_operator[operator].append((interval, frozen is None))
        # an operator works one operation at a time, inside their shifts
        for operator, occupations in self.by_operator.items():
            self._no_overlap(f"operator_{operator}", occupations, self.problem.operators[operator].calendar)

    def _setups(self) -> None:
        # a family change on a machine waits for the setup: a circuit picks each operation's direct successor
        if not self.problem.setups:
            return
        for machine in self.problem.machines:
            # a zero-length operation (a milestone) takes no machine time and needs no setup
            ops = [
                op
                for op in self.problem.operations.values()
                if machine in self.ops[op.key].on and op.durations[machine] > 0
            ]
            if not any(
                self.problem.setups.between(machine, a.family, b.family) > 0
                for a in ops
                for b in ops
                if a is not b
            ):
                continue
            arcs: list[tuple[int, int, Any]] = []
            for i, a in enumerate(ops, start=1):
                present = self.ops[a.key].on[machine]
                if present is not True:
                    arcs.append((i, i, ~present))  # not on this machine: left out of its circuit
                arcs.append((0, i, self.model.new_bool_var(f"first_{machine}_{a.job}_{a.id}")))
                arcs.append((i, 0, self.model.new_bool_var(f"last_{machine}_{a.job}_{a.id}")))
                for j, b in enumerate(ops, start=1):
                    if a is b or (a.job == b.job and b.position < a.position):
                        continue  # an earlier operation of the same job never directly follows
                    follows = self.model.new_bool_var(f"next_{machine}_{a.job}_{a.id}_{b.job}_{b.id}")
                    arcs.append((i, j, follows))
                    if a.key in self.problem.frozen and b.key in self.problem.frozen:
                        continue
                    setup = self.problem.setups.between(machine, a.family, b.family)
                    self.model.add(self.ops[b.key].start >= self.ops[a.key].end + setup).only_enforce_if(
                        follows
                    )
            if all(self.ops[op.key].on[machine] is not True for op in ops):
                empty = self.model.new_bool_var(f"empty_{machine}")
                arcs.append((0, 0, empty))
                for op in ops:
                    self.model.add_implication(empty, ~self.ops[op.key].on[machine])
            self.model.add_circuit(arcs)

    # objective

    def _objective(self) -> None:
        weights = self.problem.objective
        terms: list[tuple[Any, float]] = []
        ends = {job.id: self.ops[job.operations[-1].key].end for job in self.problem.jobs}
        if "makespan" in weights:
            # makespan = the latest end; bounded below by the longest job and the busiest machine
            lb = min(self.bounds.makespan_lb, self.bounds.horizon)
            makespan = self.model.new_int_var(lb, max(lb, self.bounds.horizon), "makespan")
            for end in ends.values():
                self.model.add(end <= makespan)
            terms.append((makespan, weights["makespan"]))
        for job in self.problem.jobs:
            # tardiness_j = max(0, end_j - due_j)
            weight = weights.get("total_tardiness", 0.0) + weights.get("weighted_tardiness", 0.0) * job.weight
            if job.due is None or weight == 0 or self.bounds.latest[job.operations[-1].key] <= job.due:
                continue
            tardiness = self.model.new_int_var(0, self.bounds.horizon - job.due, f"tardiness_{job.id}")
            self.model.add_max_equality(tardiness, [ends[job.id] - job.due, 0])
            terms.append((tardiness, weight))
        self.scale = _integer_scale([w for _, w in terms])
        self.model.minimize(sum(round(w * self.scale) * var for var, w in terms))

    def _hint(self) -> None:
        # a previous plan (re-planning after a disruption) is where the search starts
        for p in self.problem.hint:
            v = self.ops.get(p.key)
            if v is None or p.key in self.problem.frozen:
                continue
            self.model.add_hint(v.start, p.start)
            for machine, present in v.on.items():
                if present is not True:
                    self.model.add_hint(present, machine == p.machine)
            for operator, present in v.by.items():
                if present is not True:
                    self.model.add_hint(present, operator == p.operator)

    # read

    def read(self, solver: cp_model.CpSolver) -> list[Placement]:
        placements = []
        for key, v in self.ops.items():
            machine = next(
                m for m, present in v.on.items() if present is True or solver.boolean_value(present)
            )
            operator = next(
                (o for o, present in v.by.items() if present is True or solver.boolean_value(present)), None
            )
            placements.append(
                Placement(
                    key[0], key[1], machine, operator, int(solver.value(v.start)), int(solver.value(v.end))
                )
            )
        return placements


def _closed_stretches(calendar: Calendar, lo: int, hi: int) -> list[tuple[int, int]]:
    """Closed time inside [lo, hi): before the first window, between windows, after the last."""
    if not calendar.windows:
        return [(lo, hi)] if hi > lo else []
    stretches = [(lo, calendar.windows[0][0]), *calendar.breaks(), (calendar.windows[-1][1], hi)]
    return [(max(a, lo), min(b, hi)) for a, b in stretches if min(b, hi) > max(a, lo)]


def _integer_scale(weights: Sequence[float]) -> int:
    """The smallest power of ten that makes every objective weight an integer (CP-SAT needs integers)."""
    for digits in range(7):
        scale = 10**digits
        if all(abs(w * scale - round(w * scale)) < 1e-9 for w in weights):
            return scale
    return 10**6


# --- solve -----------------------------------------------------------------------------------


def _set_parameters(
    solver: cp_model.CpSolver,
    seconds: float,
    workers: int,
    seed: int,
    *,
    makespan_only: bool,
    operations: int,
) -> None:
    params = solver.parameters
    params.max_time_in_seconds = max(0.01, seconds)
    params.num_workers, params.random_seed = workers, seed
    params.log_search_progress = False
    # precedences learned during the search strengthen each NoOverlap's propagation; on job shops it
    # proves optima faster than the default (benchmarks/solver.py)
    params.use_dynamic_precedence_in_disjunctive = True
    if not makespan_only or workers < 2:
        return
    # the makespan's lower bound (busiest machine, longest job) is often the optimum: a search that
    # climbs from it closes such gaps at once
    if workers == 2 and operations <= _PROVABLE_OPERATIONS:
        # a problem small enough to prove: both workers search completely, one from each side
        params.num_full_subsolvers = 2
        params.subsolvers.extend(["default_lp", "objective_lb_search"])
    else:
        # otherwise the climbing search joins the default portfolio and its neighbourhood search (LNS)
        params.extra_subsolvers.append("objective_lb_search")


def _solve_cancellably(solver: cp_model.CpSolver, model: cp_model.CpModel, ctx: ToolContext) -> int:
    """Solve, stopping the search early if the run is canceled (the best plan so far is kept)."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.2):
            if ctx.is_canceled():
                solver.stop_search()
                return

    watcher = threading.Thread(target=watch, name="solver-cancel-watch", daemon=True)
    watcher.start()
    try:
        return solver.solve(model)
    finally:
        done.set()


def _scaled_bound(solver: cp_model.CpSolver, jobshop: _JobShopModel) -> float | None:
    bound = solver.best_objective_bound
    return None if bound != bound or abs(bound) > 1e18 else bound / jobshop.scale  # NaN or infinite: none


# --- read: left shift and the answer ---------------------------------------------------------


def _left_shift(problem: Problem, bounds: _Bounds, placements: list[Placement]) -> list[Placement]:
    """Start every operation as early as its job, machine sequence, setups, operator and calendars
    allow, keeping each machine's and operator's order. Nothing moves later, so no regular objective
    gets worse, and every constraint the plan met still holds."""
    # in start order, each operation comes after its job predecessor and its machine/operator predecessors
    order = sorted(placements, key=lambda p: (p.start, p.end, problem.operations[p.key].position))
    job_free: dict[str, int] = {}
    machine_last: dict[str, tuple[int, str | None]] = {}
    operator_free: dict[str, int] = {}
    shifted: dict[OpKey, Placement] = {}
    for p in order:
        op = problem.operations[p.key]
        moved = p
        if p.key not in problem.frozen:
            ready = max(bounds.earliest[p.key], job_free.get(p.job, bounds.earliest[p.key]))
            if p.machine in machine_last:
                last_end, last_family = machine_last[p.machine]
                setup = problem.setups.between(p.machine, last_family, op.family) if p.end > p.start else 0
                ready = max(ready, last_end + setup)
            if p.operator is not None:
                ready = max(ready, operator_free.get(p.operator, ready))
            start = _earliest_start(problem, op, p, ready)
            if start is not None and start < p.start:
                moved = _placed_at(problem, op, p, start)
        shifted[p.key] = moved
        # the latest end so far, not the last processed: a zero-length operation may sit inside another
        job_free[p.job] = max(job_free.get(p.job, moved.end), moved.end)
        if moved.end > moved.start and moved.end >= machine_last.get(p.machine, (moved.end, None))[0]:
            machine_last[p.machine] = (moved.end, op.family)
        if p.operator is not None:
            operator_free[p.operator] = max(operator_free.get(p.operator, moved.end), moved.end)
    return [shifted[p.key] for p in placements]


def _earliest_start(problem: Problem, op: Operation, p: Placement, ready: int) -> int | None:
    """Earliest start >= ready on p's machine and with p's operator, by their calendars."""
    machine_calendar = problem.machines[p.machine].calendar
    operator_calendar = problem.operators[p.operator].calendar if p.operator in problem.operators else None
    duration = op.durations[p.machine]
    t = ready
    while t <= p.start:
        start, end = _machine_slot(op, machine_calendar, duration, t)
        if start is None or end is None:
            return None
        if operator_calendar is None or operator_calendar.contains(start, end):
            return start
        window = operator_calendar.window_at(start)
        following = operator_calendar.next_open(window[1] if window else start)
        if following is None:
            return None
        t = max(following, start + 1)
    return None


def _machine_slot(
    op: Operation, calendar: Calendar | None, duration: int, t: int
) -> tuple[int | None, int | None]:
    if calendar is None:
        return t, t + duration
    if op.may_span_breaks and duration > 0:
        start = calendar.next_open(t)
        return start, None if start is None else calendar.finish(start, duration)
    start = calendar.next_fit(t, duration)
    return start, None if start is None else start + duration


def _placed_at(problem: Problem, op: Operation, p: Placement, start: int) -> Placement:
    _, end = _machine_slot(op, problem.machines[p.machine].calendar, op.durations[p.machine], start)
    assert end is not None
    return Placement(p.job, p.operation, p.machine, p.operator, start, end)


def _answer(
    problem: Problem,
    status: str,
    plan: list[Placement],
    bound: float | None,
    clock: float,
    *,
    reasons: list[dict[str, Any]] | None = None,
    solver: cp_model.CpSolver | None = None,
) -> dict[str, Any]:
    render = problem.time.render
    out: dict[str, Any] = {
        "status": status,
        "objective": None,
        "bound": None if bound is None else _number(bound),
        "gap": None,
        "makespan": None,
        "wall_s": 0.0,
        "assignments": [],
    }
    if plan:
        terms = objective_terms(problem, plan)
        objective = terms["objective"]
        if bound is not None and objective <= bound + 1e-9:
            status = "optimal"  # the plan meets the proven bound: nothing better exists
        out.update(
            status=status,
            objective=_number(objective),
            gap=None if bound is None else round(abs(objective - bound) / max(1.0, abs(objective)), 6),
            makespan=int(terms["makespan"]),
            finish=render(int(terms["makespan"])),
            terms={t: _number(terms[t]) for t in ("makespan", "total_tardiness", "weighted_tardiness")},
            assignments=[
                {
                    "job": p.job,
                    "operation": p.operation,
                    "machine": p.machine,
                    "operator": p.operator,
                    "start": render(p.start),
                    "end": render(p.end),
                }
                for p in plan
            ],
        )
    if reasons:
        out["reasons"] = [
            {**r, "operations": [{"job": j, "operation": o} for j, o in r.get("operations", [])]}
            for r in reasons
        ]
        out["reason"] = reasons[0]["message"]
    if problem.time.iso and problem.time.origin is not None:
        out["horizon_start"] = problem.time.origin.isoformat()
    if solver is not None:
        out["search"] = {
            "wall_s": round(solver.wall_time, 4),
            "branches": int(solver.num_branches),
            "conflicts": int(solver.num_conflicts),
            "workers": int(solver.parameters.num_workers),
        }
    out["summary"] = {
        "status": out["status"],
        "objective": out["objective"],
        "makespan": out["makespan"],
        "finish": out.get("finish"),
        "operations": len(plan),
        "late_jobs": sum(1 for o in _late(problem, plan)),
    }
    out["wall_s"] = round(time.monotonic() - clock, 4)
    return out


def _late(problem: Problem, plan: list[Placement]) -> list[str]:
    ends: dict[str, int] = {}
    for p in plan:
        ends[p.job] = max(ends.get(p.job, p.end), p.end)
    return [
        job.id for job in problem.jobs if job.due is not None and job.id in ends and ends[job.id] > job.due
    ]


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 6)


def _reason(code: str, message: str, **refs: list[Any]) -> dict[str, Any]:
    return {"code": code, "message": message, **refs}


def _label(key: OpKey) -> str:
    return f"{key[0]}/{key[1]}"
