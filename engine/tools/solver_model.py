"""The CP-SAT model of solver.solve and its search, in the passes the style asks for: variables →
constraints → objective → hint → solve → read. Why the formulation is shaped so:

- An operation with one eligible machine is one fixed-size interval with no literal, so the plain
  job shop is exactly the textbook model, with tighter domains (heads, tails, a makespan lower bound).
- Alternatives share the operation's start: one optional fixed-size interval and one presence
  literal per eligible machine, exactly one present.
- Calendars restrict starts to the windows that can hold the operation, and the closed stretches
  are fixed intervals in the machine's NoOverlap, so disjunctive reasoning sees the lost capacity.
- An operation allowed to span breaks is modelled in working time: the window it starts in and the
  one it ends in are two index variables, and element constraints give its span (its work plus the
  closed minutes between those windows): a handful of constraints whatever the number of breaks.
- Setups: a circuit over a machine's operations chooses direct successors; a chosen arc delays the
  successor by the setup between the two families. Operations that cannot move (frozen ones, and in
  a neighbourhood model the ones outside it) keep their order, so only consecutive ones are linked.
- An operation needing a skill occupies one qualified operator for its whole span.

The same model serves a whole problem and a neighbourhood of a plan (solver_lns): there, only the
free operations have variables, inside a time window; the others are fixed intervals where they can
meet the free ones, and the objective adds a compaction term (free operations end early) to the
problem's own, which may not get worse.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from ortools.sat.python import cp_model

from engine.context import ToolContext
from engine.tools.planning_model import Calendar, Operation, OpKey, Placement, Problem
from engine.tools.solver_bounds import Bounds
from store.errors import ToolError

__all__ = ["JobShopModel", "Neighbourhood", "Progress", "number", "scaled_bound", "search", "solve_model"]

_PROVABLE_OPERATIONS = 200  # job shops up to this size are usually proven optimal in seconds to minutes


@dataclass
class Progress:
    """The anytime curve of one solve: a point for the first plan and for each better one, in seconds
    since the tool started, with the proven bound at that moment (None before there is one)."""

    clock: float  # time.monotonic() when the tool started
    known: float | None = None  # a bound proven before the search (solver_bounds), if any
    points: list[dict[str, Any]] = field(default_factory=list)

    def add(self, objective: float, bound: float | None = None) -> None:
        if self.points and objective >= self.points[-1]["objective"]:
            return  # not an improvement (the search's first solution is often the hint itself)
        bound = max((b for b in (bound, self.known) if b is not None), default=None)
        self.points.append(
            {
                "t_s": round(time.monotonic() - self.clock, 3),
                "objective": number(objective),
                "bound": None if bound is None else number(bound),
            }
        )


@dataclass(frozen=True)
class Neighbourhood:
    """The part of a plan a model may change: the `free` operations, inside [lo, hi); every other
    operation stays where `plan` has it. `limit` is the problem's objective the answer may not exceed."""

    free: frozenset[OpKey]
    plan: Mapping[OpKey, Placement]
    lo: int
    hi: int
    limit: float


def search(
    problem: Problem,
    bounds: Bounds,
    stop_at: float,
    workers: int,
    seed: int,
    ctx: ToolContext,
    *,
    start_from: Sequence[Placement] | None = None,
    progress: Progress | None = None,
) -> tuple[JobShopModel, cp_model.CpSolver, cp_model.CpSolverStatus]:
    """Build the whole problem's model and search it until `stop_at` (a time.monotonic() instant;
    earlier if the run is canceled), from a complete plan when one is given, else leaning towards the
    problem's own hint. A job shop small enough to prove is searched without the complete plan as a
    hint: following it slowed the proofs of the classic instances 5-10x (benchmarks/solver.py), and the
    plan is kept anyway if the search finds nothing better."""
    jobshop = JobShopModel(problem, bounds)
    prove = set(problem.objective) == {"makespan"} and len(problem.operations) <= _PROVABLE_OPERATIONS
    if start_from and not prove:
        jobshop.hint(start_from)
    elif problem.hint:
        jobshop.hint_partial(problem.hint)
    solver, status = solve_model(
        jobshop, stop_at - time.monotonic(), workers, seed, ctx, progress=progress, prove=prove
    )
    return jobshop, solver, status


def solve_model(
    jobshop: JobShopModel,
    seconds: float,
    workers: int,
    seed: int,
    ctx: ToolContext,
    *,
    progress: Progress | None = None,
    prove: bool = False,
) -> tuple[cp_model.CpSolver, cp_model.CpSolverStatus]:
    """Search a built model for `seconds`; MODEL_INVALID is a bug here, never the user's data."""
    solver = cp_model.CpSolver()
    _set_parameters(solver, seconds, workers, seed, prove=prove, makespan=jobshop.makespan is not None)
    recorder = _Recorder(progress, jobshop.scale) if progress is not None else None
    status = _solve_cancellably(solver, jobshop.model, ctx, recorder)
    if status == cp_model.MODEL_INVALID:
        raise ToolError(
            f"the CP-SAT model is invalid: {jobshop.model.validate()}", code="SOLVER_MODEL_INVALID"
        )
    return solver, status


@dataclass
class _Span:
    """Working-time variables of an operation that pauses over breaks on one machine: the open window
    it starts in and the one it ends in (indices into the calendar's windows)."""

    first: cp_model.IntVar
    last: cp_model.IntVar
    end: cp_model.IntVar
    size: cp_model.IntVar


@dataclass
class _Op:
    """The variables of one operation (constants for one that cannot move)."""

    start: Any  # start_j_o
    end: Any  # a variable, or start + duration on a single machine, or a constant
    size: Any  # span: work plus any break crossed (a variable only where one is needed)
    on: dict[str, Any]  # machine -> presence literal (True when it is the only machine)
    by: dict[str, Any] = field(default_factory=dict)  # operator -> presence literal
    spans: dict[str, _Span] = field(default_factory=dict)  # machine -> working time, if it may pause
    fixed: bool = False


@dataclass
class _Circuit:
    """One machine's successor literals: nodes 1..n are its operations, 0 is the start and the end."""

    nodes: list[OpKey]
    arcs: dict[tuple[int, int], Any]
    empty: Any | None


class JobShopModel:
    """The CP-SAT model of a problem (or of a neighbourhood of a plan), and the reading of a solution
    back into placements."""

    def __init__(self, problem: Problem, bounds: Bounds, neighbourhood: Neighbourhood | None = None) -> None:
        self.problem, self.bounds, self.neighbourhood = problem, bounds, neighbourhood
        self.model = cp_model.CpModel()
        self.lo, self.hi = (
            (bounds.lo, bounds.horizon) if neighbourhood is None else (neighbourhood.lo, neighbourhood.hi)
        )
        self.fixed = self._fixed_placements()
        self.ops: dict[OpKey, _Op] = {}
        self.on_machine: dict[str, list[tuple[Any, bool]]] = {m: [] for m in problem.machines}
        self.by_operator: dict[str, list[tuple[Any, bool]]] = {o: [] for o in problem.operators}
        self.circuits: dict[str, _Circuit] = {}
        self.tardiness: dict[str, Any] = {}
        self.makespan: Any = None
        self.scale = 1
        for op in problem.operations.values():
            if op.key in self.fixed:
                self._fixed_variables(op, self.fixed[op.key])
            elif self._is_free(op.key):
                self._operation_variables(op)
        self._job_order()
        self._machines_one_at_a_time()
        self._operators()
        self._setups()
        self._objective()

    def _is_free(self, key: OpKey) -> bool:
        if key in self.problem.frozen:
            return False
        return self.neighbourhood is None or key in self.neighbourhood.free

    def _fixed_placements(self) -> dict[OpKey, Placement]:
        """Operations that cannot move and may meet a free one: frozen ones, and in a neighbourhood
        the others whose time on a machine or with an operator comes near its window."""
        fixed = {
            key: Placement(key[0], key[1], f.machine, f.operator, f.start, f.end)
            for key, f in self.problem.frozen.items()
        }
        if self.neighbourhood is None:
            return fixed
        reach = max([0, *self.problem.setups.by_machine.values(), *self.problem.setups.everywhere.values()])
        for key, p in self.neighbourhood.plan.items():
            if key not in self.neighbourhood.free and p.end + reach > self.lo and p.start - reach < self.hi:
                fixed[key] = p
        return fixed

    # variables: start_j_o, end_j_o, and one literal per alternative machine

    def _fixed_variables(self, op: Operation, p: Placement) -> None:
        # an operation that cannot move is a fixed interval where it is; it may cover closed time if it
        # is frozen, or if it pauses over breaks, so it only excludes the operations, not the breaks
        interval = self.model.new_fixed_size_interval_var(p.start, p.end - p.start, f"fixed_{op.job}_{op.id}")
        self.on_machine[p.machine].append((interval, False))
        if p.operator is not None and p.end > p.start:
            self.by_operator[p.operator].append((interval, False))
        self.ops[op.key] = _Op(p.start, p.end, p.end - p.start, {p.machine: True}, fixed=True)

    def _domain(self, op: Operation) -> tuple[int, int]:
        """[earliest start, latest end] of a free operation: its bounds, the window, and its job's
        neighbours where those cannot move."""
        lo = max(self.bounds.earliest[op.key], self.lo)
        hi = min(self.bounds.latest[op.key], self.hi)
        if self.neighbourhood is not None:
            operations = self.problem.job_by_id[op.job].operations
            if op.position > 0 and not self._is_free(operations[op.position - 1].key):
                lo = max(lo, self._placement(operations[op.position - 1].key).end)
            if op.position + 1 < len(operations) and not self._is_free(operations[op.position + 1].key):
                hi = min(hi, self._placement(operations[op.position + 1].key).start)
        return lo, hi

    def _placement(self, key: OpKey) -> Placement:
        fixed = self.fixed.get(key)
        if fixed is not None:
            return fixed
        assert self.neighbourhood is not None
        return self.neighbourhood.plan[key]

    def _operation_variables(self, op: Operation) -> None:
        name = f"{op.job}_{op.id}"
        lo, hi = self._domain(op)
        start = self.model.new_int_var(lo, max(lo, hi - op.min_duration), f"start_{name}")
        # machines whose calendar cannot hold it are left out (none left: the solver proves infeasibility)
        options = {m: d for m, d in op.durations.items() if self._can_hold(op, m, d, lo, hi)} or dict(
            op.durations
        )
        v = self.ops[op.key] = _Op(start, None, None, {})
        if len(options) == 1:
            ((machine, duration),) = options.items()
            v.end, v.size, interval, keeps_calendar = self._on_machine(v, op, machine, duration, True, lo, hi)
            self.on_machine[machine].append((interval, keeps_calendar))
            v.on = {machine: True}
            return
        # alternatives share the start; each machine brings its own end when spans differ
        v.on = {m: self.model.new_bool_var(f"on_{name}_{m}") for m in options}
        self.model.add_exactly_one(v.on.values())
        v.end = self.model.new_int_var(lo + op.min_duration, max(lo + op.min_duration, hi), f"end_{name}")
        if op.skill is not None:  # an operator's interval needs the span as one variable
            v.size = self.model.new_int_var(op.min_duration, max(op.min_duration, hi - lo), f"size_{name}")
            self.model.add(v.end == start + v.size)
        for machine, duration in options.items():
            end_m, size_m, interval, keeps_calendar = self._on_machine(
                v, op, machine, duration, v.on[machine], lo, hi
            )
            if v.size is not None:
                self.model.add(v.size == size_m).only_enforce_if(v.on[machine])
            self.model.add(v.end == end_m).only_enforce_if(v.on[machine])
            self.on_machine[machine].append((interval, keeps_calendar))

    def _can_hold(self, op: Operation, machine: str, duration: int, lo: int, hi: int) -> bool:
        calendar = self.problem.machines[machine].calendar
        if calendar is None:
            return lo + duration <= hi
        if op.may_span_breaks:
            return calendar.open_minutes(lo, hi) >= duration
        return calendar.fits_whole(duration, lo, hi)

    def _on_machine(
        self, v: _Op, op: Operation, machine: str, duration: int, present: Any, lo: int, hi: int
    ) -> tuple[Any, Any, Any, bool]:
        """(end, size, interval, keeps the calendar) of `op` on `machine`, present when `present`."""
        name = f"{op.job}_{op.id}_{machine}"
        calendar = self.problem.machines[machine].calendar
        if calendar is not None and op.may_span_breaks and duration > 0:
            span = v.spans[machine] = self._spanning(calendar, duration, v.start, present, lo, hi, name)
            if present is True:
                interval = self.model.new_interval_var(v.start, span.size, span.end, f"task_{name}")
            else:
                interval = self.model.new_optional_interval_var(
                    v.start, span.size, span.end, present, f"task_{name}"
                )
            return span.end, span.size, interval, False
        if calendar is not None:
            # the whole operation lies in one window: its start is in a window that can hold it
            starts = cp_model.Domain.from_intervals(calendar.start_domain(duration))
            self._enforce(self.model.add_linear_expression_in_domain(v.start, starts), present)
        if present is True:
            interval = self.model.new_fixed_size_interval_var(v.start, duration, f"task_{name}")
        else:
            interval = self.model.new_optional_fixed_size_interval_var(
                v.start, duration, present, f"task_{name}"
            )
        return v.start + duration, duration, interval, True

    def _spanning(
        self, calendar: Calendar, duration: int, start: Any, present: Any, lo: int, hi: int, name: str
    ) -> _Span:
        """An operation that pauses over breaks, in working time: it starts at an open minute of window
        `first` and ends inside or at the close of window `last`, and its span is its work plus the
        closed minutes between those two windows."""
        windows = calendar.windows
        reach = [k for k, (a, b) in enumerate(windows) if b > lo and a < hi] or [0]
        opens = [a for a, _ in windows]
        closes = [b for _, b in windows]
        closed_before, open_so_far = [], 0  # closed minutes from the first window's open to each window's
        for a, b in windows:
            closed_before.append(a - opens[0] - open_so_far)
            open_so_far += b - a
        first = self.model.new_int_var(reach[0], reach[-1], f"first_window_{name}")
        last = self.model.new_int_var(reach[0], reach[-1], f"last_window_{name}")
        self.model.add(last >= first)
        start_open, start_close, end_open, end_close = (
            self.model.new_int_var(min(values), max(values), f"{what}_{name}")
            for what, values in (("so", opens), ("sc", closes), ("eo", opens), ("ec", closes))
        )
        closed_at_start, closed_at_end = (
            self.model.new_int_var(0, closed_before[-1], f"{what}_{name}") for what in ("cs", "ce")
        )
        self.model.add_element(first, opens, start_open)
        self.model.add_element(first, closes, start_close)
        self.model.add_element(last, opens, end_open)
        self.model.add_element(last, closes, end_close)
        self.model.add_element(first, closed_before, closed_at_start)
        self.model.add_element(last, closed_before, closed_at_end)
        breaks = max(0, closed_before[reach[-1]] - closed_before[reach[0]])
        size = self.model.new_int_var(duration, duration + breaks, f"size_{name}")
        end = self.model.new_int_var(lo + duration, max(lo + duration, hi), f"end_{name}")
        for constraint in (
            self.model.add(start >= start_open),  # it starts at an open minute of its first window
            self.model.add(start <= start_close - 1),
            self.model.add(end >= end_open + 1),  # and ends inside its last window or at its close
            self.model.add(end <= end_close),
            self.model.add(size == duration + closed_at_end - closed_at_start),
            self.model.add(end == start + size),
        ):
            self._enforce(constraint, present)
        return _Span(first, last, end, size)

    def _enforce(self, constraint: cp_model.Constraint, present: Any) -> None:
        if present is not True:
            constraint.only_enforce_if(present)

    # constraints

    def _job_order(self) -> None:
        # the operations of a job run in order (a neighbour that cannot move bounds the domain instead)
        for job in self.problem.jobs:
            for before, after in pairwise(job.operations):
                if self._is_free(before.key) and self._is_free(after.key):
                    self.model.add(self.ops[after.key].start >= self.ops[before.key].end)
                elif self._is_free(after.key) and before.key in self.problem.frozen:
                    self.model.add(self.ops[after.key].start >= self.problem.frozen[before.key].end)
                elif self._is_free(before.key) and after.key in self.problem.frozen:
                    self.model.add(self.ops[before.key].end <= self.problem.frozen[after.key].start)

    def _machines_one_at_a_time(self) -> None:
        # a machine runs one operation at a time; its closed stretches are fixed intervals
        for machine, occupations in self.on_machine.items():
            self._no_overlap(machine, occupations, self.problem.machines[machine].calendar)

    def _no_overlap(self, name: str, occupations: list[tuple[Any, bool]], calendar: Calendar | None) -> None:
        everything = [interval for interval, _ in occupations]
        keeping = [interval for interval, keeps in occupations if keeps]
        if calendar is None or not keeping:
            if len(everything) > 1:
                self.model.add_no_overlap(everything)
            return
        closed = [
            self.model.new_fixed_size_interval_var(a, b - a, f"closed_{name}_{a}")
            for a, b in _closed_stretches(calendar, self.lo, self.hi)
        ]
        if len(keeping) == len(everything):
            self.model.add_no_overlap(everything + closed)
            return
        # operations that pause over breaks, and those that cannot move, may cover closed time: they
        # only exclude each other; the rest also exclude the closed stretches
        self.model.add_no_overlap(everything)
        self.model.add_no_overlap(keeping + closed)

    def _operators(self) -> None:
        # an operation needing a skill occupies one qualified operator for its whole span
        for op in self.problem.operations.values():
            v = self.ops.get(op.key)
            if op.skill is None or v is None or (v.fixed and self._placement(op.key).operator is not None):
                continue  # a fixed one with its operator holds them already (see _fixed_variables)
            # a frozen one given without its operator still needs one: it is chosen, at the frozen times
            candidates = [o.id for o in self.problem.qualified(op.skill)]
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
                self.by_operator[operator].append((interval, not v.fixed))
        # an operator works one operation at a time, inside their shifts
        for operator, occupations in self.by_operator.items():
            self._no_overlap(f"operator_{operator}", occupations, self.problem.operators[operator].calendar)

    def _setups(self) -> None:
        # a family change on a machine waits for the setup: a circuit picks each operation's direct successor
        if not self.problem.setups:
            return
        for machine in self.problem.machines:
            # a zero-length operation (a milestone) takes no machine time and needs no setup
            free = [
                op
                for op in self.problem.operations.values()
                if op.key in self.ops
                and not self.ops[op.key].fixed
                and machine in self.ops[op.key].on
                and op.durations[machine] > 0
            ]
            fixed = sorted(
                (
                    self.problem.operations[k]
                    for k, p in self.fixed.items()
                    if p.machine == machine and p.end > p.start
                ),
                key=lambda op: (self.fixed[op.key].start, self.fixed[op.key].end),
            )
            if not free:
                continue  # fixed operations keep the order (and the setups) they have
            ops = free + fixed
            families = {op.family for op in ops}
            if not any(self.problem.setups.between(machine, a, b) > 0 for a in families for b in families):
                continue
            circuit = self.circuits[machine] = _Circuit([op.key for op in ops], {}, None)
            arcs: list[tuple[int, int, Any]] = []
            index = {op.key: i for i, op in enumerate(ops, start=1)}
            for a in free:
                present = self.ops[a.key].on[machine]
                if present is not True:
                    arcs.append((index[a.key], index[a.key], ~present))  # not here: left out of the circuit
            # the fixed ones keep their order: only the first can open the sequence, the last close it
            starts_allowed = free + fixed[:1]
            ends_allowed = free + fixed[-1:]
            for a in starts_allowed:
                circuit.arcs[0, index[a.key]] = self.model.new_bool_var(f"first_{machine}_{a.job}_{a.id}")
            for a in ends_allowed:
                circuit.arcs[index[a.key], 0] = self.model.new_bool_var(f"last_{machine}_{a.job}_{a.id}")
            pairs = [(a, b) for a in free for b in ops if a is not b]
            pairs += [(a, b) for a in fixed for b in free]
            pairs += list(pairwise(fixed))
            for a, b in pairs:
                if a.job == b.job and b.position < a.position:
                    continue  # an earlier operation of the same job never directly follows
                follows = circuit.arcs[index[a.key], index[b.key]] = self.model.new_bool_var(
                    f"next_{machine}_{a.job}_{a.id}_{b.job}_{b.id}"
                )
                if a.key in self.problem.frozen and b.key in self.problem.frozen:
                    continue  # facts: frozen neighbours are exempt from setups
                setup = self.problem.setups.between(machine, a.family, b.family)
                self.model.add(self.ops[b.key].start >= self.ops[a.key].end + setup).only_enforce_if(follows)
            arcs += [(i, j, literal) for (i, j), literal in circuit.arcs.items()]
            if not fixed and all(self.ops[op.key].on[machine] is not True for op in free):
                circuit.empty = self.model.new_bool_var(f"empty_{machine}")
                arcs.append((0, 0, circuit.empty))
                for op in free:
                    self.model.add_implication(circuit.empty, ~self.ops[op.key].on[machine])
            self.model.add_circuit(arcs)

    # objective

    def _objective(self) -> None:
        weights = self.problem.objective
        terms: list[tuple[Any, float]] = []
        ends = {
            job.id: self.ops[job.operations[-1].key].end
            for job in self.problem.jobs
            if self._is_free(job.operations[-1].key)
        }
        if "makespan" in weights:
            # makespan = the latest end; bounded below by the longest job and the busiest machine (and,
            # in a neighbourhood, by everything that stays)
            lb = min(max(self.bounds.makespan_lb, self._fixed_end()), self.bounds.horizon)
            self.makespan = self.model.new_int_var(lb, max(lb, self.bounds.horizon), "makespan")
            for end in ends.values():
                self.model.add(end <= self.makespan)
            terms.append((self.makespan, weights["makespan"]))
        for job in self.problem.jobs:
            # tardiness_j = max(0, end_j - due_j)
            weight = weights.get("total_tardiness", 0.0) + weights.get("weighted_tardiness", 0.0) * job.weight
            last = job.operations[-1].key
            if job.due is None or weight == 0 or job.id not in ends or self._domain_end(last) <= job.due:
                continue
            tardiness = self.model.new_int_var(0, self.bounds.horizon - job.due, f"tardiness_{job.id}")
            self.model.add_max_equality(tardiness, [ends[job.id] - job.due, 0])
            self.tardiness[job.id] = tardiness
            terms.append((tardiness, weight))
        self.scale = _integer_scale([w for _, w in terms])
        objective = sum(round(w * self.scale) * var for var, w in terms)
        if self.neighbourhood is None:
            self.model.minimize(objective)
            return
        # a neighbourhood: the problem's objective may not get worse (what stays counts as constants);
        # below it, free operations that end earlier let the rest of the plan move left
        self.model.add(objective + self._fixed_objective() <= round(self.neighbourhood.limit * self.scale))
        free = [v.end for v in self.ops.values() if not v.fixed]
        self.model.minimize((len(free) + 1) * objective + sum(free))

    def _fixed_end(self) -> int:
        if self.neighbourhood is None:
            return max([0, *(p.end for p in self.fixed.values())])
        return max(
            [0, *(p.end for k, p in self.neighbourhood.plan.items() if k not in self.neighbourhood.free)]
        )

    def _fixed_objective(self) -> int:
        """The scaled tardiness of the jobs whose last operation stays where it is."""
        assert self.neighbourhood is not None
        weights, total = self.problem.objective, 0.0
        for job in self.problem.jobs:
            last = job.operations[-1].key
            if job.due is None or self._is_free(last):
                continue
            weight = weights.get("total_tardiness", 0.0) + weights.get("weighted_tardiness", 0.0) * job.weight
            total += weight * max(0, self._placement(last).end - job.due)
        return round(total * self.scale)

    def _domain_end(self, key: OpKey) -> int:
        return self._domain(self.problem.operations[key])[1]

    # hint

    def hint(self, plan: Sequence[Placement]) -> None:
        """Start the search from a complete, valid plan: every variable gets its value in that plan, so
        the search's first solution is the plan itself and it only ever improves on it."""
        self.model.clear_hints()
        hints: dict[int, tuple[Any, int]] = {}
        at = {p.key: p for p in plan}
        for key, v in self.ops.items():
            p = at[key]
            if v.fixed:
                for operator, present in v.by.items():
                    _hint_variable(hints, present, operator == p.operator)
                continue
            for var, value in ((v.start, p.start), (v.end, p.end), (v.size, p.end - p.start)):
                _hint_variable(hints, var, value)
            for machine, present in v.on.items():
                _hint_variable(hints, present, machine == p.machine)
            for operator, present in v.by.items():
                _hint_variable(hints, present, operator == p.operator)
            span = v.spans.get(p.machine)
            if span is not None:
                calendar = self.problem.machines[p.machine].calendar
                assert calendar is not None
                for var, value in (
                    (span.end, p.end),
                    (span.size, p.end - p.start),
                    (span.first, calendar.windows.index(calendar.window_at(p.start))),
                    (span.last, calendar.windows.index(calendar.window_at(p.end - 1))),
                ):
                    _hint_variable(hints, var, value)
        for machine, circuit in self.circuits.items():
            index = {key: i for i, key in enumerate(circuit.nodes, start=1)}
            sequence = [
                index[k]
                for k in sorted(index, key=lambda k: (at[k].start, at[k].end))
                if at[k].machine == machine
            ]
            chosen = set(zip([0, *sequence], [*sequence, 0], strict=True))
            for arc, literal in circuit.arcs.items():
                _hint_variable(hints, literal, arc in chosen)
            if circuit.empty is not None:
                _hint_variable(hints, circuit.empty, not sequence)
        ends = {job.id: max(at[op.key].end for op in job.operations) for job in self.problem.jobs}
        for job_id, tardiness in self.tardiness.items():
            due = self.problem.job_by_id[job_id].due
            assert due is not None
            _hint_variable(hints, tardiness, max(0, ends[job_id] - due))
        if self.makespan is not None:
            _hint_variable(hints, self.makespan, max(ends.values()))
        _add_hints(self.model, hints)

    def hint_partial(self, plan: Sequence[Placement]) -> None:
        """Lean the search towards a previous plan that no longer fits as a whole (re-planning after a
        disruption): its starts, machines and operators where they still exist."""
        hints: dict[int, tuple[Any, int]] = {}
        for p in plan:
            v = self.ops.get(p.key)
            if v is None or v.fixed:
                continue
            _hint_variable(hints, v.start, p.start)
            for machine, present in v.on.items():
                _hint_variable(hints, present, machine == p.machine)
            for operator, present in v.by.items():
                _hint_variable(hints, present, operator == p.operator)
        _add_hints(self.model, hints)

    # read

    def read(self, solver: cp_model.CpSolver) -> list[Placement]:
        """The plan the solver found: every operation, in the problem's order."""
        placements = []
        for key in self.problem.operations:
            v = self.ops.get(key)
            if v is None or (v.fixed and not v.by):
                placements.append(self._placement(key))
                continue
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


def _hint_variable(hints: dict[int, tuple[Any, int]], var: Any, value: int | bool) -> None:
    """Note a variable's or a literal's hint, once per variable (one may serve two roles, as a single
    machine's end is the operation's end); constants and expressions (start + duration) need none."""
    if isinstance(var, cp_model.IntVar):
        hints[var.index] = (var, int(value))
    elif isinstance(var, cp_model.NotBooleanVariable):
        hints[var.negated().index] = (var.negated(), int(not value))


def _add_hints(model: cp_model.CpModel, hints: dict[int, tuple[Any, int]]) -> None:
    for var, value in hints.values():
        model.add_hint(var, value)


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


class _Recorder(cp_model.CpSolverSolutionCallback):
    """Adds each solution the search finds to the progress curve."""

    def __init__(self, progress: Progress, scale: int) -> None:
        super().__init__()
        self.progress, self.scale = progress, scale

    def on_solution_callback(self) -> None:
        bound = self.best_objective_bound
        known = abs(bound) < 1e18  # no bound yet: +-infinity
        self.progress.add(self.objective_value / self.scale, bound / self.scale if known else None)


def _set_parameters(
    solver: cp_model.CpSolver, seconds: float, workers: int, seed: int, *, prove: bool, makespan: bool
) -> None:
    params = solver.parameters
    params.max_time_in_seconds = max(0.01, seconds)
    params.num_workers, params.random_seed = workers, seed
    params.log_search_progress = False
    # precedences learned during the search strengthen each NoOverlap's propagation; on job shops it
    # proves optima faster than the default (benchmarks/solver.py)
    params.use_dynamic_precedence_in_disjunctive = True
    if not makespan or workers < 2:
        return
    # the makespan's lower bound (busiest machine, longest job) is often the optimum: a search that
    # climbs from it closes such gaps at once
    if workers == 2 and prove:
        # a problem small enough to prove: both workers search completely, one from each side
        params.num_full_subsolvers = 2
        params.subsolvers.extend(["default_lp", "objective_lb_search"])
    else:
        # otherwise the climbing search joins the default portfolio and its neighbourhood search (LNS)
        params.extra_subsolvers.append("objective_lb_search")


def _solve_cancellably(
    solver: cp_model.CpSolver,
    model: cp_model.CpModel,
    ctx: ToolContext,
    recorder: cp_model.CpSolverSolutionCallback | None,
) -> cp_model.CpSolverStatus:
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
        return solver.solve(model, recorder)
    finally:
        done.set()


def scaled_bound(solver: cp_model.CpSolver, jobshop: JobShopModel) -> float | None:
    bound = solver.best_objective_bound
    return None if bound != bound or abs(bound) > 1e18 else bound / jobshop.scale  # NaN or infinite: none


def number(value: float) -> int | float:
    """A figure for the answer: an integer when it is one, else rounded to six decimals."""
    return int(value) if float(value).is_integer() else round(value, 6)
