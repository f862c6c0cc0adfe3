"""Pipeline checks made when a task is added: each malformed document is refused with its path."""

from datetime import date

import pytest

from engine import ToolRegistry, compile_pipeline
from store.errors import Forbidden, InvalidPipeline, UnknownTool

REGISTRY = ToolRegistry.load()


def echo(step_id, message="hi", **extra):
    return {"id": step_id, "uses": "echo.message", "with": {"message": message}, **extra}


def test_a_valid_pipeline_compiles_with_tool_defaults():
    pipeline = compile_pipeline(
        {"params": {"n": 1}, "pipeline": [echo("a"), echo("b", "${steps.a.message}")]}, REGISTRY
    )
    assert [s.id for s in pipeline.steps] == ["a", "b"]
    assert pipeline.steps[0].timeout_s == REGISTRY["echo.message"].timeout_s
    assert pipeline.inline


@pytest.mark.parametrize(
    ("payload", "error", "path", "message"),
    [
        (
            {"pipeline": [{"id": "a", "uses": "no.such"}]},
            UnknownTool,
            "payload.pipeline[0].uses",
            "unknown tool 'no.such'",
        ),
        (
            {"pipeline": [{"id": "a", "with": {}}]},
            InvalidPipeline,
            "payload.pipeline[0]",
            "'uses' is a required property",
        ),
        (
            {"pipeline": [echo("a"), echo("a")]},
            InvalidPipeline,
            "payload.pipeline[1].id",
            "duplicate step id 'a'",
        ),
        (
            {"pipeline": [echo("a", "${steps.b.message}"), echo("b")]},
            InvalidPipeline,
            "payload.pipeline[0].with.message",
            "reads step 'b', which does not run before step 'a'",
        ),
        (
            {"pipeline": [echo("a", if_="steps.a.message")]},
            InvalidPipeline,
            "payload.pipeline[0]",
            "Additional properties",
        ),
        (
            {"pipeline": [{**echo("a"), "if": "steps.a.message"}]},
            InvalidPipeline,
            "payload.pipeline[0].if",
            "reads step 'a'",
        ),
        (
            {"pipeline": [echo("a", 5)]},
            InvalidPipeline,
            "payload.pipeline[0].with.message",
            "5 is not of type 'string'",
        ),
        (
            {"pipeline": [{"id": "a", "uses": "echo.message", "with": {}}]},
            InvalidPipeline,
            "payload.pipeline[0].with",
            "'message' is a required property",
        ),
        (
            {"pipeline": [echo("a", "${fleet.size}")]},
            InvalidPipeline,
            "payload.pipeline[0].with.message",
            "reads 'fleet'",
        ),
        ({"pipeline": []}, InvalidPipeline, "payload.pipeline", "should be non-empty"),
        ({"params": {}}, InvalidPipeline, "payload", "'pipeline' is a required property"),
        ({"pipeline": [echo("bad-id")]}, InvalidPipeline, "payload.pipeline[0].id", "does not match"),
        (
            {"pipeline": [{"id": "t", "uses": "transform.jmespath", "with": {"expression": "a[[["}}]},
            InvalidPipeline,
            "payload.pipeline[0].with.expression",
            "is not a 'jmespath'",
        ),
        (
            {"pipeline": [echo("a", save_as="x"), echo("x")]},
            InvalidPipeline,
            "payload.pipeline[1].id",
            "duplicate step id 'x'",
        ),
    ],
)
def test_malformed_pipelines_are_refused_with_the_offending_path(payload, error, path, message):
    with pytest.raises(error) as info:
        compile_pipeline(payload, REGISTRY)
    assert info.value.details["path"] == path
    assert message in info.value.message


def test_values_a_template_will_produce_are_checked_at_run_time_not_when_added():
    compile_pipeline({"pipeline": [echo("a", "${params.message}")]}, REGISTRY)
    compile_pipeline({"pipeline": [{"id": "a", "uses": "echo.message", "with": "${params.input}"}]}, REGISTRY)


def test_a_tool_needing_a_scope_the_owner_lacks_is_refused():
    payload = {"pipeline": [{"id": "get", "uses": "http.request", "with": {"url": "http://127.0.0.1:1/"}}]}
    with pytest.raises(Forbidden) as info:
        compile_pipeline(payload, REGISTRY, scopes={"tasks:write"})
    assert info.value.code == "TOOL_SCOPE_MISSING"
    assert info.value.details["missing_scopes"] == ["tools:http"]
    compile_pipeline(payload, REGISTRY, scopes={"tools:http"})
    compile_pipeline(payload, REGISTRY, scopes=None)


def test_a_pipeline_over_the_step_limit_is_refused_by_naming_the_limit_not_by_echoing_it():
    steps = [{"id": f"s{i}", "uses": "echo.message", "with": {"message": "x" * 50}} for i in range(150)]
    with pytest.raises(InvalidPipeline) as raised:
        compile_pipeline({"pipeline": steps}, REGISTRY)
    assert raised.value.message == "payload.pipeline: a pipeline has at most 100 steps; this one has 150"


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"params": {"day": date(2026, 1, 1)}, "pipeline": [echo("a")]}, id="not-json-param"),
        pytest.param({"params": {"n": float("nan")}, "pipeline": [echo("a")]}, id="nan-param"),
    ],
)
def test_what_the_fast_validator_cannot_read_is_judged_by_the_reference_one(payload):
    """jsonschema-rs answers first; anything it cannot read or refuses goes to the reference
    validator, which decides (here it accepts, as before the fast check)."""
    assert [s.id for s in compile_pipeline(payload, REGISTRY).steps] == ["a"]
