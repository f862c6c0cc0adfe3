"""The planning tools' catalog entries: one problem contract shared by the three tools, and the
documented infeasibility and violation codes are the ones the code produces."""

from __future__ import annotations

import ast
import json
import re
from importlib import resources
from pathlib import Path

import yaml

from engine.registry import ToolRegistry
from engine.tools import schedule_check
from engine.tools.planning_model import DEFAULT_TIME_LIMIT_S

ENTRIES = {
    e["address"]: e
    for e in json.loads(resources.files("catalogs").joinpath("tools.json").read_text())["tools"]
}
TOOLS = Path(__file__).resolve().parents[2] / "engine" / "tools"


def test_the_three_tools_read_the_same_problem():
    """solver.solve's input is, field for field, the `problem` of schedule.validate and schedule.analyze."""
    solve_input = {
        k: v for k, v in ENTRIES["solver.solve"]["input_schema"].items() if k not in ("$defs", "$comment")
    }
    solve_defs = ENTRIES["solver.solve"]["input_schema"]["$defs"]
    for address in ("schedule.validate", "schedule.analyze"):
        schema = ENTRIES[address]["input_schema"]
        assert schema["properties"]["problem"]["$ref"] == "#/$defs/problem"
        assert schema["$defs"]["problem"] == solve_input
        assert {k: v for k, v in schema["$defs"].items() if k != "problem"} == solve_defs


def test_the_planning_tools_load_and_run_on_their_own_step_thread():
    registry = ToolRegistry.load()
    for address in ("solver.solve", "schedule.validate", "schedule.analyze"):
        assert not registry[address].inline


def _string_codes(module: str, call: str) -> set[str]:
    """First string arguments of `call(...)` in a module: the codes it can produce."""
    tree = ast.parse((TOOLS / module).read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == call and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.add(first.value)
    return found


def test_documented_codes_match_the_code():
    """The output schemas list exactly the reason and violation codes the tools emit."""
    reason_codes = set(
        ENTRIES["solver.solve"]["output_schema"]["properties"]["reasons"]["items"]["properties"]["code"][
            "enum"
        ]
    )
    emitted = set().union(*(_string_codes(m.name, "reason") for m in TOOLS.glob("solver*.py")))
    assert emitted | {"CALENDAR_TOO_SMALL", "MACHINE_OVERLOADED"} == reason_codes
    violation_codes = set(
        ENTRIES["schedule.validate"]["output_schema"]["properties"]["violations"]["items"]["properties"][
            "code"
        ]["enum"]
    )
    constants = {
        node.value
        for node in ast.walk(ast.parse((TOOLS / "schedule_check.py").read_text()))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.fullmatch(r"[A-Z][A-Z_]+", node.value)
    }
    assert constants - set(schedule_check.__all__) == violation_codes
    documented = set(
        re.findall(r"\b[A-Z][A-Z_]{3,}\b", (TOOLS / "schedule_check.py").read_text().split('"""')[1])
    )
    assert violation_codes <= documented


def test_the_time_limit_default_is_one_number_and_every_solver_step_outlasts_its_limit():
    """The catalog documents the tool's default; the tool's step timeout, and every example's solver
    step, leave the search its whole limit (a step that times out first loses the plan)."""
    entry = ENTRIES["solver.solve"]
    assert entry["input_schema"]["properties"]["time_limit_s"]["default"] == DEFAULT_TIME_LIMIT_S
    assert entry["timeout_s"] > DEFAULT_TIME_LIMIT_S
    examples = resources.files("catalogs").joinpath("examples")
    solver_steps = 0
    for path in (p for p in Path(str(examples)).glob("*") if p.suffix in (".yaml", ".json")):
        task = yaml.safe_load(path.read_text())
        for step in task["payload"]["pipeline"]:
            if step["uses"] != "solver.solve":
                continue
            solver_steps += 1
            arguments = step["with"] if isinstance(step["with"], dict) else {}
            if isinstance(step["with"], str):  # a whole-object template: the limit is in the params
                arguments = task["payload"]["params"][step["with"].strip("${}").split(".", 1)[1]]
            limit = arguments.get("time_limit_s", DEFAULT_TIME_LIMIT_S)
            assert min(step.get("timeout_s", entry["timeout_s"]), task.get("timeout_s", 1e9)) > limit, path
    assert solver_steps
