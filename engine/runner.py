"""Run a compiled pipeline: evaluate `if`, render `with`, check input, call the tool under a timeout,
check output, store the result under `steps.<id>` (and `steps.<save_as>`), and record every step.

Pure: the caller passes `now`; the only clock read here is the monotonic one, for durations and
deadlines. A step's `started_at` is `now` plus the monotonic time elapsed since the run began.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from jsonschema.exceptions import best_match

from engine.context import ToolContext, ToolLimits
from engine.pipeline import Pipeline, Step, format_path
from engine.registry import Tool
from engine.templates import evaluate, truthy
from store.errors import OrdoError, RetryLater, ToolError

__all__ = ["RunResult", "call_tool", "run_pipeline"]


@dataclass
class RunResult:
    state: str  # succeeded | failed | canceled
    steps: list[dict[str, Any]]
    output: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None

    @property
    def retryable(self) -> bool:
        return self.error is None or bool(self.error.get("retryable", True))

    @property
    def retry_after_s(self) -> float | None:
        return None if self.error is None else self.error.get("retry_after_s")


class _StepFailure(Exception):
    def __init__(self, state: str, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.state = state
        self.error = error


def run_pipeline(
    pipeline: Pipeline,
    context: dict[str, Any],
    *,
    now: datetime,
    timeout_s: float,
    limits: ToolLimits | None = None,
    is_canceled: Callable[[], bool] = lambda: False,
    log: Any = None,
    db: Any = None,
) -> RunResult:
    """Run every step in order; stop at the first failure. `context` gets `steps` filled in."""
    limits = limits or ToolLimits()
    started = time.monotonic()
    run_deadline = started + timeout_s
    steps_out: dict[str, Any] = context.setdefault("steps", {})
    records: list[dict[str, Any]] = []
    saved: dict[str, Any] = {}
    for step in pipeline.steps:
        if is_canceled():
            return RunResult(
                "canceled", records, saved, _error("CANCELED", "the run was canceled", step=step.id)
            )
        step_start = time.monotonic()
        record: dict[str, Any] = {
            "id": step.id,
            "uses": step.uses,
            "started_at": (now + timedelta(seconds=step_start - started)).isoformat(),
        }
        records.append(record)
        try:
            if step.condition is not None and not truthy(evaluate(step.condition, context)):
                record.update(state="skipped", duration_ms=0.0, output=None)
                steps_out[step.id] = None
                continue
            if step_start >= run_deadline:
                raise _StepFailure(
                    "timed_out", _error("RUN_TIMEOUT", f"the run exceeded its {timeout_s:g} s timeout")
                )
            deadline = min(step_start + step.timeout_s, run_deadline)
            ctx = ToolContext(
                now=now + timedelta(seconds=step_start - started),
                deadline=deadline,
                run=context.get("run") or {},
                task=context.get("task") or {},
                step_id=step.id,
                limits=limits,
                run_log=log if log is not None else _NULL_LOG,
                is_canceled=is_canceled,
                db=db,
            )
            output = _call_step(step, context, ctx)
        except _StepFailure as failure:
            record.update(state=failure.state, duration_ms=_ms(step_start), error=failure.error)
            failure.error.setdefault("step", step.id)
            return RunResult("failed", records, saved, dict(failure.error))
        record.update(state="ok", duration_ms=_ms(step_start), output=output)
        steps_out[step.id] = output
        if step.save_as:
            steps_out[step.save_as] = output
            saved[step.save_as] = output
    return RunResult("succeeded", records, saved)


def call_tool(tool: Tool, arguments: Any, ctx: ToolContext) -> Any:
    """Validate input, call the tool under its deadline, validate output. Raises ToolError/OrdoError."""
    try:
        return _invoke(tool, arguments, ctx)
    except _StepFailure as failure:
        e = failure.error
        raise ToolError(
            e["message"], code=e["code"], details=e.get("details"), retryable=e.get("retryable", True)
        ) from None


def _call_step(step: Step, context: dict[str, Any], ctx: ToolContext) -> Any:
    try:
        arguments = step.render_input(context)
    except Exception as e:  # JMESPath raises on type errors inside functions at run time
        raise _StepFailure(
            "failed", _error("TEMPLATE_ERROR", f"rendering the input failed: {e}", retryable=False)
        ) from None
    return _invoke(step.tool, arguments, ctx)


def _invoke(tool: Tool, arguments: Any, ctx: ToolContext) -> Any:
    # The fast validator decides; the reference one explains (and has the last word if they differ).
    error = (
        None
        if tool.fast_input.is_valid(arguments)
        else best_match(tool.input_validator.iter_errors(arguments))
    )
    if error is not None:
        where = format_path(["with", *error.absolute_path])
        raise _StepFailure(
            "failed",
            _error("INPUT_INVALID", f"{where}: {error.message}", retryable=False, details={"path": where}),
        )
    timeout = ctx.deadline - time.monotonic()
    if tool.inline:
        output = _guarded(tool, arguments, ctx)
        if time.monotonic() > ctx.deadline:
            raise _StepFailure(
                "timed_out", _error("STEP_TIMEOUT", f"{tool.address} did not finish in {timeout:.3g} s")
            )
    else:
        output = _on_step_thread(tool, arguments, ctx, timeout)
    error = (
        None if tool.fast_output.is_valid(output) else best_match(tool.output_validator.iter_errors(output))
    )
    if error is not None:
        raise _StepFailure(
            "failed",
            _error(
                "OUTPUT_INVALID",
                f"{tool.address} returned output that breaks its schema at "
                f"{format_path(['output', *error.absolute_path])}: {error.message}",
            ),
        )
    return output


def _guarded(tool: Tool, arguments: Any, ctx: ToolContext) -> Any:
    try:
        return tool.func(arguments, ctx)
    except RetryLater as e:
        raise _StepFailure(
            "failed", _error(e.code, e.message, retry_after_s=e.delay_s, details=e.details)
        ) from None
    except ToolError as e:
        raise _StepFailure(
            "failed", _error(e.code, e.message, retryable=e.retryable, details=e.details)
        ) from None
    except OrdoError as e:
        raise _StepFailure("failed", _error(e.code, e.message, retryable=False, details=e.details)) from None
    except Exception as e:
        ctx.log.exception("tool_crashed", tool=tool.address)
        raise _StepFailure(
            "failed", _error("TOOL_CRASHED", f"{tool.address} raised {type(e).__name__}: {e}")
        ) from None


def _on_step_thread(tool: Tool, arguments: Any, ctx: ToolContext, timeout: float) -> Any:
    """Run a blocking tool on its own daemon thread; abandon it at the deadline."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["output"] = _guarded(tool, arguments, ctx)
        except _StepFailure as failure:
            box["failure"] = failure

    thread = threading.Thread(target=target, name=f"step-{ctx.step_id or tool.address}", daemon=True)
    thread.start()
    thread.join(max(0.0, timeout))
    if thread.is_alive():
        raise _StepFailure(
            "timed_out", _error("STEP_TIMEOUT", f"{tool.address} did not finish in {timeout:.3g} s")
        )
    if "failure" in box:
        raise box["failure"]
    return box["output"]


def _error(
    code: str,
    message: str,
    *,
    retryable: bool = True,
    retry_after_s: float | None = None,
    details: dict[str, Any] | None = None,
    step: str | None = None,
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "retryable": retryable}
    if retry_after_s is not None:
        error["retry_after_s"] = retry_after_s
    if details:
        error["details"] = details
    if step is not None:
        error["step"] = step
    return error


def _ms(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 3)


class _NullLog:
    def bind(self, **_: Any) -> _NullLog:
        return self

    def __getattr__(self, _: str) -> Callable[..., None]:
        return lambda *a, **k: None


_NULL_LOG = _NullLog()
