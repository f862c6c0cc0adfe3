"""schedule.validate: every solver plan passes (property-tested on random instances), and each kind
of injected violation is caught with its code and the operations involved."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.context import ToolContext, ToolLimits
from engine.registry import ToolRegistry
from engine.runner import call_tool
from tests.helpers import plan_row

REGISTRY = ToolRegistry.load()
NOW = datetime(2025, 1, 6, 4, 0, tzinfo=UTC)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ctx() -> ToolContext:
    return ToolContext.standalone(NOW, 60, ToolLimits(cpus=2))


def solve(problem: dict[str, Any]) -> dict[str, Any]:
    return call_tool(REGISTRY["solver.solve"], {"time_limit_s": 5, "num_workers": 2, **problem}, ctx())


def validate(problem: dict[str, Any], plan: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return call_tool(REGISTRY["schedule.validate"], {"problem": problem, "plan": plan, **extra}, ctx())


def involved(result: dict[str, Any], code: str) -> list[set[tuple[str, str]]]:
    """For each violation with `code`, the operations it names."""
    return [
        {(o["job"], o["operation"]) for o in v["operations"]}
        for v in result["violations"]
        if v["code"] == code
    ]


# --- random instances: whatever the solver returns is valid -----------------------------------

MACHINES = ["M0", "M1", "M2"]
CALENDAR = [{"start": 0, "end": 40}, {"start": 50, "end": 90}, {"start": 95, "end": 500}]


@st.composite
def instances(draw: st.DrawFn) -> dict[str, Any]:
    """Small flexible job shops with every feature drawn at random: calendars with breaks that some
    operations may span, setups, operators with skills and shifts, releases, due dates, deadlines
    and every objective. Sized so a plan always exists: even run one operation at a time, with every
    setup and break, the work ends before the earliest deadline (300) and the calendars' end (500)."""
    jobs = []
    for j in range(draw(st.integers(1, 4))):
        operations = []
        for o in range(draw(st.integers(1, 3))):
            eligible = draw(st.lists(st.sampled_from(MACHINES), min_size=1, max_size=2, unique=True))
            operation: dict[str, Any] = {
                "id": f"o{o}",
                "machines": [{"machine": m, "duration": draw(st.integers(0, 12))} for m in eligible],
            }
            for key, choices in (("family", [None, "x", "y"]), ("skill", [None, None, "weld", "paint"])):
                value = draw(st.sampled_from(choices))
                if value is not None:
                    operation[key] = value
            if draw(st.booleans()):
                operation["may_span_breaks"] = True
            operations.append(operation)
        item: dict[str, Any] = {"id": f"J{j}", "operations": operations}
        if draw(st.booleans()):
            item["release"] = draw(st.integers(0, 30))
        if draw(st.booleans()):
            item["due"] = draw(st.integers(10, 80))
            item["weight"] = draw(st.integers(0, 3))
        if draw(st.integers(0, 3)) == 0:
            item["deadline"] = draw(st.integers(300, 500))
        jobs.append(item)
    problem: dict[str, Any] = {
        "jobs": jobs,
        "machines": [{"id": m, **({"calendar": CALENDAR} if draw(st.booleans()) else {})} for m in MACHINES],
        "operators": [
            {"id": "ann", "skills": ["weld"]},
            {
                "id": "bob",
                "skills": ["weld", "paint"],
                "calendar": [{"start": 0, "end": 60}, {"start": 70, "end": 500}],
            },
        ],
        "objective": draw(
            st.sampled_from(
                ["makespan", "total_tardiness", "weighted_tardiness", {"makespan": 1, "total_tardiness": 2}]
            )
        ),
    }
    if draw(st.booleans()):
        problem["setups"] = [
            {"from": "x", "to": "y", "duration": draw(st.integers(0, 6))},
            {"from": "y", "to": "x", "duration": draw(st.integers(0, 6))},
            {"machine": "M1", "from": "x", "to": "x", "duration": draw(st.integers(0, 3))},
        ]
    return problem


@FAST
@given(instances())
def test_every_plan_the_solver_returns_passes_validation(problem):
    """Random small problems with calendars, setups, operators and time windows get a valid plan."""
    out = solve(problem)

    assert out["status"] in ("optimal", "feasible"), out
    result = validate(problem, out)
    assert result["valid"], result["violations"]


@FAST
@given(
    instances(),
    st.sampled_from(
        [
            "MISSING_OPERATION",
            "UNKNOWN_OPERATION",
            "DUPLICATE_OPERATION",
            "WRONG_DURATION",
            "PRECEDENCE",
            "MACHINE_OVERLAP",
            "IN_THE_PAST",
        ]
    ),
    st.randoms(use_true_random=False),
)
def test_an_injected_violation_in_a_solver_plan_is_caught(problem, code, rng):
    """Break a valid plan in one way: validate names that rule and the operations involved."""
    plan = solve(problem)
    rows = plan["assignments"]
    positive = [a for a in rows if a["end"] > a["start"]]
    extra: dict[str, Any] = {}
    if code == "MISSING_OPERATION":
        victim = rows.pop(rng.randrange(len(rows)))
        expected = {(victim["job"], victim["operation"])}
    elif code == "UNKNOWN_OPERATION":
        rows.append({**rows[0], "job": "nobody"})
        expected = {("nobody", rows[0]["operation"])}
    elif code == "DUPLICATE_OPERATION":
        victim = rng.choice(rows)
        rows.append(dict(victim))
        expected = {(victim["job"], victim["operation"])}
    elif code == "WRONG_DURATION":
        if not positive:
            return
        victim = rng.choice(positive)
        victim["end"] -= 1
        expected = {(victim["job"], victim["operation"])}
    elif code == "PRECEDENCE":
        pairs = [
            (a, b)
            for a in positive
            for b in rows
            if a["job"] == b["job"] and int(b["operation"][1:]) == int(a["operation"][1:]) + 1
        ]
        if not pairs:
            return
        first, second = rng.choice(pairs)
        length = second["end"] - second["start"]
        second["start"] = first["end"] - 1
        second["end"] = second["start"] + length
        expected = {(first["job"], first["operation"]), (second["job"], second["operation"])}
    elif code == "MACHINE_OVERLAP":
        if len(positive) < 2:
            return
        a, b = rng.sample(positive, 2)
        b.update(machine=a["machine"], start=a["start"], end=a["end"])
        expected = {(a["job"], a["operation"]), (b["job"], b["operation"])}
    else:
        latest = max(rows, key=lambda a: a["start"])
        extra["now"] = latest["start"] + 1
        expected = {(latest["job"], latest["operation"])}

    result = validate(problem, plan, **extra)

    assert not result["valid"]
    assert expected in involved(result, code), result["violations"]


# --- every rule, on a hand-made plan ----------------------------------------------------------

PROBLEM: dict[str, Any] = {
    "jobs": [
        {
            "id": "J1",
            "release": 0,
            "due": 100,
            "deadline": 400,
            "operations": [
                {"id": "a", "machines": [{"machine": "M1", "duration": 10}], "family": "x"},
                {"id": "b", "machines": [{"machine": "M2", "duration": 20}], "skill": "weld"},
            ],
        },
        {
            "id": "J2",
            "release": 5,
            "operations": [
                {
                    "id": "a",
                    "machines": [{"machine": "M1", "duration": 15}, {"machine": "M2", "duration": 12}],
                    "family": "y",
                },
                {
                    "id": "b",
                    "machines": [{"machine": "M3", "duration": 25}],
                    "skill": "paint",
                    "may_span_breaks": True,
                },
            ],
        },
        {
            "id": "J3",
            "operations": [{"id": "a", "machines": [{"machine": "M3", "duration": 10}], "skill": "weld"}],
        },
    ],
    "machines": [
        {"id": "M1"},
        {"id": "M2", "calendar": [{"start": 0, "end": 100}, {"start": 110, "end": 500}]},
        {"id": "M3", "calendar": [{"start": 0, "end": 50}, {"start": 60, "end": 500}]},
    ],
    "operators": [
        {"id": "ann", "skills": ["weld"], "calendar": [{"start": 0, "end": 300}]},
        {"id": "bob", "skills": ["paint"]},
    ],
    "setups": [{"from": "x", "to": "y", "duration": 5}, {"from": "y", "to": "x", "duration": 5}],
}


PLAN: dict[str, Any] = {
    "assignments": [
        plan_row("J1", "a", "M1", 0, 10),
        plan_row("J1", "b", "M2", 10, 30, "ann"),
        plan_row("J2", "a", "M1", 15, 30),  # 5 min after J1/a: the x → y setup
        plan_row("J2", "b", "M3", 30, 65, "bob"),  # 20 min, a 10-min break, 5 min: it may span breaks
        plan_row("J3", "a", "M3", 0, 10, "ann"),
    ]
}


def test_the_hand_made_plan_is_valid():
    """The reference plan keeps every rule; each test below breaks exactly one thing in it."""
    result = validate(PROBLEM, PLAN)

    assert result == {
        "valid": True,
        "violations": [],
        "counts": {},
        "truncated": False,
        "checked": {"operations": 5, "assignments": 5},
    }


def _edit(job: str, operation: str, **changes: Any) -> Callable[[dict[str, Any]], None]:
    def apply(plan: dict[str, Any]) -> None:
        next(a for a in plan["assignments"] if (a["job"], a["operation"]) == (job, operation)).update(changes)

    return apply


CASES: list[tuple[str, Callable[[dict[str, Any]], None], set[tuple[str, str]], dict[str, Any]]] = [
    ("MISSING_OPERATION", lambda p: p["assignments"].pop(4), {("J3", "a")}, {}),
    (
        "UNKNOWN_OPERATION",
        lambda p: p["assignments"].append(plan_row("J9", "a", "M1", 200, 210)),
        {("J9", "a")},
        {},
    ),
    (
        "DUPLICATE_OPERATION",
        lambda p: p["assignments"].append(plan_row("J3", "a", "M3", 300, 310, "ann")),
        {("J3", "a")},
        {},
    ),
    ("NOT_ELIGIBLE", _edit("J1", "a", machine="M2"), {("J1", "a")}, {}),
    ("WRONG_DURATION", _edit("J3", "a", end=9), {("J3", "a")}, {}),
    ("WRONG_DURATION", _edit("J2", "b", end=70), {("J2", "b")}, {}),  # 30 open minutes for 25 of work
    ("PRECEDENCE", _edit("J1", "b", start=5, end=25), {("J1", "a"), ("J1", "b")}, {}),
    ("MACHINE_OVERLAP", _edit("J2", "a", start=5, end=20), {("J1", "a"), ("J2", "a")}, {}),
    ("OPERATOR_OVERLAP", _edit("J3", "a", start=5, end=15), {("J3", "a"), ("J1", "b")}, {}),
    ("SETUP_TOO_SHORT", _edit("J2", "a", start=12, end=27), {("J1", "a"), ("J2", "a")}, {}),
    ("OUTSIDE_CALENDAR", _edit("J1", "b", start=95, end=115), {("J1", "b")}, {}),  # across M2's break
    ("OUTSIDE_CALENDAR", _edit("J1", "b", start=290, end=310), {("J1", "b")}, {}),  # after Ann's shift
    ("OUTSIDE_CALENDAR", _edit("J2", "b", start=50, end=85), {("J2", "b")}, {}),  # starts while M3 is closed
    ("SKILL_MISSING", _edit("J1", "b", operator="bob"), {("J1", "b")}, {}),
    ("SKILL_MISSING", _edit("J1", "b", operator=None), {("J1", "b")}, {}),
    ("UNKNOWN_OPERATOR", _edit("J1", "b", operator="zed"), {("J1", "b")}, {}),
    ("BEFORE_RELEASE", _edit("J2", "a", machine="M2", start=0, end=12), {("J2", "a")}, {}),
    ("AFTER_DEADLINE", _edit("J1", "b", start=390, end=410), {("J1", "b")}, {}),
    ("IN_THE_PAST", lambda p: None, {("J2", "a")}, {"now": 20}),
]


@pytest.mark.parametrize(("code", "mutate", "operations", "extra"), CASES, ids=[c[0] for c in CASES])
def test_each_rule_is_caught_with_its_code_and_operations(code, mutate, operations, extra):
    """One edit to the reference plan: validate names the rule broken and the operations involved."""
    plan = copy.deepcopy(PLAN)
    mutate(plan)

    result = validate(PROBLEM, plan, **extra)

    assert not result["valid"]
    assert operations in involved(result, code), result["violations"]
    assert result["counts"][code] >= 1
    assert all(v["message"] for v in result["violations"])


def test_a_frozen_operation_that_moved_is_reported_and_calendars_do_not_bind_it():
    """Frozen operations are facts: moving one is a violation; keeping one in closed time is not."""
    problem = {
        **PROBLEM,
        "frozen": [{"job": "J3", "operation": "a", "machine": "M3", "start": 45, "end": 58}],
    }
    plan = copy.deepcopy(PLAN)
    _edit("J3", "a", start=45, end=58)(plan)  # runs over M3's break and 3 minutes late: a fact
    _edit("J2", "b", start=60, end=85)(plan)

    assert validate(problem, plan)["valid"]

    _edit("J3", "a", start=44, end=57)(plan)
    result = validate(problem, plan)
    assert {("J3", "a")} in involved(result, "FROZEN_MOVED")


def test_now_can_come_from_the_problem_and_long_lists_are_truncated():
    """The problem's own `now` applies; max_violations caps the list but not the counts."""
    result = validate({**PROBLEM, "now": 1000}, PLAN, max_violations=2)

    assert (result["valid"], len(result["violations"]), result["counts"], result["truncated"]) == (
        False,
        2,
        {"IN_THE_PAST": 5},
        True,
    )


def test_iso_plans_are_read_in_the_problem_time_base():
    """An ISO problem and plan: a 30-minute shift of one operation is seen as a precedence break."""
    problem = {
        "horizon_start": "2025-01-06T06:00:00+02:00",
        "jobs": [
            {
                "id": "J",
                "operations": [
                    {"id": "a", "machines": [{"machine": "M", "duration": 60}]},
                    {"id": "b", "machines": [{"machine": "N", "duration": 60}]},
                ],
            }
        ],
    }
    plan = {
        "assignments": [
            plan_row("J", "a", "M", "2025-01-06T06:00:00+02:00", "2025-01-06T07:00:00+02:00"),
            plan_row("J", "b", "N", "2025-01-06T04:30:00Z", "2025-01-06T05:30:00Z"),
        ]
    }

    result = validate(problem, plan)

    assert [v["code"] for v in result["violations"]] == ["PRECEDENCE"]
    assert "2025-01-06T06:30:00+02:00" in result["violations"][0]["message"]


def test_zero_length_operations_need_no_setup_and_overlap_nothing():
    """Milestones (duration 0) of different families may sit together, and inside another operation."""
    problem = {
        "jobs": [
            {
                "id": "J1",
                "operations": [{"id": "a", "machines": [{"machine": "M", "duration": 0}], "family": "y"}],
            },
            {
                "id": "J2",
                "operations": [{"id": "a", "machines": [{"machine": "M", "duration": 0}], "family": "x"}],
            },
            {
                "id": "J3",
                "operations": [{"id": "a", "machines": [{"machine": "M", "duration": 10}], "family": "x"}],
            },
        ],
        "setups": [{"from": "y", "to": "x", "duration": 5}, {"from": "x", "to": "y", "duration": 0}],
    }
    plan = {
        "assignments": [
            plan_row("J1", "a", "M", 5, 5),
            plan_row("J2", "a", "M", 5, 5),
            plan_row("J3", "a", "M", 0, 10),
        ]
    }

    assert validate(problem, plan)["valid"]
    assert validate(problem, solve(problem))["valid"]


@FAST
@given(instances(), st.floats(0.0, 1.0))
def test_replanning_at_any_moment_keeps_running_operations_and_stays_valid(problem, moment):
    """Solve, stop the clock at a random moment, drop what has finished, freeze what is running and
    re-plan from then: the old plan's remainder proves a plan exists, and the new one is valid."""
    first = solve(problem)
    now = round(moment * first["makespan"])
    done = {(a["job"], a["operation"]) for a in first["assignments"] if a["start"] < now and a["end"] <= now}
    running = [a for a in first["assignments"] if a["start"] < now < a["end"]]
    jobs = []
    for item in problem["jobs"]:  # what is done is a prefix of each job
        rest = [o for o in item["operations"] if (item["id"], o["id"]) not in done]
        if rest:
            jobs.append({**item, "operations": rest})
    if not jobs:
        return
    kept = {(j["id"], o["id"]) for j in jobs for o in j["operations"]}
    frozen = [
        {k: a[k] for k in ("job", "operation", "machine", "operator", "start", "end")}
        for a in running
        if (a["job"], a["operation"]) in kept
    ]
    replan = {**problem, "jobs": jobs, "now": now, "frozen": frozen, "hint": first}

    out = solve(replan)

    assert out["status"] in ("optimal", "feasible"), out.get("reasons")
    assert validate(replan, out, now=now)["valid"]
    placed = {(a["job"], a["operation"]): a for a in out["assignments"]}
    assert all(placed[f["job"], f["operation"]] == f for f in frozen)
