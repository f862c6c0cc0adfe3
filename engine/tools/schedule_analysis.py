"""schedule.analyze: the numbers a planner's dashboard shows for a plan.

Owns utilization (busy and open hours per machine and operator, in total and per hour/day/week
bucket), the bottleneck ranking, makespan, per-job lateness and flow time, and the totals.

Definitions, so the numbers can be trusted:
- The period is [horizon start or first start, last end) unless `period` gives one.
- Open time is the calendar's windows inside the period (all of it for a resource without one).
- Busy time is the open time an operation holds; an operation paused over a break is not busy
  during the break. Setup minutes between consecutive operations are reported apart.
- Buckets are aligned to the clock of `horizon_start` (hours, midnights, Mondays); a problem in
  plain minutes aligns them to multiples of 60, 1440 and 10080 minutes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from engine.context import ToolContext
from engine.tools.planning_model import (
    Calendar,
    Placement,
    Problem,
    job_outcomes,
    parse_problem,
    read_assignments,
    with_stored_inputs,
)
from store.errors import Permanent

__all__ = ["BUCKET_MINUTES", "analyze"]

BUCKET_MINUTES = {"hour": 60, "day": 1440, "week": 10080}


def analyze(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Utilization, bottlenecks and job metrics of a plan. Schemas: catalogs/tools.json, schedule.analyze."""
    problem = parse_problem(with_stored_inputs(args["problem"], ctx), args["plan"])
    plan_all = read_assignments(problem.time, args["plan"].get("assignments") or [])
    plan = [p for p in plan_all if p.key in problem.operations]
    bucket = args.get("bucket", "day")
    start, end = _period(problem, plan, args.get("period"))
    buckets = _buckets(problem, bucket, start, end)
    machines = [
        {
            "machine": m.id,
            **_utilization(problem, m.calendar, [p for p in plan if p.machine == m.id], start, end, buckets),
        }
        for m in problem.machines.values()
    ]
    operators = [
        {
            "operator": o.id,
            **_utilization(problem, o.calendar, [p for p in plan if p.operator == o.id], start, end, buckets),
        }
        for o in problem.operators.values()
    ]
    for row in machines:
        row["setup_hours"] = _hours(_setup_minutes(problem, row["machine"], plan))
    ranked = sorted(machines, key=lambda r: (-(r["utilization"] or 0.0), -r["busy_hours"], r["machine"]))
    jobs = _jobs(problem, plan)
    busy = sum(r["busy_hours"] for r in machines)
    available = sum(r["available_hours"] for r in machines)
    render = problem.time.render
    late = [j for j in jobs if j["late"]]
    flows = [j["flow_time_minutes"] for j in jobs if j["flow_time_minutes"] is not None]
    lateness = [j["lateness_minutes"] for j in jobs if j["lateness_minutes"] is not None]
    return {
        "bucket": bucket,
        "start": render(start),
        "finish": render(end),
        "makespan": max((p.end for p in plan), default=0),
        "machines": machines,
        "operators": operators,
        "bottlenecks": [
            {
                "rank": i,
                "machine": r["machine"],
                "utilization": r["utilization"],
                "busy_hours": r["busy_hours"],
            }
            for i, r in enumerate(ranked, start=1)
        ],
        "jobs": jobs,
        "totals": {
            "jobs": len(jobs),
            "operations": len(plan),
            "ignored_assignments": len(plan_all) - len(plan),
            "late_jobs": len(late),
            "total_tardiness_minutes": sum(j["tardiness_minutes"] for j in jobs),
            "weighted_tardiness": round(sum(j["tardiness_minutes"] * j["weight"] for j in jobs), 6),
            "max_lateness_minutes": max(lateness, default=None),
            "mean_flow_time_minutes": round(sum(flows) / len(flows), 3) if flows else None,
            "busy_hours": round(busy, 3),
            "available_hours": round(available, 3),
            "utilization": round(busy / available, 4) if available else None,
            "setup_hours": round(sum(r["setup_hours"] for r in machines), 3),
        },
    }


def _period(problem: Problem, plan: list[Placement], period: dict[str, Any] | None) -> tuple[int, int]:
    start = min([0, *(p.start for p in plan)])
    end = max((p.end for p in plan), default=start)
    if period:
        if period.get("start") is not None:
            start = problem.time.minutes(period["start"], "period.start", "floor")
        if period.get("end") is not None:
            end = problem.time.minutes(period["end"], "period.end", "ceil")
    if end < start:
        raise Permanent("period ends before it starts", code="INVALID_WINDOW")
    return start, end


def _buckets(problem: Problem, bucket: str, start: int, end: int) -> list[tuple[int, int]]:
    size = BUCKET_MINUTES[bucket]
    first = _bucket_floor(problem, bucket, start)
    edges = []
    t = first
    while t < end:
        edges.append((max(t, start), min(t + size, end)))
        t += size
    return edges


def _bucket_floor(problem: Problem, bucket: str, minute: int) -> int:
    """The start of the bucket holding `minute`, on the clock of the horizon start."""
    size = BUCKET_MINUTES[bucket]
    instant = problem.time.instant(minute)
    if instant is None:
        return minute - minute % size
    floor: datetime = instant.replace(minute=0, second=0, microsecond=0)
    if bucket in ("day", "week"):
        floor = floor.replace(hour=0)
    if bucket == "week":
        floor -= timedelta(days=floor.weekday())
    return minute - round((instant - floor) / timedelta(minutes=1))


def _utilization(
    problem: Problem,
    calendar: Calendar | None,
    plan: list[Placement],
    start: int,
    end: int,
    buckets: list[tuple[int, int]],
) -> dict[str, Any]:
    render = problem.time.render
    rows = []
    for a, b in buckets:
        busy = _busy(calendar, plan, a, b)
        available = _open(calendar, a, b)
        rows.append(
            {
                "start": render(a),
                "end": render(b),
                "busy_hours": _hours(busy),
                "available_hours": _hours(available),
                "utilization": round(busy / available, 4) if available else None,
            }
        )
    busy, available = _busy(calendar, plan, start, end), _open(calendar, start, end)
    return {
        "operations": len(plan),
        "busy_hours": _hours(busy),
        "available_hours": _hours(available),
        "idle_hours": _hours(available - busy),
        "utilization": round(busy / available, 4) if available else None,
        "buckets": rows,
    }


def _open(calendar: Calendar | None, a: int, b: int) -> int:
    return max(0, b - a) if calendar is None else calendar.open_minutes(a, b)


def _busy(calendar: Calendar | None, plan: Iterable[Placement], a: int, b: int) -> int:
    return sum(_open(calendar, max(p.start, a), min(p.end, b)) for p in plan if p.start < b and p.end > a)


def _setup_minutes(problem: Problem, machine: str, plan: list[Placement]) -> int:
    sequence = sorted(
        (p for p in plan if p.machine == machine and p.end > p.start), key=lambda p: (p.start, p.end)
    )
    return sum(
        problem.setups.between(machine, problem.operations[a.key].family, problem.operations[b.key].family)
        for a, b in pairwise(sequence)
    )


def _jobs(problem: Problem, plan: list[Placement]) -> list[dict[str, Any]]:
    render = problem.time.render
    rows = []
    for outcome in job_outcomes(problem, plan):
        job = outcome.job
        rows.append(
            {
                "job": job.id,
                "complete": outcome.complete,
                "release": None if job.release is None else render(job.release),
                "due": None if job.due is None else render(job.due),
                "start": None if outcome.start is None else render(outcome.start),
                "end": None if outcome.end is None else render(outcome.end),
                "flow_time_minutes": outcome.flow_time,
                "lateness_minutes": outcome.lateness,
                "tardiness_minutes": outcome.tardiness,
                "late": outcome.tardiness > 0,
                "weight": job.weight,
                "priority": job.priority,
            }
        )
    return rows


def _hours(minutes: int) -> float:
    return round(minutes / 60, 3)
