"""The CP-SAT model of solver.solve and its search, in the passes the style asks for: variables →
constraints → objective → hint → solve → read. Why the formulation is shaped so:

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
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from ortools.sat.python import cp_model

from engine.context import ToolContext
from engine.tools.planning_model import Calendar, Operation, OpKey, Placement, Problem
from engine.tools.solver_bounds import Bounds
from store.errors import ToolError

__all__ = ["STATUS", "JobShopModel", "scaled_bound", "search"]

_PROVABLE_OPERATIONS = 200  # job shops up to this size are usually proven optimal in seconds to minutes
STATUS = {
    cp_model.OPTIMAL: "optimal",
    cp_model.FEASIBLE: "feasible",
    cp_model.INFEASIBLE: "infeasible",
    cp_model.UNKNOWN: "unknown",
}


def search(
    problem: Problem, bounds: Bounds, seconds: float, workers: int, seed: int, ctx: ToolContext
) -> tuple[JobShopModel, cp_model.CpSolver, int]:
    """Build the model and search it for `seconds` (stopping early if the run is canceled)."""
    jobshop = JobShopModel(problem, bounds)
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


@dataclass
class _Op:
    """The variables of one operation."""

    start: cp_model.IntVar
    end: cp_model.LinearExprT
    size: cp_model.LinearExprT  # span: work plus any break crossed
    on: dict[str, Any]  # machine -> presence literal (True when it is the only machine)
    by: dict[str, Any] = field(default_factory=dict)  # operator -> presence literal


class JobShopModel:
    """The CP-SAT model of a problem, and the reading of a solution back into placements."""

    def __init__(self, problem: Problem, bounds: Bounds) -> None:
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


def scaled_bound(solver: cp_model.CpSolver, jobshop: JobShopModel) -> float | None:
    bound = solver.best_objective_bound
    return None if bound != bound or abs(bound) > 1e18 else bound / jobshop.scale  # NaN or infinite: none
