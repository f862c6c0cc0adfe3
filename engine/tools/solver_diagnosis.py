"""Why solver.solve has no plan: reasons found before searching, and after a proof of infeasibility.

Before searching, from the bounds alone: frozen operations that clash or come too late, operations no
window holds, skills nobody has, deadlines shorter than the work, machines open for less time than
the work only they can do. After CP-SAT proves a problem infeasible: whether the deadlines are the
cause (solve again with them as due dates and name the jobs that still overrun), else a plain
"the constraints conflict".
"""

from __future__ import annotations

import time
from dataclasses import replace
from itertools import pairwise
from typing import Any

from ortools.sat.python import cp_model

from engine.context import ToolContext
from engine.tools.planning_model import Operation, OpKey, Problem, job_outcomes, label
from engine.tools.solver_bounds import Bounds, compute_bounds, machine_groups, open_minutes, sample
from engine.tools.solver_model import search

__all__ = ["infeasibility_reasons", "proven_infeasible_reasons", "reason"]

_DIAGNOSIS_S = 5.0  # at most this long, after a proof of infeasibility, to find which deadlines cause it
_WINDOWS_CHECKED = 32  # release times and latest ends swept per machine group (an even sample)
_GROUP_REASONS = 5  # the largest shortfalls reported
_NAMED = 20  # machines and operations named in a message


def reason(code: str, message: str, **refs: list[Any]) -> dict[str, Any]:
    """One reason a plan cannot exist: a stable code, a sentence, and the jobs, operations or machines."""
    return {"code": code, "message": message, **refs}


def proven_infeasible_reasons(
    problem: Problem, workers: int, ctx: ToolContext, reserve_s: float
) -> list[dict[str, Any]]:
    """The search proved no plan exists: name the deadlines that cause it, else the constraints conflict."""
    return _deadline_reasons(problem, workers, ctx, reserve_s) or [
        reason(
            "CONSTRAINTS_CONFLICT",
            "no plan satisfies all constraints together; the solver proved it "
            "(check calendars, operators, setups and frozen operations)",
        )
    ]


def infeasibility_reasons(problem: Problem, bounds: Bounds) -> list[dict[str, Any]]:
    reasons: list[dict[str, Any]] = []
    for key in bounds.frozen_order:
        reasons.append(
            reason(
                "FROZEN_ORDER",
                f"operation {label(key)} is frozen at its start, but an earlier operation of its job cannot "
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
            missing = _operator_reason(problem, op)
            if missing:
                reasons.append(missing)
    for job in problem.jobs:
        last = job.operations[-1].key
        end = bounds.earliest_end[last]
        if job.deadline is not None and end is not None and end > job.deadline:
            need = sum(op.min_duration for op in job.operations)
            reasons.append(
                reason(
                    "DEADLINE_TOO_SHORT",
                    f"job {job.id} cannot finish by its deadline {problem.time.render(job.deadline)}: "
                    "it needs at "
                    f"least {need} min of work and the earliest it can finish is {problem.time.render(end)}",
                    jobs=[job.id],
                )
            )
    reasons += _capacity_reasons(problem, bounds)
    reasons += _group_capacity_reasons(problem, bounds)
    return reasons


def _no_window_reason(problem: Problem, op: Operation) -> dict[str, Any]:
    parts = []
    for machine, duration in op.durations.items():
        calendar = problem.machines[machine].calendar
        longest = max((b - a for a, b in calendar.windows), default=0) if calendar else 0
        parts.append(f"{machine} needs {duration} min, longest window {longest} min")
    hint = "" if op.may_span_breaks else "; allow may_span_breaks or widen the windows"
    return reason(
        "NO_FEASIBLE_WINDOW",
        f"operation {label(op.key)} fits in no calendar window of its eligible machines "
        f"({'; '.join(parts)}){hint}",
        operations=[op.key],
        machines=list(op.durations),
    )


def _operator_reason(problem: Problem, op: Operation) -> dict[str, Any] | None:
    assert op.skill is not None
    qualified = problem.qualified(op.skill)
    if not qualified:
        return reason(
            "NO_QUALIFIED_OPERATOR",
            f"operation {label(op.key)} needs skill {op.skill!r}, which no operator has",
            operations=[op.key],
        )
    if not any(
        o.calendar is None or o.calendar.fits_whole(op.min_duration, -(2**40), 2**40) for o in qualified
    ):
        return reason(
            "NO_QUALIFIED_OPERATOR",
            f"operation {label(op.key)} needs skill {op.skill!r} for {op.min_duration} min, "
            "but no qualified operator "
            f"({', '.join(o.id for o in qualified)}) has a shift that long",
            operations=[op.key],
        )
    return None


def _capacity_reasons(problem: Problem, bounds: Bounds) -> list[dict[str, Any]]:
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
            reason(
                code,
                f"{message}, but the operations only it can run need {work} min",
                machines=[machine.id],
                operations=[op.key for op in ops],
            )
        )
    return reasons


def _group_capacity_reasons(problem: Problem, bounds: Bounds) -> list[dict[str, Any]]:
    """Machines that together are open for less time than the work only they can do: the shop as a
    whole, its independent parts, and each set of machines operations share. Each group's work is
    swept over time (releases and deadlines: the operations confined to [r, d] need their minutes
    inside it), so an overload shows in seconds instead of as a search that never ends."""
    if all(m.calendar is None for m in problem.machines.values()) and all(
        job.deadline is None for job in problem.jobs
    ):
        return []  # machines always open and no deadline: there is always time enough
    movable = [op for op in problem.operations.values() if op.key not in problem.frozen]
    found: list[tuple[int, dict[str, Any]]] = []
    for group in machine_groups(problem):
        if len(group) < 2:
            continue  # one machine alone: _capacity_reasons
        ops = [op for op in movable if op.durations.keys() <= group]
        short = _shortfall(problem, bounds, group, ops)
        if short is not None:
            found.append(short)
    found.sort(key=lambda item: -item[0])
    return [r for _, r in found[:_GROUP_REASONS]]


def _shortfall(
    problem: Problem, bounds: Bounds, group: frozenset[str], ops: list[Operation]
) -> tuple[int, dict[str, Any]] | None:
    """The largest shortfall of open time against work over the windows [r, d] of the group's
    operations, with its reason; None when the work fits every window."""
    if not ops:
        return None
    items = [(bounds.earliest[op.key], bounds.latest[op.key], op.min_duration, op.key) for op in ops]
    ends = sample(sorted({latest for _, latest, _, _ in items}), _WINDOWS_CHECKED)
    releases = set(sample(sorted({r for r, _, _, _ in items}), _WINDOWS_CHECKED))
    worst: tuple[int, int, int, int, int, list[OpKey]] | None = None
    for d in ends:
        inside = sorted((item for item in items if item[1] <= d), key=lambda item: -item[0])
        work = 0
        for i, (r, _, minutes, _) in enumerate(inside):
            work += minutes
            if (i + 1 < len(inside) and inside[i + 1][0] == r) or r not in releases:
                continue  # take every operation released at r before comparing, at the sampled r
            available = open_minutes(problem, group, r, d)
            if work > available and (worst is None or work - available > worst[0]):
                worst = (work - available, r, d, work, available, [item[3] for item in inside[: i + 1]])
    if worst is None:
        return None
    short, r, d, work, available, keys = worst
    calendars = [problem.machines[m].calendar for m in group]
    if all(c is not None for c in calendars):  # say when their calendars close, not the horizon
        d = min(d, max(c.last_close or r for c in calendars if c is not None))
    names = sorted(group)
    shown = ", ".join(names[:_NAMED]) + (f" and {len(names) - _NAMED} more" if len(names) > _NAMED else "")
    render = problem.time.render
    return short, reason(
        "CAPACITY_SHORT",
        f"machines {shown} are open {available} min together between {render(r)} and {render(d)}, "
        f"but the {len(keys)} operations only they can run there need {work} min: {short} min short "
        "(add shifts or machines, move releases or deadlines, or plan fewer jobs)",
        machines=names,
        operations=keys if len(keys) <= _NAMED else [],
    )


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
                    reason(
                        "FROZEN_CONFLICT",
                        f"frozen operations {label(a)} and {label(b)} overlap on {kind} {name}",
                        operations=[a, b],
                    )
                )
    return reasons


def _deadline_reasons(
    problem: Problem, workers: int, ctx: ToolContext, reserve_s: float
) -> list[dict[str, Any]]:
    """When deadlines are why no plan exists: solve again with each deadline as a due date, minimizing
    the overrun, and name the jobs that still finish late (the deadlines to move or negotiate)."""
    seconds = min(_DIAGNOSIS_S, ctx.remaining() - reserve_s)
    if seconds < 0.1 or all(job.deadline is None for job in problem.jobs):
        return []
    relaxed = replace(
        problem,
        jobs=tuple(replace(job, deadline=None, due=job.deadline, weight=1.0) for job in problem.jobs),
        objective={"total_tardiness": 1.0},
    )
    bounds = compute_bounds(relaxed)
    if infeasibility_reasons(relaxed, bounds):
        return []
    jobshop, solver, status = search(relaxed, bounds, time.monotonic() + seconds, workers, 0, ctx)
    if status != cp_model.OPTIMAL and status != cp_model.FEASIBLE:
        return []
    # the relaxed problem's due dates are the deadlines: its late jobs are the ones to name
    late = [(o.job.id, o.lateness) for o in job_outcomes(relaxed, jobshop.read(solver)) if o.tardiness > 0]
    if not late:
        return []
    which = "the plan that overruns them least" if status == cp_model.OPTIMAL else "the best plan found"
    overruns = ", ".join(f"{job} by {minutes} min" for job, minutes in late)
    return [
        reason(
            "DEADLINES_CONFLICT",
            f"the deadlines cannot all be met together; without them a plan exists, and {which} still "
            f"misses: {overruns}",
            jobs=[job for job, _ in late],
        )
    ]
