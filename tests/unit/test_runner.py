"""Running pipelines: step records, skips, saved results, timeouts, failures and cancellation."""

import threading
import time
from datetime import UTC, datetime

import orjson
import pytest
from jsonschema import Draft202012Validator

from engine import Tool, ToolLimits, ToolRegistry, compile_pipeline, run_pipeline
from store.errors import Permanent, RetryLater, ToolError

NOW = datetime(2026, 3, 29, 5, 0, tzinfo=UTC)
ANY_OBJECT = {"type": "object"}


def make_tool(
    address, func, *, inline=True, input_schema=ANY_OBJECT, output_schema=ANY_OBJECT, timeout_s=5.0
):
    return Tool(
        address=address,
        description=address,
        input_schema=input_schema,
        output_schema=output_schema,
        timeout_s=timeout_s,
        scopes=(),
        runs={"kind": "python", "callable": "tests:none"},
        func=func,
        inline=inline,
        input_validator=Draft202012Validator(input_schema),
        output_validator=Draft202012Validator(output_schema),
    )


def slow(args, ctx):
    time.sleep(args.get("sleep", 0.5))
    return {"slept": True}


def crash(args, ctx):
    raise RuntimeError("boom")


def bad_output(args, ctx):
    return {"count": "three"}


def retry_later(args, ctx):
    raise RetryLater(12, "peer is busy")


def permanent(args, ctx):
    raise Permanent("order 42 does not exist", code="NO_SUCH_ORDER")


def flaky(args, ctx):
    raise ToolError("connection reset", code="RESET")


REGISTRY = ToolRegistry(
    [
        *ToolRegistry.load().values(),
        make_tool("test.slow_inline", slow, inline=True, timeout_s=0.05),
        make_tool("test.slow_thread", slow, inline=False, timeout_s=0.1),
        make_tool("test.crash", crash),
        make_tool(
            "test.bad_output",
            bad_output,
            output_schema={"type": "object", "properties": {"count": {"type": "integer"}}},
        ),
        make_tool("test.retry_later", retry_later),
        make_tool("test.permanent", permanent),
        make_tool("test.flaky", flaky),
    ]
)


def run(steps, params=None, **kwargs):
    pipeline = compile_pipeline({"params": params or {}, "pipeline": steps}, REGISTRY)
    context = {
        "params": dict(pipeline.params),
        "run": {"id": 1},
        "task": {},
        "event": None,
        "now": NOW.isoformat(),
    }
    return run_pipeline(pipeline, context, now=NOW, timeout_s=kwargs.pop("timeout_s", 10), **kwargs)


def test_steps_run_in_order_and_later_steps_read_earlier_outputs():
    result = run(
        [
            {"id": "a", "uses": "echo.message", "with": {"message": "hello ${params.who}"}},
            {
                "id": "b",
                "uses": "transform.jmespath",
                "with": {"expression": "length(a.message)", "data": "${steps}"},
                "save_as": "size",
            },
        ],
        params={"who": "press"},
    )
    assert result.state == "succeeded"
    assert [(s["id"], s["state"]) for s in result.steps] == [("a", "ok"), ("b", "ok")]
    assert result.steps[0]["output"] == {"message": "hello press"}
    assert result.output == {"size": {"result": 11}}
    assert result.steps[0]["started_at"].startswith("2026-03-29T05:00:00")
    assert all(s["duration_ms"] >= 0 for s in result.steps)


def test_a_falsy_if_skips_the_step_and_records_it():
    result = run(
        [
            {"id": "a", "uses": "echo.message", "with": {"message": ""}},
            {"id": "b", "uses": "echo.message", "if": "steps.a.message", "with": {"message": "never"}},
            {
                "id": "c",
                "uses": "echo.message",
                "if": "${steps.b == `null`}",
                "with": {"message": "after skip"},
            },
        ]
    )
    assert [s["state"] for s in result.steps] == ["ok", "skipped", "ok"]
    assert result.steps[1]["output"] is None


def test_an_inline_tool_that_overruns_its_timeout_is_recorded_as_timed_out():
    result = run([{"id": "s", "uses": "test.slow_inline", "with": {"sleep": 0.1}}])
    assert result.state == "failed"
    assert result.steps[0]["state"] == "timed_out"
    assert result.error["code"] == "STEP_TIMEOUT"


def test_a_blocking_tool_is_abandoned_at_its_deadline():
    started = time.monotonic()
    result = run([{"id": "s", "uses": "test.slow_thread", "with": {"sleep": 2}}])
    assert time.monotonic() - started < 1.5
    assert result.steps[0]["state"] == "timed_out"
    assert result.error["retryable"] is True


def test_a_step_timeout_in_the_pipeline_overrides_the_tools_default():
    result = run([{"id": "s", "uses": "test.slow_thread", "timeout_s": 1.0, "with": {"sleep": 0.2}}])
    assert result.state == "succeeded"


def test_the_run_timeout_bounds_the_remaining_steps():
    result = run(
        [
            {"id": "s1", "uses": "test.slow_thread", "timeout_s": 5, "with": {"sleep": 0.15}},
            {"id": "s2", "uses": "test.slow_thread", "timeout_s": 5, "with": {"sleep": 0.5}},
        ],
        timeout_s=0.3,
    )
    assert [s["state"] for s in result.steps] == ["ok", "timed_out"]


def test_input_that_breaks_the_schema_after_rendering_fails_permanently():
    result = run(
        [{"id": "a", "uses": "echo.message", "with": {"message": "${params.count}"}}], params={"count": 3}
    )
    assert result.steps[0]["state"] == "failed"
    assert result.error["code"] == "INPUT_INVALID"
    assert result.error["retryable"] is False
    assert "with.message" in result.error["message"]


def test_output_that_breaks_the_schema_fails_the_step():
    result = run([{"id": "a", "uses": "test.bad_output"}])
    assert result.error["code"] == "OUTPUT_INVALID"
    assert "output.count" in result.error["message"]


def test_tool_errors_steer_retries():
    assert run([{"id": "a", "uses": "test.crash"}]).error | {"message": ""} == {
        "code": "TOOL_CRASHED",
        "message": "",
        "retryable": True,
        "step": "a",
    }
    later = run([{"id": "a", "uses": "test.retry_later"}]).error
    assert later["retry_after_s"] == 12 and later["retryable"] is True
    assert run([{"id": "a", "uses": "test.permanent"}]).error["retryable"] is False
    assert run([{"id": "a", "uses": "test.flaky"}]).error["code"] == "RESET"


def test_a_failed_step_stops_the_pipeline():
    result = run(
        [{"id": "a", "uses": "test.permanent"}, {"id": "b", "uses": "echo.message", "with": {"message": "x"}}]
    )
    assert [s["id"] for s in result.steps] == ["a"]
    assert result.error["step"] == "a"


def test_cancellation_is_seen_at_the_next_step_boundary():
    flag = threading.Event()

    def cancel_after_first(args, ctx):
        flag.set()
        return {}

    registry = ToolRegistry([*REGISTRY.values(), make_tool("test.mark", cancel_after_first)])
    pipeline = compile_pipeline(
        {
            "pipeline": [
                {"id": "a", "uses": "test.mark"},
                {"id": "b", "uses": "echo.message", "with": {"message": "x"}},
            ]
        },
        registry,
    )
    result = run_pipeline(pipeline, {"params": {}}, now=NOW, timeout_s=5, is_canceled=flag.is_set)
    assert result.state == "canceled"
    assert [s["id"] for s in result.steps] == ["a"]


# -- what a run may keep -------------------------------------------------------------------------

SMALL = ToolLimits(step_output_max_bytes=4096)


@pytest.mark.parametrize("template", ["${steps}", "${@}", "${[steps]}", "${{all: @}}"])
def test_an_output_holding_the_runs_own_context_fails_with_template_cycle(template):
    """`${steps}` passed through echo would make the step's output contain itself once stored."""
    result = run(
        [
            {"id": "a", "uses": "echo.message", "with": {"message": "hi"}},
            {"id": "b", "uses": "echo.message", "with": {"message": "x", "data": template}},
        ]
    )
    assert result.state == "failed"
    assert result.error["code"] == "TEMPLATE_CYCLE" and result.error["retryable"] is False
    assert result.steps[1]["state"] == "failed" and "output" not in result.steps[1]
    orjson.dumps(result.steps)  # what is recorded is plain JSON


def test_the_runs_context_may_be_read_by_a_tool_that_does_not_return_it():
    result = run(
        [
            {"id": "a", "uses": "echo.message", "with": {"message": "hi"}},
            {"id": "b", "uses": "transform.jmespath", "with": {"expression": "keys(@)", "data": "${steps}"}},
        ]
    )
    assert result.state == "succeeded" and result.steps[1]["output"] == {"result": ["a"]}


def test_an_output_over_the_step_limit_fails_with_output_too_large():
    result = run(
        [{"id": "a", "uses": "echo.message", "with": {"message": "${params.text}"}}],
        params={"text": "x" * 5000},
        limits=SMALL,
    )
    assert result.error["code"] == "INPUT_TOO_LARGE"
    result = run(
        [
            {
                "id": "a",
                "uses": "transform.jmespath",
                "with": {"expression": "[@, @, @]", "data": "${params.t}"},
            }
        ],
        params={"t": "x" * 2000},
        limits=SMALL,
    )
    assert result.error["code"] == "OUTPUT_TOO_LARGE" and result.error["retryable"] is False
    assert "4096" in result.error["message"]


def test_outputs_that_double_each_step_are_stopped_before_they_exhaust_memory():
    steps = [{"id": "s0", "uses": "echo.message", "with": {"message": "${params.m}"}}]
    for i in range(1, 60):
        steps.append(
            {
                "id": f"s{i}",
                "uses": "echo.message",
                "with": {"message": "x", "data": [f"${{steps.s{i - 1}}}", f"${{steps.s{i - 1}}}"]},
            }
        )
    result = run(steps, params={"m": "y" * 100})
    assert result.state == "failed"
    assert result.error["code"] in ("INPUT_TOO_LARGE", "OUTPUT_TOO_LARGE")
    assert len(result.steps) < 60


def test_the_whole_record_of_a_run_is_bounded():
    steps = [
        {"id": f"s{i}", "uses": "echo.message", "with": {"message": "${params.text}"}, "save_as": f"k{i}"}
        for i in range(10)
    ]
    result = run(steps, params={"text": "x" * 3000}, limits=SMALL)
    assert result.error["code"] == "OUTPUT_TOO_LARGE"
    assert "run's recorded outputs" in result.error["message"]
    kept = sum(len(orjson.dumps(s.get("output"))) for s in result.steps)
    assert kept + len(orjson.dumps(result.output)) <= SMALL.record_max_bytes


def test_a_rendered_input_nested_too_deep_fails_the_step():
    deep = "leaf"
    for _ in range(150):
        deep = {"d": deep}
    result = run(
        [{"id": "a", "uses": "echo.message", "with": {"message": "x", "data": "${params.deep}"}}],
        params={"deep": deep},
    )
    assert result.error["code"] == "TEMPLATE_TOO_DEEP"


def test_text_built_by_a_template_is_bounded():
    big = {"m": "x" * 1000}
    for _ in range(40):
        big = {"a": big, "b": big}
    pipeline = compile_pipeline(
        {"pipeline": [{"id": "a", "uses": "echo.message", "with": {"message": "v=${params.big}"}}]}, REGISTRY
    )
    context = {"params": {"big": big}}
    result = run_pipeline(pipeline, context, now=NOW, timeout_s=5)
    assert result.error["code"] == "TEMPLATE_ERROR"
    assert "text" in result.error["message"]


def test_a_tools_error_is_recorded_bounded():
    def loud(args, ctx):
        raise ToolError("m" * 100_000, code="LOUD", details={"blob": ["x" * 1000] * 100})

    registry = ToolRegistry([*REGISTRY.values(), make_tool("test.loud", loud)])
    pipeline = compile_pipeline({"pipeline": [{"id": "a", "uses": "test.loud"}]}, registry)
    error = run_pipeline(pipeline, {"params": {}}, now=NOW, timeout_s=5).error
    assert len(error["message"]) <= 4000
    assert error["details"]["truncated"] is True and error["details"]["bytes"] > 16 * 1024


def test_a_tool_that_calls_exit_fails_its_step_not_the_process():
    def leave(args, ctx):
        raise SystemExit(3)

    registry = ToolRegistry([*REGISTRY.values(), make_tool("test.exit", leave)])
    pipeline = compile_pipeline({"pipeline": [{"id": "a", "uses": "test.exit"}]}, registry)
    assert run_pipeline(pipeline, {"params": {}}, now=NOW, timeout_s=5).error["code"] == "TOOL_CRASHED"


DOUBLING = "[`1`]" + " | [@, @][]" * 40  # 2^40 elements if it were let run


@pytest.mark.parametrize(
    ("step", "code"),
    [
        (
            {"id": "t", "uses": "echo.message", "with": {"message": "m", "data": "${" + DOUBLING + "}"}},
            "TEMPLATE_ERROR",
        ),
        (
            {
                "id": "t",
                "uses": "echo.message",
                "if": "${length(" + DOUBLING + ")}",
                "with": {"message": "m"},
            },
            "TEMPLATE_ERROR",
        ),
        (
            {"id": "t", "uses": "transform.jmespath", "with": {"expression": DOUBLING, "data": {}}},
            "EXPRESSION_FAILED",
        ),
    ],
    ids=["with", "if", "transform"],
)
def test_an_expression_that_doubles_a_list_again_and_again_fails_its_step_in_bounded_work(
    step, code, monkeypatch
):
    """Forty doublings would build 2^40 elements (memory and time without end on the worker's thread);
    the evaluation stops at MAX_EVALUATION_WORK and the step fails for good with its own error."""
    monkeypatch.setattr("engine.templates.MAX_EVALUATION_WORK", 100_000)
    result = run([step])
    assert result.state == "failed"
    [record] = result.steps
    assert (record["error"]["code"], record["error"]["retryable"]) == (code, False)
    assert "steps of work" in record["error"]["message"]


def test_the_work_bound_leaves_room_for_large_legitimate_expressions():
    """A projection with a filter and a multi-select over 100,000 records (a large plan's operations)
    is well inside the bound, and the bound is per evaluation, not per run."""
    ops = [{"id": i, "machine": f"M{i % 7}", "start": i, "end": i + 3} for i in range(100_000)]
    expression = "[?machine == 'M3'].{id: id, from: start, to: end}"
    result = run(
        [
            {
                "id": "t",
                "uses": "transform.jmespath",
                "with": {"expression": expression, "data": "${params.ops}"},
            }
        ]
        * 1,
        params={"ops": ops},
    )
    assert result.state == "succeeded", result.steps
    assert len(result.steps[0]["output"]["result"]) == len([o for o in ops if o["machine"] == "M3"])
