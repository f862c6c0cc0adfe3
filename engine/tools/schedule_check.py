"""schedule.validate: check any plan, solved or edited by a person, against its problem.

Owns the list of rules a plan must keep and their stable violation codes. The rules are the
solver's constraints read back, so a plan from solver.solve always passes and a hand edit that
breaks one is named precisely:

  UNKNOWN_OPERATION, DUPLICATE_OPERATION, MISSING_OPERATION   the plan covers each operation once
  NOT_ELIGIBLE, WRONG_DURATION                                the machine may run it, for its time
  PRECEDENCE                                                  a job's operations run in order
  MACHINE_OVERLAP, OPERATOR_OVERLAP                           one operation at a time per resource
  SETUP_TOO_SHORT                                             family changes leave the setup time
  OUTSIDE_CALENDAR                                            machines and operators work in shifts
  SKILL_MISSING, UNKNOWN_OPERATOR                             a qualified operator does it
  BEFORE_RELEASE, AFTER_DEADLINE, IN_THE_PAST                 job windows and, when asked, `now`
  FROZEN_MOVED                                                running operations stay put

Frozen operations are facts: they are not held to calendars, releases or `now`. Zero-length
operations (milestones) take no machine time: they overlap nothing and need no setup.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise
from typing import Any

from engine.context import ToolContext
from engine.tools.planning_model import (
    OpKey,
    Placement,
    Problem,
    label,
    parse_problem,
    read_assignments,
    with_stored_inputs,
)

__all__ = ["MAX_VIOLATIONS", "validate", "violations"]

MAX_VIOLATIONS = 1000  # a plan broken everywhere still gets a readable answer


def validate(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Check a plan against its problem. Schemas: catalogs/tools.json, schedule.validate."""
    problem = parse_problem(with_stored_inputs(args["problem"], ctx), args["plan"])
    plan = read_assignments(problem.time, args["plan"].get("assignments") or [])
    now = args.get("now")
    now_minutes = problem.time.minutes(now, "now", "ceil") if now is not None else problem.now
    found = violations(problem, plan, now_minutes)
    limit = int(args.get("max_violations", MAX_VIOLATIONS))
    counts: dict[str, int] = {}
    for v in found:
        counts[v["code"]] = counts.get(v["code"], 0) + 1
    return {
        "valid": not found,
        "violations": found[:limit],
        "counts": counts,
        "truncated": len(found) > limit,
        "checked": {"operations": len(problem.operations), "assignments": len(plan)},
    }


def violations(problem: Problem, plan: list[Placement], now: int | None = None) -> list[dict[str, Any]]:
    """Every rule the plan breaks, in a stable order (coverage, then per operation, then per resource)."""
    found: list[dict[str, Any]] = []
    known = _coverage(problem, plan, found)
    for p in known.values():
        _operation_rules(problem, p, now, found)
    _precedence(problem, known, found)
    _one_at_a_time(problem, known, found)
    return found


def _violation(code: str, keys: Iterable[OpKey], message: str, **extra: Any) -> dict[str, Any]:
    return {
        "code": code,
        "operations": [{"job": j, "operation": o} for j, o in keys],
        "message": message,
        **extra,
    }


def _coverage(problem: Problem, plan: list[Placement], found: list[dict[str, Any]]) -> dict[OpKey, Placement]:
    known: dict[OpKey, Placement] = {}
    for p in plan:
        if p.key not in problem.operations:
            found.append(
                _violation("UNKNOWN_OPERATION", [p.key], f"{label(p.key)} is not an operation of the problem")
            )
        elif p.key in known:
            found.append(
                _violation("DUPLICATE_OPERATION", [p.key], f"{label(p.key)} is planned more than once")
            )
        else:
            known[p.key] = p
    for key in problem.operations:
        if key not in known:
            found.append(_violation("MISSING_OPERATION", [key], f"{label(key)} is not in the plan"))
    return known


def _operation_rules(problem: Problem, p: Placement, now: int | None, found: list[dict[str, Any]]) -> None:
    op = problem.operations[p.key]
    job = problem.job_by_id[p.job]
    render = problem.time.render
    frozen = problem.frozen.get(p.key)
    at = f"{label(p.key)} on {p.machine} [{render(p.start)}, {render(p.end)})"
    if frozen is not None and (p.machine, p.start, p.end) != (frozen.machine, frozen.start, frozen.end):
        found.append(
            _violation(
                "FROZEN_MOVED",
                [p.key],
                f"{label(p.key)} is frozen on {frozen.machine} "
                f"[{render(frozen.start)}, {render(frozen.end)}) "
                f"but the plan has it {at}",
            )
        )
    if p.machine not in op.durations:
        found.append(
            _violation(
                "NOT_ELIGIBLE",
                [p.key],
                f"{label(p.key)} cannot run on {p.machine}; eligible: {', '.join(op.durations)}",
                machine=p.machine,
            )
        )
    elif frozen is None:
        _duration_and_calendar(problem, p, at, found)
    if job.deadline is not None and p.end > job.deadline:
        found.append(
            _violation(
                "AFTER_DEADLINE", [p.key], f"{at} ends after job {job.id}'s deadline {render(job.deadline)}"
            )
        )
    if frozen is None and job.release is not None and p.start < job.release:
        found.append(
            _violation(
                "BEFORE_RELEASE", [p.key], f"{at} starts before job {job.id}'s release {render(job.release)}"
            )
        )
    if frozen is None and now is not None and p.start < now:
        found.append(_violation("IN_THE_PAST", [p.key], f"{at} starts before now ({render(now)})"))
    _operator_rules(problem, p, at, frozen is None, found)


def _duration_and_calendar(problem: Problem, p: Placement, at: str, found: list[dict[str, Any]]) -> None:
    op = problem.operations[p.key]
    work = op.durations[p.machine]
    calendar = problem.machines[p.machine].calendar
    spans = calendar is not None and op.may_span_breaks and work > 0
    if spans:
        assert calendar is not None
        done = calendar.open_minutes(p.start, p.end) if p.end >= p.start else -1
        right = (
            done == work
            and calendar.window_at(p.start) is not None
            and calendar.window_at(p.end - 1) is not None
        )
        if done != work:
            found.append(
                _violation(
                    "WRONG_DURATION",
                    [p.key],
                    f"{at} holds {done} open minutes of work, but it needs {work}",
                    machine=p.machine,
                )
            )
        elif not right:
            found.append(
                _violation(
                    "OUTSIDE_CALENDAR",
                    [p.key],
                    f"{at} starts or ends while {p.machine} is closed",
                    machine=p.machine,
                )
            )
        return
    if p.end - p.start != work:
        found.append(
            _violation(
                "WRONG_DURATION",
                [p.key],
                f"{at} lasts {p.end - p.start} min, but it takes {work} min on {p.machine}",
                machine=p.machine,
            )
        )
    if calendar is not None and not calendar.contains(p.start, p.end):
        found.append(
            _violation(
                "OUTSIDE_CALENDAR",
                [p.key],
                f"{at} is not inside one open window of {p.machine}"
                + ("" if op.may_span_breaks else " (it may not span breaks)"),
                machine=p.machine,
            )
        )


def _operator_rules(
    problem: Problem, p: Placement, at: str, check_calendar: bool, found: list[dict[str, Any]]
) -> None:
    op = problem.operations[p.key]
    if p.operator is not None and p.operator not in problem.operators:
        found.append(
            _violation(
                "UNKNOWN_OPERATOR", [p.key], f"{at} names operator {p.operator!r}, who is not in operators"
            )
        )
        return
    if op.skill is None:
        return
    if p.operator is None:
        found.append(
            _violation(
                "SKILL_MISSING", [p.key], f"{at} needs an operator with skill {op.skill!r}; none is given"
            )
        )
        return
    operator = problem.operators[p.operator]
    if op.skill not in operator.skills:
        found.append(
            _violation(
                "SKILL_MISSING",
                [p.key],
                f"{at} needs skill {op.skill!r}, which operator {operator.id} lacks",
                operator=operator.id,
            )
        )
    if check_calendar and operator.calendar is not None and not operator.calendar.contains(p.start, p.end):
        found.append(
            _violation(
                "OUTSIDE_CALENDAR",
                [p.key],
                f"{at} is not inside one shift of operator {operator.id}",
                operator=operator.id,
            )
        )


def _precedence(problem: Problem, known: dict[OpKey, Placement], found: list[dict[str, Any]]) -> None:
    render = problem.time.render
    for job in problem.jobs:
        placed = [known[op.key] for op in job.operations if op.key in known]
        for before, after in pairwise(placed):
            if after.start < before.end:
                found.append(
                    _violation(
                        "PRECEDENCE",
                        [before.key, after.key],
                        f"{label(after.key)} starts at {render(after.start)}, before {label(before.key)} "
                        f"ends at {render(before.end)}",
                    )
                )


def _one_at_a_time(problem: Problem, known: dict[OpKey, Placement], found: list[dict[str, Any]]) -> None:
    render = problem.time.render
    by_machine: dict[str, list[Placement]] = {}
    by_operator: dict[str, list[Placement]] = {}
    for p in known.values():
        by_machine.setdefault(p.machine, []).append(p)
        if p.operator is not None:
            by_operator.setdefault(p.operator, []).append(p)
    for code, groups in (("MACHINE_OVERLAP", by_machine), ("OPERATOR_OVERLAP", by_operator)):
        for resource, items in sorted(groups.items()):
            for a, b in _overlaps(items):
                found.append(
                    _violation(
                        code,
                        [a.key, b.key],
                        f"{label(a.key)} [{render(a.start)}, {render(a.end)}) and {label(b.key)} "
                        f"[{render(b.start)}, {render(b.end)}) overlap on {resource}",
                        **({"machine": resource} if code == "MACHINE_OVERLAP" else {"operator": resource}),
                    )
                )
    for machine, items in sorted(by_machine.items()):
        sequence = sorted((p for p in items if p.end > p.start), key=lambda p: (p.start, p.end))
        for a, b in pairwise(sequence):
            if a.key in problem.frozen and b.key in problem.frozen:
                continue
            need = problem.setups.between(
                machine, problem.operations[a.key].family, problem.operations[b.key].family
            )
            if need and b.start - a.end < need and b.start >= a.end:
                found.append(
                    _violation(
                        "SETUP_TOO_SHORT",
                        [a.key, b.key],
                        f"{label(b.key)} starts {b.start - a.end} min after {label(a.key)} on {machine}, "
                        f"but changing family {problem.operations[a.key].family!r} → "
                        f"{problem.operations[b.key].family!r} takes {need} min",
                        machine=machine,
                    )
                )


def _overlaps(items: list[Placement]) -> list[tuple[Placement, Placement]]:
    """Pairs sharing time: a sweep in start order against the operation that ends last so far.
    Zero-length operations occupy no time."""
    pairs = []
    latest: Placement | None = None
    for p in sorted(items, key=lambda p: (p.start, p.end)):
        if p.end <= p.start:
            continue
        if latest is not None and p.start < latest.end:
            pairs.append((latest, p))
        if latest is None or p.end > latest.end:
            latest = p
    return pairs
