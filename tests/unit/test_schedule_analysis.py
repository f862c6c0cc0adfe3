"""schedule.analyze: utilization per machine and bucket, bottlenecks, job lateness and flow time,
checked against numbers worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from engine.context import ToolContext, ToolLimits
from engine.registry import ToolRegistry
from engine.runner import call_tool
from tests.helpers import plan_row

REGISTRY = ToolRegistry.load()


def analyze(problem: dict[str, Any], plan: dict[str, Any], **extra: Any) -> dict[str, Any]:
    ctx = ToolContext.standalone(datetime(2025, 1, 6, tzinfo=UTC), 30, ToolLimits(cpus=1))
    return call_tool(REGISTRY["schedule.analyze"], {"problem": problem, "plan": plan, **extra}, ctx)


PROBLEM: dict[str, Any] = {
    "jobs": [
        {
            "id": "J1",
            "release": 0,
            "due": 100,
            "weight": 2,
            "operations": [
                {"id": "a", "machines": [{"machine": "M1", "duration": 60}], "family": "x"},
                {"id": "b", "machines": [{"machine": "M2", "duration": 90}]},
            ],
        },
        {
            "id": "J2",
            "release": 30,
            "due": 200,
            "operations": [
                {"id": "a", "machines": [{"machine": "M1", "duration": 30}], "family": "y"},
            ],
        },
    ],
    "machines": [
        {"id": "M1"},
        {"id": "M2", "calendar": [{"start": 0, "end": 120}, {"start": 180, "end": 600}]},
    ],
    "setups": [{"from": "x", "to": "y", "duration": 15}],
}
# M2 runs J1/b over its break [120, 180): 60 + 30 minutes of work, 60 of pause
PLAN = {
    "assignments": [
        plan_row("J1", "a", "M1", 0, 60),
        plan_row("J2", "a", "M1", 75, 105),
        plan_row("J1", "b", "M2", 60, 210),
    ]
}


def test_utilization_counts_busy_open_time_only():
    """Over [0, 210): M1 is busy 90 of 210 min; M2 is open 150, busy 90 (not during its break)."""
    out = analyze({**PROBLEM, "jobs": _spanning(PROBLEM["jobs"])}, PLAN)

    m1, m2 = out["machines"]
    assert (out["makespan"], out["start"], out["finish"]) == (210, 0, 210)
    assert (m1["busy_hours"], m1["available_hours"], m1["utilization"], m1["setup_hours"]) == (
        1.5,
        3.5,
        0.4286,
        0.25,
    )
    assert (m2["busy_hours"], m2["available_hours"], m2["utilization"], m2["idle_hours"]) == (
        1.5,
        2.5,
        0.6,
        1.0,
    )
    assert [b["machine"] for b in out["bottlenecks"]] == ["M2", "M1"]
    assert out["totals"]["utilization"] == round(3.0 / 6.0, 4)


def test_hour_buckets_split_busy_and_open_time():
    """Hourly buckets over [0, 210): M2's third hour is half closed, its fourth hour entirely."""
    out = analyze({**PROBLEM, "jobs": _spanning(PROBLEM["jobs"])}, PLAN, bucket="hour")

    m2 = out["machines"][1]["buckets"]
    assert [(b["start"], b["end"]) for b in m2] == [(0, 60), (60, 120), (120, 180), (180, 210)]
    assert [b["busy_hours"] for b in m2] == [0.0, 1.0, 0.0, 0.5]
    assert [b["available_hours"] for b in m2] == [1.0, 1.0, 0.0, 0.5]
    assert [b["utilization"] for b in m2] == [0.0, 1.0, None, 1.0]


def test_job_lateness_tardiness_and_flow_time():
    """J1 ends at 210 against due 100 (110 late, weight 2); J2 ends at 105, 95 early, flowing 75 min."""
    out = analyze({**PROBLEM, "jobs": _spanning(PROBLEM["jobs"])}, PLAN)

    j1, j2 = out["jobs"]
    assert (
        j1["end"],
        j1["lateness_minutes"],
        j1["tardiness_minutes"],
        j1["late"],
        j1["flow_time_minutes"],
    ) == (210, 110, 110, True, 210)
    assert (j2["lateness_minutes"], j2["tardiness_minutes"], j2["late"], j2["flow_time_minutes"]) == (
        -95,
        0,
        False,
        75,
    )
    totals = out["totals"]
    assert (totals["late_jobs"], totals["total_tardiness_minutes"], totals["weighted_tardiness"]) == (
        1,
        110,
        220,
    )
    assert (totals["max_lateness_minutes"], totals["mean_flow_time_minutes"]) == (110, 142.5)


@pytest.mark.parametrize(
    ("bucket", "starts"),
    [
        ("hour", ["2025-01-05T23:30:00+02:00", "2025-01-06T00:00:00+02:00", "2025-01-06T01:00:00+02:00"]),
        ("day", ["2025-01-05T23:30:00+02:00", "2025-01-06T00:00:00+02:00"]),
        ("week", ["2025-01-05T23:30:00+02:00", "2025-01-06T00:00:00+02:00"]),  # 6 January 2025 is a Monday
    ],
)
def test_buckets_follow_the_clock_of_the_horizon_start(bucket, starts):
    """Hours, midnights and Mondays are those of horizon_start's offset, not of UTC."""
    problem = {
        "horizon_start": "2025-01-05T23:30:00+02:00",
        "jobs": [{"id": "J", "operations": [{"id": "a", "machines": [{"machine": "M", "duration": 120}]}]}],
    }
    row = plan_row("J", "a", "M", "2025-01-05T23:30:00+02:00", "2025-01-06T01:30:00+02:00")
    plan = {"assignments": [row]}

    out = analyze(problem, plan, bucket=bucket)

    assert [b["start"] for b in out["machines"][0]["buckets"]] == starts
    assert sum(b["busy_hours"] for b in out["machines"][0]["buckets"]) == 2.0


def test_a_period_and_operators_are_reported():
    """An explicit period narrows every figure; operators get their own utilization."""
    problem = {
        "jobs": [
            {
                "id": "J",
                "operations": [{"id": "a", "machines": [{"machine": "M", "duration": 60}], "skill": "s"}],
            }
        ],
        "operators": [{"id": "ann", "skills": ["s"], "calendar": [{"start": 0, "end": 480}]}],
    }
    plan = {"assignments": [plan_row("J", "a", "M", 30, 90, "ann")]}

    out = analyze(problem, plan, period={"start": 0, "end": 120})

    assert (out["machines"][0]["busy_hours"], out["machines"][0]["available_hours"]) == (1.0, 2.0)
    assert out["operators"] == [
        {
            "operator": "ann",
            "operations": 1,
            "busy_hours": 1.0,
            "available_hours": 2.0,
            "idle_hours": 1.0,
            "utilization": 0.5,
            "buckets": [
                {"start": 0, "end": 120, "busy_hours": 1.0, "available_hours": 2.0, "utilization": 0.5}
            ],
        }
    ]


def test_a_plan_from_the_solver_analyzes_end_to_end():
    """solver.solve → schedule.analyze: the same makespan, every operation counted."""
    problem = {
        "jobs": [
            {
                "id": f"J{j}",
                "due": 20,
                "operations": [
                    {"id": "a", "machines": [{"machine": "M1", "duration": 10 + j}]},
                    {"id": "b", "machines": [{"machine": "M2", "duration": 5}]},
                ],
            }
            for j in range(3)
        ],
        "time_limit_s": 5,
    }
    ctx = ToolContext.standalone(datetime(2025, 1, 6, tzinfo=UTC), 30, ToolLimits(cpus=2))
    plan = call_tool(REGISTRY["solver.solve"], problem, ctx)

    out = analyze(problem, plan, bucket="hour")

    assert out["makespan"] == plan["makespan"]
    assert (out["totals"]["operations"], out["totals"]["jobs"]) == (6, 3)
    assert out["totals"]["busy_hours"] == round((10 + 11 + 12 + 15) / 60, 3)


def _spanning(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same jobs with J1/b allowed to pause over M2's break."""
    out = []
    for job in jobs:
        ops = [
            dict(op, may_span_breaks=True) if (job["id"], op["id"]) == ("J1", "b") else op
            for op in job["operations"]
        ]
        out.append({**job, "operations": ops})
    return out
