"""solver.solve: a flexible job-shop plan with OR-Tools CP-SAT.

Owns the tool's flow and its answer: read the input (`_problem`) → bounds (solver_bounds) → reasons
no plan can exist (solver_diagnosis) → search (solver_model) → left shift (solver_shift) → answer.
"""

from __future__ import annotations

import time
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
from engine.tools.solver_bounds import compute_bounds
from engine.tools.solver_diagnosis import infeasibility_reasons, proven_infeasible_reasons, reason
from engine.tools.solver_model import STATUS, scaled_bound, search
from engine.tools.solver_shift import left_shift
from store.errors import Permanent, ToolError

__all__ = ["DEFAULT_TIME_LIMIT_S", "solve"]

_RESERVE_S = 0.5  # kept from the step's deadline for reading the answer and checking its schema


def solve(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Job-shop plan with CP-SAT. Schemas: catalogs/tools.json, solver.solve."""
    clock = time.monotonic()
    time_limit = _time_limit(args, ctx)
    workers = _workers(args, ctx)
    problem = _problem(args, ctx)
    bounds = compute_bounds(problem)
    reasons = infeasibility_reasons(problem, bounds)
    if reasons:
        return _answer(problem, "infeasible", [], None, clock, reasons=reasons)
    if bounds.dispatch and set(problem.objective) == {"makespan"}:
        makespan = max(p.end for p in bounds.dispatch)
        if makespan <= bounds.makespan_lb:  # it meets the lower bound: optimal without searching
            return _answer(problem, "optimal", bounds.dispatch, float(bounds.makespan_lb), clock)
    seconds = min(time_limit, ctx.remaining() - _RESERVE_S)
    jobshop, solver, status = search(problem, bounds, seconds, workers, args.get("random_seed", 0), ctx)
    name = STATUS.get(status, "unknown")
    if status == cp_model.INFEASIBLE:
        reasons = proven_infeasible_reasons(problem, workers, ctx, _RESERVE_S)
        return _answer(problem, name, [], None, clock, reasons=reasons, solver=solver)
    if status != cp_model.OPTIMAL and status != cp_model.FEASIBLE:
        reasons = [reason("NO_PLAN_IN_TIME", f"no plan was found within the {time_limit:g} s time limit")]
        return _answer(
            problem, name, [], scaled_bound(solver, jobshop), clock, reasons=reasons, solver=solver
        )
    plan = left_shift(problem, bounds, jobshop.read(solver))
    return _answer(problem, name, plan, scaled_bound(solver, jobshop), clock, solver=solver)


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
        "late_jobs": sum(1 for o in job_outcomes(problem, plan) if o.tardiness > 0),
    }
    out["wall_s"] = round(time.monotonic() - clock, 4)
    return out


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 6)
