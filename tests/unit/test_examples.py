"""The example tasks in catalogs/examples are valid, and their pipelines run."""

from datetime import UTC, datetime
from importlib import resources

import pytest
import yaml

from engine import ToolRegistry, compile_pipeline, run_pipeline
from scheduler.task_document import validate as validate_task

REGISTRY = ToolRegistry.load()
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
# Task documents only: examples/jobshop/ holds solver instances, not tasks.
EXAMPLES = sorted(
    p.name
    for p in resources.files("catalogs").joinpath("examples").iterdir()
    if p.name.endswith((".yaml", ".yml", ".json"))
)


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_is_a_valid_task(name):
    doc = yaml.safe_load(resources.files("catalogs").joinpath("examples", name).read_text())
    values = validate_task(doc, REGISTRY, now=NOW)
    assert values["title"]


def test_the_nightly_example_computes_its_report():
    doc = yaml.safe_load(resources.files("catalogs").joinpath("examples", "nightly.yaml").read_text())
    pipeline = compile_pipeline(doc["payload"], REGISTRY)
    context = {
        "params": dict(pipeline.params),
        "run": {"id": 7, "scheduled_for": "2026-11-24T06:00:00+02:00"},
        "task": {},
        "event": None,
        "now": NOW.isoformat(),
    }
    result = run_pipeline(pipeline, context, now=NOW, timeout_s=10)
    assert result.state == "succeeded", result.error
    assert result.output["totals"]["result"] == {"good": 1550, "scrap": 43, "worst": "L2"}
    assert result.steps[1]["output"]["message"] == (
        "Chisinau: 1550 good, 43 scrap (worst line L2), run 7 for 2026-11-24T06:00:00+02:00"
    )


def test_the_planning_example_solves_checks_and_reports():
    doc = yaml.safe_load(resources.files("catalogs").joinpath("examples", "plan_tomorrow.yaml").read_text())
    pipeline = compile_pipeline(doc["payload"], REGISTRY)
    context = {
        "params": dict(pipeline.params),
        "run": {"id": 1},
        "task": {},
        "event": None,
        "now": NOW.isoformat(),
    }
    result = run_pipeline(pipeline, context, now=NOW, timeout_s=120)
    assert result.state == "succeeded", result.error
    assert result.output["plan"]["status"] in ("optimal", "feasible")
    assert result.output["check"]["valid"] is True
    assert result.steps[3]["state"] == "ok"
    assert result.steps[3]["output"]["message"].startswith("plan ")
