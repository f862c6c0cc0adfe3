"""Bounds for solver.solve: heads (earliest starts and ends), tails (latest ends), the horizon and
a makespan lower bound, all computed from the problem before any model is built.

They give the model tight variable domains, let the diagnosis see what can never fit, and let a plan
that meets the lower bound be called optimal without searching. Once a plan is in hand, its makespan
caps the horizon (no better plan ends later), which shrinks every domain the model builds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.tools.planning_model import Operation, OpKey, Problem

__all__ = ["Bounds", "capacity_bound", "compute_bounds", "machine_groups", "open_minutes", "sample"]

_SHARED_SETS = 200  # machine sets operations share, each its own group up to this many
_RELEASES_SAMPLED = (128, 8)  # release times tried for the shop and its parts, and for smaller groups


@dataclass
class Bounds:
    lo: int  # the earliest minute anything occupies (a frozen operation may have begun before 0)
    horizon: int  # some optimal plan ends every operation by then
    earliest: dict[OpKey, int]  # earliest start: release, now, predecessors' work, calendars
    earliest_end: dict[OpKey, int | None]  # None: the operation fits nowhere
    latest: dict[OpKey, int]  # latest end: deadline, horizon, successors' work
    makespan_lb: int
    frozen_order: list[OpKey] = field(default_factory=list)  # frozen, yet a predecessor cannot end before


def compute_bounds(problem: Problem, ceiling: int | None = None, floor: int = 0) -> Bounds:
    """Bounds that every plan keeps; with a `ceiling`, those of the plans that end every operation by
    then (the plans at least as good as one already in hand, for a makespan objective). `floor` is a
    makespan bound found otherwise (capacity_bound, computed once: it does not depend on the ceiling)."""
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
    if ceiling is not None:
        horizon = min(horizon, ceiling)
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
        makespan_lb=max(floor, _makespan_lower_bound(problem, earliest, earliest_end)),
        frozen_order=frozen_order,
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


# --- capacity: machine groups over time ------------------------------------------------------


def machine_groups(problem: Problem) -> list[frozenset[str]]:
    """Groups of machines whose joint capacity bounds a plan: each machine, the whole shop, its
    independent parts (machines linked by operations they share), and each set of machines an
    operation may choose from (up to _SHARED_SETS of them)."""
    movable = [op for op in problem.operations.values() if op.key not in problem.frozen]
    shared = {frozenset(op.durations) for op in movable if len(op.durations) > 1}
    parent = {m: m for m in problem.machines}  # union-find: machines linked by a shared operation

    def root(m: str) -> str:
        while parent[m] != m:
            parent[m] = parent[parent[m]]
            m = parent[m]
        return m

    for machines in shared:
        first, *rest = machines
        for m in rest:
            parent[root(m)] = root(first)
    parts: dict[str, set[str]] = {}
    for m in {m for op in movable for m in op.durations}:
        parts.setdefault(root(m), set()).add(m)
    groups = {frozenset(part) for part in parts.values()}
    groups.add(frozenset(m for part in parts.values() for m in part))
    groups |= {frozenset([m]) for part in parts.values() for m in part}
    if len(shared) <= _SHARED_SETS:
        groups |= shared
    return sorted(groups, key=lambda g: (-len(g), sorted(g)))


def open_minutes(problem: Problem, group: frozenset[str], start: int, end: int) -> int:
    """Machine-minutes the group is open in [start, end), all its machines together."""
    total = 0
    for m in group:
        calendar = problem.machines[m].calendar
        total += max(0, end - start) if calendar is None else calendar.open_minutes(start, end)
    return total


def capacity_bound(problem: Problem, bounds: Bounds) -> int:
    """A makespan lower bound from capacity: the operations confined to a group of machines and
    released at r or later need their work (at its fastest) in open machine-minutes after r, so the
    plan runs at least until the group has been open that long. It sees what the longest-job and
    busiest-machine bounds miss when work spreads over alternatives under shift calendars."""
    movable = [op for op in problem.operations.values() if op.key not in problem.frozen]
    best = 0
    for group in machine_groups(problem):
        items = sorted(
            ((bounds.earliest[op.key], op.min_duration) for op in movable if op.durations.keys() <= group),
            reverse=True,
        )
        if not items:
            continue
        sampled = _RELEASES_SAMPLED[0] if len(group) > 3 else _RELEASES_SAMPLED[1]
        releases = sorted(sample(sorted({r for r, _ in items}), sampled), reverse=True)
        work, i = 0, 0
        for r in releases:  # latest first: the work released at r or later grows as r goes back
            while i < len(items) and items[i][0] >= r:
                work += items[i][1]
                i += 1
            if work:
                best = max(best, _open_until(problem, group, r, work, bounds.horizon))
    return best


def _open_until(problem: Problem, group: frozenset[str], start: int, work: int, horizon: int) -> int:
    """The earliest t with `work` open machine-minutes in [start, t) (the horizon if never)."""
    lo, hi = start, max(start, horizon)
    if open_minutes(problem, group, start, hi) < work:
        return lo  # it never fits: the diagnosis says so (CAPACITY_SHORT), this bound stays silent
    while lo < hi:
        mid = (lo + hi) // 2
        if open_minutes(problem, group, start, mid) >= work:
            hi = mid
        else:
            lo = mid + 1
    return lo


def sample(values: list[int], most: int) -> list[int]:
    """At most `most` of the sorted `values`, evenly spread, the first and the last always among them."""
    if len(values) <= most:
        return values
    step = (len(values) - 1) / (most - 1)
    return sorted({values[round(i * step)] for i in range(most)})
