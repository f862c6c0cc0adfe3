"""Bounds for solver.solve: heads (earliest starts and ends), tails (latest ends), the horizon and
a makespan lower bound, all computed from the problem before any model is built.

They give the model tight variable domains, let the diagnosis see what can never fit, and let a plan
that meets the lower bound be called optimal without searching.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.tools.planning_model import Operation, OpKey, Placement, Problem

__all__ = ["Bounds", "compute_bounds"]

_DISPATCH_WORK = 100_000  # above this many operation x job steps, one dispatching rule only


@dataclass
class Bounds:
    lo: int  # the earliest minute anything occupies (a frozen operation may have begun before 0)
    horizon: int  # some optimal plan ends every operation by then
    earliest: dict[OpKey, int]  # earliest start: release, now, predecessors' work, calendars
    earliest_end: dict[OpKey, int | None]  # None: the operation fits nowhere
    latest: dict[OpKey, int]  # latest end: deadline, horizon, successors' work
    makespan_lb: int
    frozen_order: list[OpKey] = field(default_factory=list)  # frozen, yet a predecessor cannot end before
    dispatch: list[Placement] | None = None  # a quick feasible plan, for the plain job shop


def compute_bounds(problem: Problem) -> Bounds:
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
            finishes = [f for f in (problem.slot(op, m, ready) for m in op.durations) if f is not None]
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
    return Bounds(
        lo=lo,
        horizon=horizon,
        earliest=earliest,
        earliest_end=earliest_end,
        latest=latest,
        makespan_lb=_makespan_lower_bound(problem, earliest, earliest_end),
        frozen_order=frozen_order,
        dispatch=dispatch,
    )


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
