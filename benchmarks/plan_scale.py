"""Benchmark: solver.solve on factory-size flexible job shops with shift calendars and setups, against
a plain greedy list scheduler measured in the same run.

Instances (seeded, so every run plans the same ones; `--family` gives a fresh, held-out set): N jobs
of 5 operations on M machines, sizes 120x5 on 12, 200x5 on 20 and 300x5 on 25 machines. Each
operation is eligible on 2-3 random machines, with a base duration of 20-240 min varied by up to
±30% per machine. Every machine works two shifts, Monday to Friday 06:00-22:00, for six weeks
(minute 0 is a Monday 00:00); operations fit inside one shift (they do not span breaks). Each job
is of one of four product families; a quarter of the machines need a setup of 15-60 min to change
family (machine-specific entries). Jobs are released at random minutes in the first week. The
objective is the makespan.

For each instance:
- the greedy baseline below, timed, its plan checked by schedule.validate;
- solver.solve for --limit seconds (default 60) with --workers (default 2), through the catalog's
  input and output schemas, in a fresh process so its peak memory is its own: the first valid
  plan's time and the makespan at 10, 30 and 60 s come from the output's `progress` curve, the
  bound and gap from the answer, and the final plan is checked by schedule.validate;
- solver.solve again with a --first limit (default 5 s): its plan, returned within that limit,
  is checked too: "a valid plan within seconds" is a plan in hand, not a point on a curve.

The greedy baseline, exactly as specified for this benchmark (so its ratio means the same thing in
every measurement):

  1. Sort the jobs by release (ties: input order).
  2. Repeat passes over the jobs in that order; in each pass, take the next unscheduled operation
     of every job that still has one (one operation per job per pass).
  3. For that operation, try each eligible machine: the earliest start is the later of the job's
     previous operation's end (or the job's release) and the machine's last end plus the setup
     time from the machine's last family to this operation's family (machine-specific entry first,
     then a machine-less one, else 0; no setup when the family is unchanged or the machine is idle
     so far). Move the start into the first open calendar window, at or after it, that holds the
     whole duration (operations do not span breaks). Pick the machine with the earliest end (ties:
     the order the operation lists its machines).
  4. Place it; the machine's last end and last family, and the job's ready time, move on.

  No look-ahead, no insertion into earlier gaps, no search.

    ./ops/bench plan_scale [--workers 2] [--limit 60] [--first 5] [--only 120x5] [--family NAME]

Prints a table, then as its last line one JSON object: per instance, and the worst of each figure
(`first_feasible_s`, `ratio_to_greedy_60s`, `gap_60s`), the largest `peak_rss_mb`, and `valid`
(every plan returned passed schedule.validate and every instance had one).
"""

from __future__ import annotations

import argparse
import bisect
import json
import multiprocessing
import os
import random
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZES = ((120, 12), (200, 20), (300, 25))  # (jobs, machines); every job has 5 operations
OPERATIONS_PER_JOB = 5
FAMILIES = ("A", "B", "C", "D")
WEEKS = 6
DAY = 1440
SHIFTS = (6 * 60, 22 * 60)  # Monday to Friday, 06:00-22:00
CHECKPOINTS_S = (10, 30, 60)


# --- the instances ----------------------------------------------------------------------------


def instance(jobs: int, machines: int, family: str = "ordo-plan-scale") -> dict[str, Any]:
    """A seeded solver.solve input of the shape in the module docstring."""
    rng = random.Random(f"{family}-{jobs}x{OPERATIONS_PER_JOB}-{machines}")  # str seeds are stable
    names = [f"M{m:02d}" for m in range(machines)]
    calendar = [
        {"start": day * DAY + SHIFTS[0], "end": day * DAY + SHIFTS[1]}
        for day in range(WEEKS * 7)
        if day % 7 < 5
    ]
    with_setups = rng.sample(names, max(1, machines // 4))
    setups = [
        {"machine": m, "from": a, "to": b, "duration": rng.randint(15, 60)}
        for m in with_setups
        for a in FAMILIES
        for b in FAMILIES
        if a != b
    ]
    job_list = []
    for j in range(jobs):
        product = rng.choice(FAMILIES)
        operations = []
        for o in range(OPERATIONS_PER_JOB):
            base = rng.randint(20, 240)
            eligible = rng.sample(names, rng.choice((2, 3)))
            operations.append(
                {
                    "id": f"op{o}",
                    "machines": [
                        {"machine": m, "duration": max(1, round(base * rng.uniform(0.7, 1.3)))}
                        for m in eligible
                    ],
                    "family": product,
                }
            )
        job_list.append({"id": f"J{j:03d}", "release": rng.randrange(0, 7 * DAY), "operations": operations})
    return {
        "horizon_start": "2026-01-05T00:00:00Z",  # a Monday: minute 0 is Monday 00:00
        "objective": "makespan",
        "jobs": job_list,
        "machines": [{"id": m, "calendar": calendar} for m in names],
        "setups": setups,
    }


# --- the greedy baseline (the rule in the module docstring, nothing more) ----------------------


def greedy(problem: dict[str, Any]) -> list[dict[str, Any]]:
    """The baseline list scheduler: one plan, in solver.solve's assignment format (integer minutes)."""
    windows = {
        m["id"]: sorted((w["start"], w["end"]) for w in m.get("calendar") or []) for m in problem["machines"]
    }
    by_machine = {
        (s["machine"], s["from"], s["to"]): s["duration"] for s in problem["setups"] if s.get("machine")
    }
    everywhere = {(s["from"], s["to"]): s["duration"] for s in problem["setups"] if not s.get("machine")}

    def setup(machine: str, before: str | None, after: str | None) -> int:
        if before is None or after is None or before == after:
            return 0
        specific = by_machine.get((machine, before, after))
        return specific if specific is not None else everywhere.get((before, after), 0)

    def fit(machine: str, t: int, duration: int) -> int | None:
        """The earliest start >= t in an open window that holds the whole duration."""
        if not windows[machine]:
            return t
        i = max(0, bisect.bisect_right([a for a, _ in windows[machine]], t) - 1)
        for a, b in windows[machine][i:]:
            s = max(a, t)
            if s + duration <= b:
                return s
        return None

    jobs = sorted(problem["jobs"], key=lambda job: job.get("release") or 0)  # stable: ties keep input order
    ready = {job["id"]: job.get("release") or 0 for job in jobs}
    machine_end: dict[str, int] = {}
    machine_family: dict[str, str | None] = {}
    plan = []
    for position in range(max(len(job["operations"]) for job in jobs)):
        for job in jobs:
            if position >= len(job["operations"]):
                continue
            op = job["operations"][position]
            best = None
            for option in op["machines"]:
                m, duration = option["machine"], option["duration"]
                earliest = ready[job["id"]]
                if m in machine_end:
                    earliest = max(earliest, machine_end[m] + setup(m, machine_family[m], op.get("family")))
                start = fit(m, earliest, duration)
                if start is not None and (best is None or start + duration < best[2]):
                    best = (m, start, start + duration)
            if best is None:
                raise SystemExit(f"greedy: {job['id']}/{op['id']} fits in no window")
            m, start, end = best
            plan.append(
                {
                    "job": job["id"],
                    "operation": op["id"],
                    "machine": m,
                    "operator": None,
                    "start": start,
                    "end": end,
                }
            )
            machine_end[m], machine_family[m], ready[job["id"]] = end, op.get("family"), end
    return plan


# --- measuring ---------------------------------------------------------------------------------


def _solve_in_child(problem: dict[str, Any], limit: float, workers: int, out: Any) -> None:
    """Runs in a fresh process: solve through the catalog's schemas, report the output and peak RSS."""
    from engine.context import ToolContext, ToolLimits
    from engine.registry import ToolRegistry
    from engine.runner import call_tool

    tool = ToolRegistry.load().require("solver.solve")  # once per worker process: not the solve's time
    args = {**problem, "time_limit_s": limit, "num_workers": workers}
    ctx = ToolContext.standalone(datetime.now(UTC), limit + 60, ToolLimits(cpus=workers))
    started = time.monotonic()
    answer = call_tool(tool, args, ctx)
    wall = time.monotonic() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out.send({"answer": answer, "wall_s": wall, "peak_rss_mb": peak_kb / 1024})
    out.close()


def solve_measured(problem: dict[str, Any], limit: float, workers: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_solve_in_child, args=(problem, limit, workers, send))
    child.start()
    send.close()
    result = receive.recv()
    child.join()
    return result


def valid(problem: dict[str, Any], assignments: list[dict[str, Any]]) -> bool:
    from engine.tools.planning_model import parse_problem, read_assignments
    from engine.tools.schedule_check import violations

    if not assignments:
        return False
    parsed = parse_problem(problem)
    return not violations(parsed, read_assignments(parsed.time, assignments))


def best_at(progress: list[dict[str, Any]], seconds: float) -> float | None:
    """The best objective found by `seconds` into the solve, from the answer's progress curve."""
    values = [p["objective"] for p in progress if p["t_s"] <= seconds and p.get("objective") is not None]
    return min(values) if values else None


def measure(name: str, problem: dict[str, Any], options: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    baseline = greedy(problem)
    greedy_s = time.perf_counter() - started
    greedy_makespan = max(a["end"] for a in baseline)

    first = solve_measured(problem, options.first, options.workers)
    full = solve_measured(problem, options.limit, options.workers)
    answer = full["answer"]
    progress = answer.get("progress") or []
    first_plan = first["answer"]["assignments"]
    makespan = answer["makespan"]
    at = {f"makespan_{s}s": best_at(progress, s) for s in CHECKPOINTS_S if s < options.limit}
    at[f"makespan_{options.limit:g}s"] = makespan
    first_feasible = progress[0]["t_s"] if progress else (answer["wall_s"] if makespan is not None else None)
    work = sum(
        min(o["duration"] for o in op["machines"]) for job in problem["jobs"] for op in job["operations"]
    )
    return {
        "instance": name,
        "operations": sum(len(job["operations"]) for job in problem["jobs"]),
        "machines": len(problem["machines"]),
        "min_work_min": work,
        "greedy_makespan": greedy_makespan,
        "greedy_s": round(greedy_s, 3),
        "greedy_valid": valid(problem, baseline),
        "first_feasible_s": None if first_feasible is None else round(first_feasible, 3),
        "first_run": {
            "limit_s": options.first,
            "wall_s": round(first["wall_s"], 3),
            "status": first["answer"]["status"],
            "makespan": first["answer"]["makespan"],
            "valid": valid(problem, first_plan),
        },
        **at,
        "status": answer["status"],
        "bound": answer["bound"],
        "gap": answer["gap"],
        "ratio_to_greedy": None if makespan is None else round(makespan / greedy_makespan, 4),
        "wall_s": round(full["wall_s"], 3),
        "peak_rss_mb": round(full["peak_rss_mb"], 1),
        "valid": valid(problem, answer["assignments"]),
        "progress_points": len(progress),
        "reason": answer.get("reason"),
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def _worst(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows]
    return None if any(v is None for v in values) else max(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=float, default=60.0, help="seconds per solve")
    parser.add_argument("--first", type=float, default=5.0, help="limit of the first-plan check, seconds")
    parser.add_argument("--only", default="", help="comma-separated sizes, e.g. 120x5,200x5")
    parser.add_argument("--family", default="ordo-plan-scale", help="seed prefix (another gives a fresh set)")
    options = parser.parse_args()

    import ortools

    print(
        f"workers={options.workers} limit={options.limit:g}s first={options.first:g}s cpus={os.cpu_count()} "
        f"ortools={ortools.__version__} load={os.getloadavg()[0]:.2f}"
    )
    header = (
        f"{'instance':<12}{'ops':>6}{'greedy':>8}{'first_s':>9}{'@10s':>8}{'@30s':>8}{'final':>8}"
        f"{'bound':>8}{'gap':>7}{'ratio':>7}{'rss_mb':>8}{'valid':>7}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for jobs, machines in SIZES:
        name = f"{jobs}x{OPERATIONS_PER_JOB}-m{machines}"
        if options.only and f"{jobs}x{OPERATIONS_PER_JOB}" not in options.only.split(","):
            continue
        row = measure(name, instance(jobs, machines, options.family), options)
        rows.append(row)
        final = row[f"makespan_{options.limit:g}s"]
        print(
            f"{name:<12}{row['operations']:>6}{row['greedy_makespan']:>8}{_show(row['first_feasible_s']):>9}"
            f"{_show(row.get('makespan_10s')):>8}{_show(row.get('makespan_30s')):>8}{_show(final):>8}"
            f"{_show(row['bound']):>8}{_show(row['gap']):>7}{_show(row['ratio_to_greedy']):>7}"
            f"{row['peak_rss_mb']:>8}{row['valid'] and row['first_run']['valid']!s:>7}",
            flush=True,
        )
    summary = {
        "benchmark": "plan_scale",
        "workers": options.workers,
        "limit_s": options.limit,
        "family": options.family,
        "cpus": os.cpu_count(),
        "ortools": ortools.__version__,
        "instances": {r["instance"]: r for r in rows},
        "first_feasible_s": _worst(rows, "first_feasible_s"),
        "first_run_wall_s": max(r["first_run"]["wall_s"] for r in rows),
        "ratio_to_greedy_60s": _worst(rows, "ratio_to_greedy"),
        "gap_60s": _worst(rows, "gap"),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
        "valid": all(r["valid"] and r["first_run"]["valid"] and r["greedy_valid"] for r in rows),
    }
    first, ratio = summary["first_feasible_s"], summary["ratio_to_greedy_60s"]
    summary["goal_met"] = first is not None and first < 5 and ratio is not None and ratio <= 0.75
    print("-" * len(header))
    print(
        f"worst: first plan {_show(first)} s, ratio to greedy {_show(ratio)}, "
        f"gap {_show(summary['gap_60s'])}; peak {summary['peak_rss_mb']} MB; "
        f"every plan valid: {summary['valid']}"
    )
    print(json.dumps(summary))


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.3f}" if value < 10 else f"{value:.0f}"
    return str(int(value))


if __name__ == "__main__":
    main()
