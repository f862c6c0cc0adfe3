"""solver.solve: a flexible job-shop plan with OR-Tools CP-SAT, always a valid plan when one exists.

Owns the tool's flow and its answer, all inside the time limit:
1. read the input (`_problem`: the one place inputs needing the run's context join) into minutes;
2. bounds (solver_bounds): heads, tails, and a makespan bound from job paths and machine capacity;
3. reasons no plan can exist (solver_diagnosis), found in milliseconds: the answer is `infeasible`;
4. the first plan (solver_construct): dispatching rules, in well under a second at factory size;
   from here on the answer is at least `feasible` (a valid plan, not proven optimal);
5. better plans: one CP-SAT model of the whole problem (solver_model) when it is small enough to
   search well (it can prove optimality), else a part of the plan at a time (solver_lns); both
   start from the first plan, and a cancel ends them with the best plan so far;
6. left shift (solver_shift) and the answer, with the progress curve of every better plan.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ortools.sat.python import cp_model

from engine.context import ToolContext
from engine.tools.planning_model import (
    DEFAULT_TIME_LIMIT_S,
    Placement,
    Problem,
    job_outcomes,
    objective_terms,
    parse_problem,
    with_stored_inputs,
)
from engine.tools.schedule_check import violations
from engine.tools.solver_bounds import Bounds, capacity_bound, compute_bounds
from engine.tools.solver_construct import construct
from engine.tools.solver_diagnosis import infeasibility_reasons, proven_infeasible_reasons, reason
from engine.tools.solver_lns import improve
from engine.tools.solver_model import Progress, number, scaled_bound, search
from engine.tools.solver_shift import left_shift
from store.errors import Permanent, ToolError

__all__ = ["DEFAULT_TIME_LIMIT_S", "solve"]

_RESERVE_S = 0.5  # kept from the step's deadline for reading the answer and checking its schema
_FINISH_S_PER_OPERATION = 2e-4  # kept from the limit to shift the plan left and check it
_MIN_SEARCH_S = 0.05  # less time than this left after the first plan: answer with it, unsearched
_EXPLORE_SHARE, _EXPLORE_MAX_S = 0.05, 3.0  # randomised dispatching: this share of the limit, at most
# one model of the whole problem up to this many (operation, machine) options and setup-circuit arcs
_ONE_MODEL_OPTIONS, _ONE_MODEL_ARCS = 600, 20_000


@dataclass
class _Run:
    """One call's settings and what its phases share."""

    problem: Problem
    ctx: ToolContext
    clock: float  # time.monotonic() at the start: the answer's wall_s and the progress times count from it
    stop_at: float  # when the search stops: the time limit (or the step's deadline) less the finish
    time_limit: float
    workers: int
    seed: int
    floor: int = 0  # the capacity bound on the makespan (it does not change as plans improve)
    lower: float | None = None  # a proven bound on the objective before searching, if there is one
    progress: Progress = field(init=False)  # every better plan, as it is found

    def __post_init__(self) -> None:
        self.progress = Progress(self.clock)

    def bounds_for(self, plan: list[Placement] | None) -> Bounds:
        """The bounds of the plans at least as good as `plan` (all plans when None)."""
        ceiling = None if plan is None else _ceiling(self.problem, plan)
        return compute_bounds(self.problem, ceiling=ceiling, floor=self.floor)


def solve(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Job-shop plan with CP-SAT. Schemas: catalogs/tools.json, solver.solve."""
    clock = time.monotonic()
    time_limit = _time_limit(args, ctx)
    workers = _workers(args, ctx)
    problem = _problem(args, ctx)
    finish_s = _FINISH_S_PER_OPERATION * len(problem.operations)
    run = _Run(
        problem,
        ctx,
        clock,
        stop_at=clock + min(time_limit - finish_s, ctx.remaining() - _RESERVE_S),
        time_limit=time_limit,
        workers=workers,
        seed=args.get("random_seed", 0),
    )
    bounds = compute_bounds(problem)
    reasons = infeasibility_reasons(problem, bounds)
    if reasons:
        return _answer(run, "infeasible", [], None, reasons=reasons)
    if not problem.is_plain():  # one machine per operation, always open: the machine bound says more
        run.floor = capacity_bound(problem, bounds)
        bounds.makespan_lb = max(bounds.makespan_lb, run.floor)
    run.lower = run.progress.known = _lower_bound(problem, bounds)
    plan = construct(
        problem,
        bounds,
        until=run.stop_at,
        explore_until=min(run.stop_at, time.monotonic() + _explore_s(time_limit)),
        seed=run.seed,
        on_plan=lambda plan, objective: run.progress.add(objective),
    )
    if plan is None:
        return _search_whole(run, bounds, None)
    if run.lower is not None and _objective(problem, plan) <= run.lower:
        return _answer(run, "optimal", plan, run.lower)  # it meets the bound: no search needed
    if run.stop_at - time.monotonic() < _MIN_SEARCH_S:  # the first plan took the whole limit
        return _answer(run, "feasible", plan, run.lower)
    if _fits_one_model(problem):
        return _search_whole(run, run.bounds_for(plan), plan)
    return _improve_parts(run, plan)


def _search_whole(run: _Run, bounds: Bounds, first: list[Placement] | None) -> dict[str, Any]:
    """One CP-SAT model of the whole problem, from the first plan when there is one."""
    problem = run.problem
    jobshop, solver, status = search(
        problem, bounds, run.stop_at, run.workers, run.seed, run.ctx, start_from=first, progress=run.progress
    )
    bound = _best_bound(scaled_bound(solver, jobshop), run.lower)
    plan = first
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        found = _checked(run, left_shift(problem, bounds, jobshop.read(solver)))
        if found is not None and (plan is None or _objective(problem, found) <= _objective(problem, plan)):
            plan = found
    if plan is not None:
        name = "optimal" if status == cp_model.OPTIMAL else "feasible"
        return _answer(run, name, plan, bound, solver=solver)
    if status == cp_model.INFEASIBLE:
        reasons = proven_infeasible_reasons(problem, run.workers, run.ctx, _RESERVE_S)
        return _answer(run, "infeasible", [], None, reasons=reasons, solver=solver)
    reasons = [reason("NO_PLAN_IN_TIME", f"no plan was found within the {run.time_limit:g} s time limit")]
    return _answer(run, "unknown", [], bound, reasons=reasons, solver=solver)


def _improve_parts(run: _Run, first: list[Placement]) -> dict[str, Any]:
    """A plan too large for one model improves a part at a time (solver_lns)."""
    plan, parts = improve(
        run.problem,
        run.bounds_for(first),
        first,
        stop_at=run.stop_at,
        workers=run.workers,
        seed=run.seed,
        ctx=run.ctx,
        progress=run.progress,
        bounds_for=run.bounds_for,
    )
    stats = {"wall_s": round(time.monotonic() - run.clock, 4), "workers": run.workers, **parts}
    return _answer(run, "feasible", _checked(run, plan) or first, run.lower, stats=stats)


def _checked(run: _Run, plan: list[Placement]) -> list[Placement] | None:
    """The plan if schedule.validate's rules accept it. The search keeps them by construction; this
    is the last line of defence, so that a bug costs an improvement, never a wrong plan."""
    broken = violations(run.problem, plan, run.problem.now)
    if not broken:
        return plan
    run.ctx.log.error("solver_plan_invalid", violations=broken[:5])
    return None


def _fits_one_model(problem: Problem) -> bool:
    """Small enough for one CP-SAT model of the whole problem, which searches well and can prove
    optimality; a larger plan improves a part at a time (solver_lns), from the first plan."""
    options = sum(len(op.durations) for op in problem.operations.values())
    if options > _ONE_MODEL_OPTIONS:
        return False
    if not problem.setups:
        return True
    on = Counter(m for op in problem.operations.values() for m in op.durations)
    return sum(n * n for n in on.values()) <= _ONE_MODEL_ARCS  # a setup circuit has an arc per pair


def _explore_s(time_limit: float) -> float:
    """How long randomised dispatching may look for a better first plan: a small share of the limit
    (the search improves a plan faster than more dispatching does)."""
    return min(_EXPLORE_MAX_S, _EXPLORE_SHARE * time_limit)


def _lower_bound(problem: Problem, bounds: Bounds) -> float | None:
    """A proven bound on the objective before searching: the makespan's, when it is the objective."""
    if set(problem.objective) != {"makespan"}:
        return None
    return float(bounds.makespan_lb) * problem.objective["makespan"]


def _ceiling(problem: Problem, plan: list[Placement]) -> int | None:
    """The latest any operation of a plan at least as good as `plan` can end, when the objective says:
    weight x makespan <= the objective, since tardiness is never negative."""
    weight = problem.objective.get("makespan")
    if not weight:
        return None
    return int(_objective(problem, plan) / weight)


def _objective(problem: Problem, plan: list[Placement]) -> float:
    return objective_terms(problem, plan)["objective"]


def _best_bound(searched: float | None, known: float | None) -> float | None:
    return max((b for b in (searched, known) if b is not None), default=None)


# --- inputs the solver alone reads -----------------------------------------------------------


def _problem(args: dict[str, Any], ctx: ToolContext) -> Problem:
    """The problem to plan: the input read into minutes. Inputs that need the run's context (stored
    data read through ctx.db) join the arguments here, before they are read: `availability` becomes
    the machines' calendars from the plant's stored shifts."""
    return parse_problem(with_stored_inputs(args, ctx))


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


# --- the answer ------------------------------------------------------------------------------


def _answer(
    run: _Run,
    status: str,
    plan: list[Placement],
    bound: float | None,
    *,
    reasons: list[dict[str, Any]] | None = None,
    solver: cp_model.CpSolver | None = None,
    stats: dict[str, Any] | None = None,
) -> dict[str, Any]:
    problem = run.problem
    render = problem.time.render
    out: dict[str, Any] = {
        "status": status,
        "objective": None,
        "bound": None if bound is None else number(bound),
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
            objective=number(objective),
            gap=None if bound is None else round(abs(objective - bound) / max(1.0, abs(objective)), 6),
            makespan=int(terms["makespan"]),
            finish=render(int(terms["makespan"])),
            terms={t: number(terms[t]) for t in ("makespan", "total_tardiness", "weighted_tardiness")},
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
    if stats is not None:
        out["search"] = stats
    elif solver is not None:
        out["search"] = {
            "wall_s": round(solver.wall_time, 4),
            "branches": int(solver.num_branches),
            "conflicts": int(solver.num_conflicts),
            "workers": int(solver.parameters.num_workers),
        }
    out["progress"] = run.progress.points
    out["summary"] = {
        "status": out["status"],
        "objective": out["objective"],
        "makespan": out["makespan"],
        "finish": out.get("finish"),
        "operations": len(plan),
        "late_jobs": sum(1 for o in job_outcomes(problem, plan) if o.tardiness > 0),
    }
    out["wall_s"] = round(time.monotonic() - run.clock, 4)
    return out
