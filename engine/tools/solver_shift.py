"""Left shift: the post-processing that makes a solved plan compact.

The plan a search stops on may leave slack wherever the objective does not care. Shifting it left
(same machine sequences and operators, every operation as early as allowed) can only improve a
regular objective, and planners get the compact plan they expect.
"""

from __future__ import annotations

from engine.tools.planning_model import Operation, OpKey, Placement, Problem
from engine.tools.solver_bounds import Bounds

__all__ = ["left_shift"]


def left_shift(problem: Problem, bounds: Bounds, placements: list[Placement]) -> list[Placement]:
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
    operator = problem.operators.get(p.operator) if p.operator is not None else None
    operator_calendar = operator.calendar if operator is not None else None
    t = ready
    while t <= p.start:
        slot = problem.slot(op, p.machine, t)
        if slot is None:
            return None
        start, end = slot
        if operator_calendar is None or operator_calendar.contains(start, end):
            return start
        window = operator_calendar.window_at(start)
        following = operator_calendar.next_open(window[1] if window else start)
        if following is None:
            return None
        t = max(following, start + 1)
    return None


def _placed_at(problem: Problem, op: Operation, p: Placement, start: int) -> Placement:
    slot = problem.slot(op, p.machine, start)
    assert slot is not None and slot[0] == start  # _earliest_start found this slot
    return Placement(p.job, p.operation, p.machine, p.operator, start, slot[1])
