"""solver.solve: proven optima on public instances, every feature on instances small enough to know
the answer, infeasibility reasons, bad input, and the time limit. Every plan is also checked by
schedule.validate, so "the solver says so" is never the only evidence."""

from __future__ import annotations

import itertools
import random
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from benchmarks import plan_scale
from engine.context import ToolContext, ToolLimits
from engine.pipeline import compile_pipeline
from engine.registry import ToolRegistry
from engine.runner import call_tool, run_pipeline
from engine.tools.jobshop_format import parse_jobshop
from engine.tools.planning_model import parse_problem
from engine.tools.solver import solve
from engine.tools.solver_bounds import capacity_bound, compute_bounds
from store.errors import Permanent, ToolError

REGISTRY = ToolRegistry.load()
NOW = datetime(2025, 1, 6, 4, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "catalogs" / "examples" / "jobshop"


def ctx(timeout_s: float = 60, workers: int = 2, **fields: Any) -> ToolContext:
    context = ToolContext.standalone(NOW, timeout_s, ToolLimits(cpus=workers))
    for name, value in fields.items():
        setattr(context, name, value)
    return context


def run(problem: dict[str, Any], context: ToolContext | None = None) -> dict[str, Any]:
    """Solve through the catalog (input and output schemas), then check the plan independently."""
    out = call_tool(REGISTRY["solver.solve"], {"time_limit_s": 10, **problem}, context or ctx())
    if out["assignments"]:
        check = call_tool(REGISTRY["schedule.validate"], {"problem": problem, "plan": out}, ctx())
        assert check["valid"], check["violations"]
    return out


def op(op_id: str, *options: tuple[str, int], **fields: Any) -> dict[str, Any]:
    return {"id": op_id, "machines": [{"machine": m, "duration": d} for m, d in options], **fields}


def job(job_id: str, *operations: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"id": job_id, "operations": list(operations), **fields}


def placed(out: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(a["job"], a["operation"]): a for a in out["assignments"]}


# --- public instances ------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "optimum"), [("ft06", 55), ("la01", 666)])
def test_public_instances_reach_their_proven_optimum(name, optimum):
    """ft06 and la01 are solved to their published optimal makespans, and proven optimal."""
    problem = parse_jobshop((DATA / f"{name}.txt").read_text(), name)

    out = run({**problem, "time_limit_s": 30})

    assert (out["status"], out["makespan"], out["objective"], out["bound"], out["gap"]) == (
        "optimal",
        optimum,
        optimum,
        optimum,
        0.0,
    )
    assert len(out["assignments"]) == sum(len(j["operations"]) for j in problem["jobs"])


# --- features, on instances small enough to know the answer ----------------------------------


def test_an_operation_that_may_not_span_breaks_waits_for_a_window_that_holds_it():
    """Windows [0,100) and [120,300): the second 50-minute operation cannot cross the break."""
    problem = {
        "jobs": [job("J", op("a", ("M", 60)), op("b", ("M", 50)))],
        "machines": [{"id": "M", "calendar": [{"start": 0, "end": 100}, {"start": 120, "end": 300}]}],
    }

    out = run(problem)

    assert out["makespan"] == 170
    for a in out["assignments"]:
        assert not (a["start"] < 120 and a["end"] > 100), f"{a} overlaps the break"


def test_an_operation_allowed_to_span_breaks_pauses_over_them():
    """With may_span_breaks the operation works 40 min, pauses 20, and works 10 more."""
    problem = {
        "jobs": [job("J", op("a", ("M", 60)), op("b", ("M", 50), may_span_breaks=True))],
        "machines": [{"id": "M", "calendar": [{"start": 0, "end": 100}, {"start": 120, "end": 300}]}],
    }

    out = run(problem)

    assert placed(out)["J", "b"] | {"start": 60, "end": 130} == placed(out)["J", "b"]
    assert out["makespan"] == 130


def test_windows_that_touch_are_one_stretch_and_closed_status_rows_open_nothing():
    """Back-to-back shifts are no break; an availability row marked 'maintenance' is closed time."""
    problem = {
        "jobs": [job("J", op("a", ("M", 90)))],
        "machines": [{"id": "M"}],
        "calendars": {
            "M": [
                {"start": 0, "end": 60, "status": "maintenance"},
                {"start": 60, "end": 120, "status": "available"},
                {"start": 120, "end": 180},
            ]
        },
    }

    out = run(problem)

    assert (placed(out)["J", "a"]["start"], out["makespan"]) == (60, 150)


def test_sequence_dependent_setups_are_kept_and_families_are_grouped():
    """x→y and y→x take 5 min, x→x nothing: the best sequence groups the two x operations."""
    problem = {
        "jobs": [
            job("J1", op("a", ("M", 10), family="x")),
            job("J2", op("b", ("M", 10), family="y")),
            job("J3", op("c", ("M", 10), family="x")),
        ],
        "setups": [{"from": "x", "to": "y", "duration": 5}, {"from": "y", "to": "x", "duration": 5}],
    }

    out = run(problem)

    assert (out["status"], out["makespan"]) == ("optimal", 35)
    sequence = [a["operation"] for a in sorted(out["assignments"], key=lambda a: a["start"])]
    assert sequence.index("b") in (0, 2)


def test_a_machine_specific_setup_overrides_the_general_one():
    """The general x→y setup is 30 min; on M it is 2, so M runs both jobs back to back."""
    problem = {
        "jobs": [job("J1", op("a", ("M", 10), family="x")), job("J2", op("b", ("M", 10), family="y"))],
        "setups": [
            {"from": "x", "to": "y", "duration": 30},
            {"from": "y", "to": "x", "duration": 30},
            {"machine": "M", "from": "x", "to": "y", "duration": 2},
        ],
    }

    out = run(problem)

    assert out["makespan"] == 22


def test_setups_apply_between_alternatives_chosen_on_the_same_machine():
    """Two flexible operations of different families: sharing M1 costs a 20-min setup, so one goes to M2."""
    problem = {
        "jobs": [
            job("J1", op("a", ("M1", 10), ("M2", 15), family="x")),
            job("J2", op("b", ("M1", 10), ("M2", 15), family="y")),
        ],
        "setups": [{"from": "x", "to": "y", "duration": 20}, {"from": "y", "to": "x", "duration": 20}],
    }

    out = run(problem)

    assert out["makespan"] == 15
    assert {a["machine"] for a in out["assignments"]} == {"M1", "M2"}


def test_one_welder_makes_two_welding_operations_run_one_after_the_other():
    """Both operations need skill 'weld' and only Ann has it: 30 + 20 minutes, in sequence."""
    problem = {
        "jobs": [job("J1", op("a", ("M1", 30), skill="weld")), job("J2", op("b", ("M2", 20), skill="weld"))],
        "operators": [{"id": "ann", "skills": ["weld"]}, {"id": "bob", "skills": ["paint"]}],
    }

    out = run(problem)

    assert out["makespan"] == 50
    assert {a["operator"] for a in out["assignments"]} == {"ann"}


def test_two_welders_work_in_parallel_within_their_shifts():
    """A second welder lets both run at once; Bea's shift starts at 10, Ann's operation is the long one."""
    problem = {
        "jobs": [job("J1", op("a", ("M1", 30), skill="weld")), job("J2", op("b", ("M2", 20), skill="weld"))],
        "operators": [
            {"id": "ann", "skills": ["weld"], "calendar": [{"start": 0, "end": 480}]},
            {"id": "bea", "skills": ["weld", "paint"], "calendar": [{"start": 10, "end": 480}]},
        ],
    }

    out = run(problem)

    assert out["makespan"] == 30
    assert placed(out)["J1", "a"]["operator"] == "ann"
    assert placed(out)["J2", "b"]["operator"] == "bea" and placed(out)["J2", "b"]["start"] >= 10


def test_flexible_operations_take_the_machine_that_finishes_first():
    """J1 may use M1 (10) or M2 (5); J2 only M1: J1 goes to M2 and both end at 10."""
    problem = {"jobs": [job("J1", op("a", ("M1", 10), ("M2", 5))), job("J2", op("b", ("M1", 10)))]}

    out = run(problem)

    assert (out["makespan"], placed(out)["J1", "a"]["machine"]) == (10, "M2")


SINGLE_MACHINE = [  # (duration, due, weight)
    (4, 4, 1),
    (3, 6, 3),
    (7, 9, 1),
    (2, 8, 2),
    (5, 12, 1),
    (6, 20, 4),
]


def _brute_force(weighted: bool) -> int:
    best = None
    for order in itertools.permutations(range(len(SINGLE_MACHINE))):
        t = cost = 0
        for i in order:
            d, due, w = SINGLE_MACHINE[i]
            t += d
            cost += max(0, t - due) * (w if weighted else 1)
        best = cost if best is None else min(best, cost)
    assert best is not None
    return best


@pytest.mark.parametrize("objective", ["total_tardiness", "weighted_tardiness"])
def test_tardiness_objectives_match_brute_force_on_one_machine(objective):
    """Six jobs on one machine: the optimum over all 720 sequences, computed here, is the solver's."""
    problem = {
        "jobs": [
            job(f"J{i}", op("a", ("M", d)), due=due, weight=w) for i, (d, due, w) in enumerate(SINGLE_MACHINE)
        ],
        "objective": objective,
    }

    out = run(problem)

    assert (out["status"], out["objective"]) == ("optimal", _brute_force(objective == "weighted_tardiness"))
    assert out["terms"][objective] == out["objective"]


def test_priority_is_the_weight_when_no_weight_is_given():
    """Two equal jobs due at 10 on one machine: the one with priority 5 goes first, the other is 10 late."""
    problem = {
        "jobs": [
            job("low", op("a", ("M", 10)), due=10, priority=1),
            job("high", op("a", ("M", 10)), due=10, priority=5),
            job("plain", op("a", ("N", 10)), due=10, priority=None),
        ],
        "objective": "weighted_tardiness",
    }

    out = run(problem)

    assert (out["objective"], placed(out)["high", "a"]["start"]) == (10, 0)


def test_a_weighted_mix_with_fractional_weights_is_reported_in_the_input_units():
    """0.5·makespan + 1.5·total tardiness on one machine: makespan is fixed at 27, tardiness optimal."""
    problem = {
        "jobs": [job(f"J{i}", op("a", ("M", d)), due=due) for i, (d, due, _) in enumerate(SINGLE_MACHINE)],
        "objective": {"makespan": 0.5, "total_tardiness": 1.5},
    }

    out = run(problem)

    assert out["status"] == "optimal"
    assert out["objective"] == pytest.approx(0.5 * 27 + 1.5 * _brute_force(False))


def test_without_due_dates_a_tardiness_plan_is_still_compact():
    """Nothing to minimize, yet operations start as early as their machine allows (left shift)."""
    problem = {"jobs": [job(f"J{i}", op("a", ("M", 10))) for i in range(3)], "objective": "total_tardiness"}

    out = run(problem)

    assert (out["objective"], sorted(a["start"] for a in out["assignments"])) == (0, [0, 10, 20])


def test_releases_and_deadlines_hold():
    """A job released at 50 starts then; another must end by its deadline 30 and goes first."""
    problem = {
        "jobs": [
            job("late", op("a", ("M", 20)), release=50),
            job("urgent", op("a", ("M", 30)), deadline=30),
            job("other", op("a", ("M", 25))),
        ],
    }

    out = run(problem)

    assert placed(out)["late", "a"]["start"] >= 50
    assert placed(out)["urgent", "a"]["end"] <= 30


def test_iso_times_in_give_iso_times_out_in_the_horizon_start_offset():
    """Times written as ISO 8601 come back as ISO 8601, on the clock of horizon_start."""
    problem = {
        "horizon_start": "2025-01-06T06:00:00+02:00",
        "jobs": [job("J", op("a", ("M", 90)), release="2025-01-06T05:30:00Z")],
    }

    out = run(problem)

    assert (
        placed(out)["J", "a"] | {"start": "2025-01-06T07:30:00+02:00", "end": "2025-01-06T09:00:00+02:00"}
        == placed(out)["J", "a"]
    )
    assert (out["makespan"], out["finish"], out["horizon_start"]) == (
        180,
        "2025-01-06T09:00:00+02:00",
        "2025-01-06T06:00:00+02:00",
    )


def test_replanning_keeps_frozen_operations_and_starts_the_rest_after_now():
    """After a disruption at 20, the running operation stays; everything else starts at or after 20."""
    base = {
        "jobs": [
            job("J1", op("a", ("M1", 30)), op("b", ("M2", 10))),
            job("J2", op("a", ("M1", 10)), op("b", ("M2", 25))),
            job("J3", op("a", ("M2", 15))),
        ]
    }
    first = run(base)
    running = next(a for a in first["assignments"] if a["operation"] == "a" and a["start"] < 20 < a["end"])
    problem = {
        **base,
        "now": 20,
        "frozen": [{k: running[k] for k in ("job", "operation", "machine", "start")}],
        "hint": first,
    }

    out = run(problem)

    assert placed(out)[running["job"], running["operation"]] == running
    others = [
        a for a in out["assignments"] if (a["job"], a["operation"]) != (running["job"], running["operation"])
    ]
    assert all(a["start"] >= 20 for a in others)
    assert call_tool(REGISTRY["schedule.validate"], {"problem": problem, "plan": out, "now": 20}, ctx())[
        "valid"
    ]


def test_a_previous_plan_as_hint_is_accepted_even_when_it_names_removed_operations():
    """A warm start from an older plan still yields the optimum; unknown operations in it are skipped."""
    problem = parse_jobshop((DATA / "ft06.txt").read_text())
    previous = run(problem)
    previous["assignments"].append(
        {"job": "gone", "operation": "x", "machine": "M0", "operator": None, "start": 0, "end": 1}
    )

    out = run({**problem, "hint": previous})

    assert (out["status"], out["makespan"]) == ("optimal", 55)


# --- infeasibility, with reasons --------------------------------------------------------------


@pytest.mark.parametrize(
    ("problem", "code"),
    [
        (
            {
                "jobs": [job("J", op("a", ("M", 100)))],
                "machines": [{"id": "M", "calendar": [{"start": 0, "end": 60}, {"start": 70, "end": 130}]}],
            },
            "NO_FEASIBLE_WINDOW",
        ),
        (
            {"jobs": [job("J", op("a", ("M1", 60)), op("b", ("M2", 40)), release=10, deadline=100)]},
            "DEADLINE_TOO_SHORT",
        ),
        (
            {
                "jobs": [job("J1", op("a", ("M", 50))), job("J2", op("a", ("M", 50)))],
                "machines": [{"id": "M", "calendar": [{"start": 0, "end": 60}]}],
            },
            "CALENDAR_TOO_SMALL",
        ),
        (
            {
                "jobs": [
                    job("J1", op("a", ("M", 60)), deadline=100),
                    job("J2", op("a", ("M", 60)), deadline=100),
                ]
            },
            "MACHINE_OVERLOADED",
        ),
        (
            {
                "jobs": [job("J", op("a", ("M", 10), skill="x-ray"))],
                "operators": [{"id": "o", "skills": ["weld"]}],
            },
            "NO_QUALIFIED_OPERATOR",
        ),
        (
            {
                "jobs": [job("J1", op("a", ("M", 30))), job("J2", op("a", ("M", 30)))],
                "frozen": [
                    {"job": "J1", "operation": "a", "machine": "M", "start": 0},
                    {"job": "J2", "operation": "a", "machine": "M", "start": 10},
                ],
            },
            "FROZEN_CONFLICT",
        ),
        (
            {
                "jobs": [job("J", op("a", ("M1", 30)), op("b", ("M2", 30)))],
                "now": 10,
                "frozen": [{"job": "J", "operation": "b", "machine": "M2", "start": 0}],
            },
            "FROZEN_ORDER",
        ),
        (
            # each window alone is fine; [0, 40) must hold 30 + 20 minutes: only the search sees it
            {
                "jobs": [
                    job("J1", op("a", ("M", 30)), deadline=40),
                    job("J2", op("a", ("M", 20)), release=10, deadline=40),
                    job("J3", op("a", ("M", 10))),
                ]
            },
            "DEADLINES_CONFLICT",
        ),
        (
            # one welder with one 50-minute shift cannot weld 30 + 30 minutes
            {
                "jobs": [
                    job("J1", op("a", ("M1", 30), skill="s")),
                    job("J2", op("a", ("M2", 30), skill="s")),
                ],
                "operators": [{"id": "o", "skills": ["s"], "calendar": [{"start": 0, "end": 50}]}],
            },
            "CONSTRAINTS_CONFLICT",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_an_infeasible_problem_is_reported_with_its_reason(problem, code):
    """No plan exists: the status says infeasible and the first reason names the cause."""
    out = run(problem)

    assert (out["status"], out["assignments"], out["objective"]) == ("infeasible", [], None)
    assert out["reasons"][0]["code"] == code
    assert out["reason"] == out["reasons"][0]["message"]


def test_conflicting_deadlines_name_the_jobs_and_the_overrun():
    """J1 and J2 both need [0, 40) for 50 minutes of work: the least overrun is 10 minutes, on one of them."""
    problem = {
        "jobs": [
            job("J1", op("a", ("M", 30)), deadline=40),
            job("J2", op("a", ("M", 20)), release=10, deadline=40),
            job("J3", op("a", ("M", 10))),
        ]
    }

    reason = run(problem)["reasons"][0]

    assert reason["code"] == "DEADLINES_CONFLICT" and len(reason["jobs"]) == 1
    assert "by 10 min" in reason["message"] and "overruns them least" in reason["message"]


# --- bad input --------------------------------------------------------------------------------

GOOD = {"jobs": [job("J", op("a", ("M", 10)))], "machines": [{"id": "M"}]}


@pytest.mark.parametrize(
    ("problem", "code", "schema_catches_it"),
    [
        ({"jobs": []}, "EMPTY_JOBS", True),
        ({**GOOD, "jobs": [job("J", op("a", ("M9", 10)))]}, "UNKNOWN_MACHINE", False),
        ({**GOOD, "jobs": [job("J", op("a", ("M", -5)))]}, "NEGATIVE_DURATION", True),
        ({**GOOD, "jobs": [job("J", op("a"))]}, "NO_ELIGIBLE_MACHINE", True),
        ({**GOOD, "time_limit_s": 0}, "INVALID_TIME_LIMIT", True),
        ({**GOOD, "num_workers": 0}, "INVALID_NUM_WORKERS", True),
        ({**GOOD, "jobs": [job("J", op("a", ("M", 1))), job("J", op("a", ("M", 1)))]}, "DUPLICATE_ID", False),
        (
            {**GOOD, "jobs": [job("J", op("a", ("M", 1)), release="2025-01-06T06:00:00")]},
            "INVALID_TIME",
            True,
        ),
        (
            {**GOOD, "jobs": [job("J", op("a", ("M", 1)), release=5, due="2025-01-06T06:00:00Z")]},
            "MISSING_HORIZON_START",
            False,
        ),
        (
            {**GOOD, "frozen": [{"job": "J", "operation": "zz", "machine": "M", "start": 0}]},
            "UNKNOWN_OPERATION",
            False,
        ),
        (
            {**GOOD, "machines": [{"id": "M", "calendar": [{"start": 50, "end": 10}]}]},
            "INVALID_WINDOW",
            False,
        ),
        ({**GOOD, "objective": {"makespan": 0}}, "INVALID_OBJECTIVE", False),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_input_fails_permanently_with_a_clear_code(problem, code, schema_catches_it):
    """The tool raises Permanent with a stable code; in a pipeline the catalog schema may refuse it first."""
    with pytest.raises(Permanent) as direct:
        solve(problem, ctx())
    assert direct.value.code == code and not direct.value.retryable

    with pytest.raises(ToolError) as piped:
        call_tool(REGISTRY["solver.solve"], problem, ctx())
    assert piped.value.code == ("INPUT_INVALID" if schema_catches_it else code)
    assert not piped.value.retryable


# --- time --------------------------------------------------------------------------------------


def _hard_instance() -> dict[str, Any]:
    rng = random.Random(4)
    jobs = []
    for j in range(20):
        order = rng.sample(range(10), 10)
        jobs.append(job(f"J{j}", *(op(f"O{t}", (f"M{m}", rng.randint(1, 99))) for t, m in enumerate(order))))
    return {"jobs": jobs}


def test_the_search_stops_at_the_step_deadline_with_the_best_plan_so_far():
    """time_limit_s asks for 60 s but the step has 2 s left: the answer comes in time, with a valid plan."""
    problem = {**_hard_instance(), "time_limit_s": 60, "num_workers": 1}
    started = time.monotonic()

    out = call_tool(REGISTRY["solver.solve"], problem, ctx(timeout_s=2.0))  # STEP_TIMEOUT if it overran

    assert time.monotonic() - started < 2.0
    assert out["status"] == "feasible" and out["gap"] > 0 and out["bound"] < out["objective"]
    assert call_tool(REGISTRY["schedule.validate"], {"problem": problem, "plan": out}, ctx())["valid"]


def test_a_canceled_run_stops_the_search_early():
    """Cancellation is noticed within a fraction of a second; the best plan found is returned."""
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()

    out = call_tool(
        REGISTRY["solver.solve"],
        {**_hard_instance(), "time_limit_s": 30, "num_workers": 1},
        ctx(is_canceled=cancel.is_set),
    )

    assert time.monotonic() - started < 2.0
    assert out["status"] == "feasible" and out["assignments"]


def test_a_frozen_operation_given_without_its_operator_gets_a_qualified_one():
    """A running operation that needs a skill but whose operator was not recorded is given one who is
    free then; the plan passes validation (skills met, no operator double-booked)."""
    problem = {
        "jobs": [
            job("J1", op("a", ("M1", 30), skill="weld"), op("b", ("M1", 10))),
            job("J2", op("a", ("M2", 20), skill="weld")),
        ],
        "operators": [{"id": "ann", "skills": ["weld"]}, {"id": "bob", "skills": ["weld", "paint"]}],
        "now": 5,
        "frozen": [{"job": "J1", "operation": "a", "machine": "M1", "start": 0}],
    }

    out = run(problem)

    assert placed(out)["J1", "a"]["operator"] in ("ann", "bob")
    assert placed(out)["J2", "a"]["start"] == 5  # the other welder is free at once


def test_a_setup_is_kept_after_a_frozen_neighbour():
    """Frozen x-operations at [0, 10) and [20, 30); a y-operation needs 15 minutes of setup after
    either, so it cannot squeeze between them or start right after the second: it starts at 45."""
    problem = {
        "jobs": [
            job("F1", op("a", ("M", 10), family="x")),
            job("F2", op("a", ("M", 10), family="x")),
            job("Y", op("a", ("M", 10), family="y")),
        ],
        "setups": [{"from": "x", "to": "y", "duration": 15}, {"from": "y", "to": "x", "duration": 15}],
        "frozen": [
            {"job": "F1", "operation": "a", "machine": "M", "start": 0},
            {"job": "F2", "operation": "a", "machine": "M", "start": 20},
        ],
    }

    out = run(problem)

    assert (placed(out)["Y", "a"]["start"], out["status"]) == (45, "optimal")


def test_an_operation_allowed_to_span_many_breaks_holds_its_machine_through_them():
    """Twelve one-hour shifts a day apart; 300 minutes of work started in the second shift end in the
    sixth: working time, whatever the number of breaks crossed."""
    shifts = [{"start": k * 1440, "end": k * 1440 + 60} for k in range(12)]
    problem = {
        "jobs": [job("J", op("a", ("M", 60)), op("b", ("M", 300), may_span_breaks=True))],
        "machines": [{"id": "M", "calendar": shifts}],
    }

    out = run(problem)

    assert placed(out)["J", "b"] | {"start": 1440, "end": 5 * 1440 + 60} == placed(out)["J", "b"]


# --- factory size: a plan at once, improved, observable, honest about infeasibility ------------


def _factory(jobs: int, machines: int, seed: int = 1) -> dict[str, Any]:
    """The factory shape benchmarks/plan_scale.py plans (5 operations a job on 2-3 of the machines,
    two shifts on weekdays, setups between four families on a quarter of the machines, releases in
    the first week), at a test's size and in plain minutes (minute 0 is a Monday 00:00)."""
    problem = plan_scale.instance(jobs, machines, family=f"test-{seed}")
    del problem["horizon_start"]
    return problem


def test_a_factory_plan_comes_at_once_improves_and_honours_the_time_limit():
    """200 operations with calendars and setups, too many for one model: the first valid plan is
    there within a second or two, the progress curve only goes down, the answer comes within the
    limit, and it is the curve's best plan or a better one (the final left shift)."""
    problem = {**_factory(40, 8), "time_limit_s": 6, "num_workers": 2}
    started = time.monotonic()

    out = run(problem)

    assert time.monotonic() - started < 6 + 1.0
    assert out["status"] == "feasible" and out["search"]["parts"] > 0
    curve = out["progress"]
    assert curve[0]["t_s"] < 3
    assert all(b["objective"] < a["objective"] for a, b in itertools.pairwise(curve))
    assert out["objective"] <= curve[-1]["objective"]
    assert 0 < out["bound"] <= out["objective"] and out["gap"] == pytest.approx(
        (out["objective"] - out["bound"]) / out["objective"], abs=1e-6
    )


def test_the_bound_counts_the_open_minutes_of_machines_that_share_operations():
    """Three 50-minute operations, each on M1 or M2, both open [0, 60) and [100, 160): the longest job
    and the busiest single machine say 50, but 150 minutes of work need the 120 open minutes before the
    break and 15 more minutes on each machine after it: no plan ends before 115. (Each operation needs
    one unbroken window, so the best plan ends at 150.)"""
    shifts = [{"start": 0, "end": 60}, {"start": 100, "end": 160}]
    problem = {
        "jobs": [job(f"J{i}", op("a", ("M1", 50), ("M2", 50))) for i in range(3)],
        "machines": [{"id": "M1", "calendar": shifts}, {"id": "M2", "calendar": shifts}],
    }
    parsed = parse_problem(problem)

    assert capacity_bound(parsed, compute_bounds(parsed)) == 115
    out = run(problem)
    assert (out["status"], out["makespan"], out["bound"]) == ("optimal", 150, 150)


def test_work_that_cannot_fit_the_shifts_is_reported_at_once_as_capacity_short():
    """Eight machines with one week of shifts and two weeks of work (every job released at once):
    CAPACITY_SHORT names the machines and the shortfall in well under the time limit."""
    problem = _factory(120, 8)
    for machine in problem["machines"]:
        machine["calendar"] = machine["calendar"][:5]
    for j in problem["jobs"]:
        j["release"] = 0
    started = time.monotonic()

    out = run({**problem, "time_limit_s": 60})

    assert time.monotonic() - started < 5
    assert (out["status"], out["reasons"][0]["code"]) == ("infeasible", "CAPACITY_SHORT")
    assert out["reasons"][0]["machines"] == sorted(m["id"] for m in problem["machines"])
    assert " min short" in out["reason"]


def test_a_run_canceled_during_the_search_ends_canceled_with_the_best_plan_so_far():
    """The run's state is canceled, and the solver step's output, the best plan found before the
    cancel, is kept as the run's saved output; it is a valid plan."""
    problem = {**_factory(40, 8), "time_limit_s": 30, "num_workers": 2}
    pipeline = compile_pipeline(
        {"pipeline": [{"id": "plan", "uses": "solver.solve", "with": problem, "save_as": "plan"}]}, REGISTRY
    )
    cancel = threading.Event()
    threading.Timer(2.0, cancel.set).start()
    started = time.monotonic()

    result = run_pipeline(pipeline, {"params": {}}, now=NOW, timeout_s=60, is_canceled=cancel.is_set)

    assert time.monotonic() - started < 5
    assert result.state == "canceled" and result.error["code"] == "CANCELED"
    plan = result.output["plan"]
    assert plan["assignments"]
    assert call_tool(REGISTRY["schedule.validate"], {"problem": problem, "plan": plan}, ctx())["valid"]


def test_parts_of_a_large_plan_are_re_planned_with_operators_breaks_and_frozen_operations():
    """A plan too large for one model, with welders on shifts, operations that pause over breaks and,
    when re-planned at a cut, operations frozen where they run and `now`: every plan the part-by-part
    search returns passes validation, and the frozen operations stay put."""
    problem = _factory(45, 6, seed=3)
    for j, job_ in enumerate(problem["jobs"]):
        for o, operation in enumerate(job_["operations"]):
            operation["skill"] = "weld" if (j + o) % 3 == 0 else None
            operation["may_span_breaks"] = (j + o) % 4 == 0
    problem["operators"] = [
        {"id": f"W{i}", "skills": ["weld"], "calendar": problem["machines"][0]["calendar"]} for i in range(3)
    ]
    first = run({**problem, "time_limit_s": 4})
    assert first["search"]["parts"] > 0
    cut = sorted(a["start"] for a in first["assignments"])[len(first["assignments"]) // 3]
    running = [a for a in first["assignments"] if a["start"] < cut]
    replanned = {
        **problem,
        "now": cut,
        "frozen": [
            {k: a[k] for k in ("job", "operation", "machine", "operator", "start", "end")} for a in running
        ],
        "hint": first,
    }

    out = run({**replanned, "time_limit_s": 4})

    assert out["search"]["parts"] > 0
    assert [placed(out)[a["job"], a["operation"]] for a in running] == running
    check = call_tool(REGISTRY["schedule.validate"], {"problem": replanned, "plan": out, "now": cut}, ctx())
    assert check["valid"], check["violations"]
