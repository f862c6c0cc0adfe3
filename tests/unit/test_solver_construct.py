"""solver.solve's constructive phase: the dispatching rules alone return plans that schedule.validate
accepts, on random instances with calendars, operations that may span breaks, milestones, setups,
operators with skills and shifts, releases, `now` and frozen operations; and no such plan ends before
the capacity bound, which the solver reports as proven."""

from __future__ import annotations

import random
import time
from typing import Any

from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

from engine.tools.planning_model import parse_problem
from engine.tools.schedule_check import violations
from engine.tools.solver_bounds import capacity_bound, compute_bounds
from engine.tools.solver_construct import Dispatcher, Rule, construct
from engine.tools.solver_diagnosis import infeasibility_reasons

FAMILIES = ("x", "y", "z")
SKILLS = ("weld", "paint")


def _calendar(draw: Any, shifts: tuple[int, int], horizon: int) -> list[dict[str, int]] | None:
    """None (always open) or the instance's shift pattern, shifted by up to 10 minutes (so machine and
    operator shifts always overlap by 40 minutes: every operation fits somewhere, and a plan exists)."""
    if draw(st.booleans()):
        return None
    period, open_for = shifts
    offset = draw(st.integers(0, 10))
    return [
        {"start": k * period + offset, "end": k * period + offset + open_for}
        for k in range(horizon // period + 2)
    ]


@st.composite
def problems(draw: Any) -> dict[str, Any]:
    machines = [f"M{i}" for i in range(draw(st.integers(1, 4)))]
    jobs = []
    for j in range(draw(st.integers(1, 7))):
        operations = []
        for o in range(draw(st.integers(1, 4))):
            eligible = draw(st.lists(st.sampled_from(machines), min_size=1, max_size=3, unique=True))
            operations.append(
                {
                    "id": f"o{o}",
                    "machines": [{"machine": m, "duration": draw(st.integers(0, 40))} for m in eligible],
                    "family": draw(st.sampled_from((None, *FAMILIES))),
                    "skill": draw(st.sampled_from((None, None, *SKILLS))),
                    "may_span_breaks": draw(st.booleans()),
                }
            )
        release = draw(st.none() | st.integers(0, 60))
        jobs.append({"id": f"J{j}", "operations": operations, "release": release})
    work = sum(max(o["duration"] for o in op["machines"]) for job in jobs for op in job["operations"])
    horizon = 4 * (work + 300)
    open_for = draw(st.integers(50, 120))
    shifts = (open_for + draw(st.integers(5, 100)), open_for)
    operators = [
        {
            "id": f"P{i}",
            "skills": draw(st.lists(st.sampled_from(SKILLS), min_size=1, max_size=2, unique=True)),
            "calendar": _calendar(draw, shifts, horizon),
        }
        for i in range(draw(st.integers(0, 3)))
    ]
    setups = [
        {"machine": m, "from": a, "to": b, "duration": draw(st.integers(1, 30))}
        for m in machines
        for a in FAMILIES
        for b in FAMILIES
        if a != b and draw(st.integers(0, 3)) == 0
    ]
    return {
        "jobs": jobs,
        "machines": [{"id": m, "calendar": _calendar(draw, shifts, horizon)} for m in machines],
        "operators": operators,
        "setups": setups,
        "now": draw(st.none() | st.integers(0, 30)),
    }


def _plan_or_skip(args: dict[str, Any]) -> tuple[Any, Any, list[Any]]:
    problem = parse_problem(args)
    bounds = compute_bounds(problem)
    assume(not infeasibility_reasons(problem, bounds))  # no plan exists: nothing to construct
    plan = construct(problem, bounds, until=time.monotonic() + 30, explore_until=0.0)  # the classic rules
    return problem, bounds, plan


def _replanning(args: dict[str, Any], plan: list[Any], cut: int) -> dict[str, Any]:
    """The same instance re-planned at `cut`: what had started is frozen where it was (with its
    operator), `now` is the cut, and the plan is the hint."""
    frozen = []
    for p in plan:
        if p.start < cut:
            item = {
                "job": p.job,
                "operation": p.operation,
                "machine": p.machine,
                "start": p.start,
                "end": p.end,
            }
            if p.operator is not None:
                item["operator"] = p.operator
            frozen.append(item)
    previous = [
        {
            "job": p.job,
            "operation": p.operation,
            "machine": p.machine,
            "operator": p.operator,
            "start": p.start,
            "end": p.end,
        }
        for p in plan
    ]
    return {**args, "now": cut, "frozen": frozen, "hint": {"assignments": previous}}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.randoms(use_true_random=False))
def test_the_constructive_phase_alone_returns_a_valid_plan(args, rng):
    """Whenever the diagnosis finds nothing impossible, the dispatching rules return a plan, and
    schedule.validate accepts it; so do they when re-planning with frozen operations and `now`."""
    problem, _, plan = _plan_or_skip(args)
    note(f"instance: {args}")

    assert plan is not None
    assert violations(problem, plan, problem.now) == []

    cut = rng.choice(plan).start + rng.randint(0, 20)
    note(f"first plan: {plan}\ncut: {cut}")
    replanned, _, again = _plan_or_skip(_replanning(args, plan, cut))
    assert again is not None
    assert violations(replanned, again, replanned.now) == []


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.integers(0, 2**16))
def test_dispatching_the_rest_of_a_plan_again_keeps_it_valid(args, seed):
    """The improvement step that keeps a plan's beginning and dispatches the rest again by a
    randomised rule yields valid plans too."""
    problem, bounds, plan = _plan_or_skip(args)
    assert plan is not None
    rng = random.Random(seed)
    cut = rng.choice(plan).start
    kept = {p.key: p for p in plan if p.start < cut}

    again = Dispatcher(problem, bounds).run(Rule.random(problem, rng), None, kept)

    assert again is not None
    assert {p.key: p for p in again if p.key in kept} == kept
    assert violations(problem, again, problem.now) == []


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_no_valid_plan_ends_before_the_capacity_bound(args):
    """The capacity bound (machine groups against their open minutes after each release time) is
    reported as a proven bound, and a plan meeting it is called optimal: it must never exceed the end
    of a plan that schedule.validate accepts."""
    problem, bounds, plan = _plan_or_skip(args)
    assert plan is not None and not violations(problem, plan, problem.now)

    assert capacity_bound(problem, bounds) <= max(p.end for p in plan)
