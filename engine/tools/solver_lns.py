"""Large-neighbourhood search: improving a plan too large for one CP-SAT model, a part at a time.

A factory plan (a thousand operations with alternatives, calendars and setup circuits) makes one
model whose presolve alone outlasts a minute. Here the plan improves by repeatedly freeing a small
part of it, solving that part exactly with everything else fixed, and keeping the result when the
whole plan is no worse:

- a *time window*: the operations that start in a stretch of the plan, on every machine (they may
  change machine, order and operator, and move anywhere inside the window); at the plan's end the
  window decides the makespan, elsewhere it compacts the plan;
- a *machine group*: the operations on a machine and on the machines that share operations with it,
  over a longer stretch, so work can move between alternatives;
- the plan's *second half dispatched again* (solver_construct) by a randomised rule: a cheap,
  coarse move where the makespan is decided;
- after each accepted part the whole plan is shifted left (solver_shift): time gained anywhere
  travels down the jobs and machines.
Each kind of move is drawn in proportion to how often it has paid off so far.

A part's model is the whole problem's model restricted to it (solver_model.Neighbourhood): the
problem's objective may not get worse, and below it the freed operations end as early as they can.
A plan is accepted when its objective is lower, or equal with operations ending earlier in total, so
the search keeps moving on a plateau. The part grows while its models solve to optimality quickly
and shrinks when they time out.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from ortools.sat.python import cp_model

from engine.context import ToolContext
from engine.tools.planning_model import OpKey, Placement, Problem, objective_terms
from engine.tools.solver_bounds import Bounds
from engine.tools.solver_construct import Dispatcher, Rule
from engine.tools.solver_model import JobShopModel, Neighbourhood, Progress, solve_model
from engine.tools.solver_shift import left_shift

__all__ = ["improve"]

_FIRST_SIZE, _MIN_SIZE, _MAX_SIZE = 60, 15, 400  # free operations per part
_GROW, _SHRINK = 1.15, 0.8
_PART_S = 2.0  # at most this long on one part
_TAIL_SHARE = 0.3  # this share of the parts are windows at the plan's end
_GROUP_SHARE = 0.3  # and this share machine groups; the rest are windows anywhere
_LAST_PART_S = 0.2  # less time than this left: stop


@dataclass
class _State:
    plan: list[Placement]
    objective: float
    ends: int  # the sum of every operation's end: lower is a more compact plan


@dataclass
class _Move:
    """A kind of step and how often it has paid off: it is drawn in proportion to that rate."""

    name: str
    tried: int = 0
    improved: int = 0

    @property
    def rate(self) -> float:
        return (self.improved + 1) / (self.tried + 2)


def improve(
    problem: Problem,
    bounds: Bounds,
    plan: list[Placement],
    *,
    stop_at: float,
    workers: int,
    seed: int,
    ctx: ToolContext,
    progress: Progress,
    bounds_for: Callable[[list[Placement]], Bounds],
) -> tuple[list[Placement], dict[str, int]]:
    """A plan at least as good as `plan`, found by re-planning parts of it until `stop_at` (or a
    cancel), and how many parts were tried and how many improved the plan. `bounds_for` gives the
    bounds of the plans at least as good as a given one (its makespan caps the horizon)."""
    rng = random.Random(seed)
    state = _state(problem, plan)
    size = float(_FIRST_SIZE)
    movable = [key for key in problem.operations if key not in problem.frozen]
    dispatcher = Dispatcher(problem, bounds)
    moves = [_Move("redispatch"), _Move("solve")]
    while movable and not ctx.is_canceled() and stop_at - time.monotonic() > _LAST_PART_S:
        move = rng.choices(moves, weights=[m.rate for m in moves])[0]
        move.tried += 1
        if move.name == "redispatch":
            found = _redispatch(problem, dispatcher, state, rng, stop_at)
        else:
            found, size = _solve_part(problem, bounds, state, rng, size, movable, stop_at, workers, ctx)
        if found is None:
            continue
        candidate = _state(problem, left_shift(problem, bounds, found))
        if (candidate.objective, candidate.ends) >= (state.objective, state.ends):
            continue
        move.improved += 1
        if candidate.objective < state.objective:
            progress.add(candidate.objective)
            bounds = bounds_for(candidate.plan)
        state = candidate
    stats = {"parts": sum(m.tried for m in moves), "parts_improved": sum(m.improved for m in moves)}
    return state.plan, stats


def _state(problem: Problem, plan: list[Placement]) -> _State:
    return _State(plan, objective_terms(problem, plan)["objective"], sum(p.end for p in plan))


def _redispatch(
    problem: Problem, dispatcher: Dispatcher, state: _State, rng: random.Random, stop_at: float
) -> list[Placement] | None:
    """Keep the plan up to a random moment in its second half (where the end is decided, and what is
    dispatched again is small) and dispatch the rest again by a randomised rule."""
    starts = sorted(p.start for p in state.plan)
    cut = rng.choice(starts[len(starts) // 2 :])
    kept = {p.key: p for p in state.plan if p.start < cut}
    return dispatcher.run(Rule.random(problem, rng), stop_at, kept)


def _solve_part(
    problem: Problem,
    bounds: Bounds,
    state: _State,
    rng: random.Random,
    size: float,
    movable: list[OpKey],
    stop_at: float,
    workers: int,
    ctx: ToolContext,
) -> tuple[list[Placement] | None, float]:
    """Solve one part of the plan with CP-SAT; the part grows after a proof and shrinks after a timeout."""
    neighbourhood = _choose(problem, state, rng, int(size), movable)
    model = JobShopModel(problem, bounds, neighbourhood)
    model.hint(state.plan)
    limit = min(_PART_S, stop_at - time.monotonic())
    if limit < _LAST_PART_S / 2:
        return None, size
    solver, status = solve_model(model, limit, workers, rng.randrange(1 << 16), ctx)
    if status == cp_model.OPTIMAL:
        size = min(_MAX_SIZE, size * _GROW, len(movable))
    else:
        size = max(_MIN_SIZE, size * _SHRINK)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None, size
    return model.read(solver), size


def _choose(
    problem: Problem, state: _State, rng: random.Random, size: int, movable: list[OpKey]
) -> Neighbourhood:
    """The next part to free: a window at the end, a machine group, or a window anywhere."""
    at = {p.key: p for p in state.plan}
    ordered = sorted(movable, key=lambda key: (at[key].start, at[key].end))
    size = max(1, min(size, len(ordered)))
    draw = rng.random()
    if draw < _GROUP_SHARE:
        free = _machine_group(problem, at, ordered, rng, size)
    elif draw < _GROUP_SHARE + _TAIL_SHARE:
        free = ordered[-size:]
    else:
        first = rng.randrange(0, len(ordered) - size + 1)
        free = ordered[first : first + size]
    starts = [at[key].start for key in free]
    ends = [at[key].end for key in free]
    span = max(ends) - min(starts)
    lo = min(starts) - span // 2  # freed operations may move earlier, into gaps before the window
    horizon = max(p.end for p in state.plan)
    hi = horizon if max(ends) >= horizon else max(ends)
    return Neighbourhood(frozenset(free), at, lo, hi, state.objective)


def _machine_group(
    problem: Problem, at: dict[OpKey, Placement], ordered: list[OpKey], rng: random.Random, size: int
) -> list[OpKey]:
    """The operations on a random machine and the machines sharing eligible operations with it, in a
    stretch of the plan holding about `size` of them."""
    machine = at[rng.choice(ordered)].machine
    group = {machine}
    for op in problem.operations.values():
        if machine in op.durations:
            group.update(op.durations)
    here = [key for key in ordered if at[key].machine in group]
    size = min(size, len(here))
    first = rng.randrange(0, len(here) - size + 1)
    return here[first : first + size]
