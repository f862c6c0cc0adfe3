"""Run a compiled pipeline: evaluate `if`, render `with`, check input, call the tool under a timeout,
check output, store the result under `steps.<id>` (and `steps.<save_as>`), and record every step.

Two ways to run the same steps: `run_pipeline` on the caller's thread, calling blocking tools on a
step thread abandoned at the deadline; and `run_pipeline_async` on an event loop, awaiting the tools
that have an asynchronous implementation (http.request), so hundreds of runs waiting on I/O share
one thread. Both drive the one coroutine `_run_steps`: the blocking driver gives it a tool caller
that never suspends, so it completes in a single `send`.

Pure: the caller passes `now`; the only clock read here is the monotonic one, for durations and
deadlines. A step's `started_at` is `now` plus the monotonic time elapsed since the run began.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from jsonschema.exceptions import best_match

from engine.context import RECORD_MULTIPLE, ToolContext, ToolLimits
from engine.pipeline import Pipeline, Step, format_path
from engine.registry import Tool
from engine.templates import evaluate, truthy
from engine.values import SelfReference, TooDeep, TooLarge, ValueProblem, measure
from store.domain import iso_utc
from store.errors import OrdoError, RetryLater, ToolError

__all__ = ["RunResult", "call_tool", "is_async_capable", "run_pipeline", "run_pipeline_async"]

# A tool's error message and details are recorded with the run: long enough to explain, never a
# second output channel.
_ERROR_MESSAGE_MAX = 4000
_ERROR_DETAILS_MAX_BYTES = 16 * 1024


@dataclass
class RunResult:
    state: str  # succeeded | failed | canceled
    steps: list[dict[str, Any]]
    output: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None


class _StepFailure(Exception):
    def __init__(self, state: str, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.state = state
        self.error = error


# How a step's tool is called once its input is rendered: validate, call under the deadline, validate.
Invoke = Callable[[Tool, Any, ToolContext], Awaitable[Any]]


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
    """Run every step in order on this thread; stop at the first failure. `context` gets `steps`
    filled in."""
    steps = _run_steps(pipeline, context, now, timeout_s, limits, is_canceled, log, db, _invoke_here)
    try:
        steps.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    steps.close()
    raise RuntimeError("a blocking pipeline run suspended")  # _invoke_here never awaits anything


async def run_pipeline_async(
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
    """`run_pipeline` on the running event loop: tools with an asynchronous implementation are
    awaited under their deadline, inline ones called in place, any other on a step thread."""
    return await _run_steps(pipeline, context, now, timeout_s, limits, is_canceled, log, db, _invoke_async)


def is_async_capable(pipeline: Pipeline) -> bool:
    """Whether every step of `pipeline` can run on an event loop without a thread of its own."""
    return all(step.tool.inline or step.tool.afunc is not None for step in pipeline.steps)


async def _run_steps(
    pipeline: Pipeline,
    context: dict[str, Any],
    now: datetime,
    timeout_s: float,
    limits: ToolLimits | None,
    is_canceled: Callable[[], bool],
    log: Any,
    db: Any,
    invoke: Invoke,
) -> RunResult:
    limits = limits or ToolLimits()
    started = time.monotonic()
    run_deadline = started + timeout_s
    steps_out: dict[str, Any] = context.setdefault("steps", {})
    records: list[dict[str, Any]] = []
    saved: dict[str, Any] = {}
    # The run's own containers: an output holding one of them would hold itself once stored.
    own = (id(context), id(steps_out))
    recorded = 0  # bytes of outputs kept so far (a saved output counts twice: steps and run output)
    for step in pipeline.steps:
        if is_canceled():
            return RunResult(
                "canceled", records, saved, _error("CANCELED", "the run was canceled", step=step.id)
            )
        step_start = time.monotonic()
        record: dict[str, Any] = {
            "id": step.id,
            "uses": step.uses,
            "started_at": iso_utc(now + timedelta(seconds=step_start - started)),
        }
        records.append(record)
        try:
            if step.condition is not None and not _condition_holds(step, context):
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
            output, size = await _call_step(step, context, ctx, own, invoke)
            recorded += size * (2 if step.save_as else 1)
            if recorded > limits.record_max_bytes:
                raise _StepFailure(
                    "failed",
                    _error(
                        "OUTPUT_TOO_LARGE",
                        f"the run's recorded outputs would pass {limits.record_max_bytes} bytes "
                        f"({RECORD_MULTIPLE} x ORDO_STEP_OUTPUT_MAX_BYTES) with this step's output "
                        f"of {size} bytes",
                        retryable=False,
                    ),
                )
        except _StepFailure as failure:
            record.update(state=failure.state, duration_ms=_ms(step_start), error=failure.error)
            failure.error.setdefault("step", step.id)
            return RunResult("failed", records, saved, dict(failure.error))
        record.update(state="ok", duration_ms=_ms(step_start), output=output)
        steps_out[step.id] = output
        if step.save_as:
            steps_out[step.save_as] = output
            saved[step.save_as] = output
        if is_canceled():
            # canceled while this step ran: a tool that stops early on cancel (solver.solve) returns its
            # best result so far, which the run keeps as its output, but the run ends canceled
            return RunResult(
                "canceled", records, saved, _error("CANCELED", "the run was canceled", step=step.id)
            )
    return RunResult("succeeded", records, saved)


def _condition_holds(step: Step, context: dict[str, Any]) -> bool:
    """The step's `if`; an expression that raises (a type error in a function) fails the step, as a
    `with` template that raises does."""
    assert step.condition is not None
    try:
        return truthy(evaluate(step.condition, context))
    except Exception as e:
        raise _StepFailure(
            "failed", _error("TEMPLATE_ERROR", f"evaluating `if` failed: {e}", retryable=False)
        ) from None


def call_tool(tool: Tool, arguments: Any, ctx: ToolContext) -> Any:
    """Validate input, call the tool under its deadline, validate output. Raises ToolError/OrdoError."""
    try:
        _check_input(tool, arguments, ctx.limits)
        output = _invoke_blocking(tool, arguments, ctx)
        _check_output(tool, output, ctx.limits, ())
        return output
    except _StepFailure as failure:
        e = failure.error
        raise ToolError(
            e["message"], code=e["code"], details=e.get("details"), retryable=e.get("retryable", True)
        ) from None


async def _call_step(
    step: Step, context: dict[str, Any], ctx: ToolContext, own: tuple[int, ...], invoke: Invoke
) -> tuple[Any, int]:
    """The step's output and its size as JSON."""
    try:
        arguments = step.render_input(context)
    except Exception as e:  # JMESPath raises on type errors inside functions at run time
        raise _StepFailure(
            "failed", _error("TEMPLATE_ERROR", f"rendering the input failed: {e}", retryable=False)
        ) from None
    _check_input(step.tool, arguments, ctx.limits)
    output = await invoke(step.tool, arguments, ctx)
    return output, _check_output(step.tool, output, ctx.limits, own)


# What each problem is called when measured on a rendered input and on a tool's output.
_INPUT_CODES = {TooLarge: "INPUT_TOO_LARGE", TooDeep: "TEMPLATE_TOO_DEEP", SelfReference: "TEMPLATE_CYCLE"}
_OUTPUT_CODES = {
    TooLarge: "OUTPUT_TOO_LARGE",
    TooDeep: "OUTPUT_TOO_DEEP",
    SelfReference: "UNRECORDABLE_OUTPUT",
}
_CONTEXT_IN_OUTPUT = (
    "contains the run's own context (a template such as ${steps} or ${@} passed it in), so it would "
    "contain itself once recorded; pass the parts you need, e.g. ${steps.<id>.<field>}"
)


def _check_input(tool: Tool, arguments: Any, limits: ToolLimits) -> None:
    """A rendered input may be as large as a step output, and must be a tree of bounded depth."""
    try:
        measure(arguments, max_bytes=limits.step_output_max_bytes)
    except ValueProblem as e:
        raise _unusable(e, f"the rendered input for {tool.address}", _INPUT_CODES, "INPUT_INVALID") from None


def _check_output(tool: Tool, output: Any, limits: ToolLimits, own: tuple[int, ...]) -> int:
    """An output is kept only if it can be recorded: bounded in size and depth, and not containing
    the run's own context (`${steps}` or `${@}` passed through a tool), which would then contain it."""
    try:
        return measure(output, max_bytes=limits.step_output_max_bytes, forbidden=own)
    except SelfReference as e:
        if not e.own:
            raise _unusable(e, f"the output of {tool.address}", _OUTPUT_CODES, "") from None
        message = f"the output of {tool.address} {_CONTEXT_IN_OUTPUT}"
        raise _StepFailure("failed", _error("TEMPLATE_CYCLE", message, retryable=False)) from None
    except ValueProblem as e:
        raise _unusable(e, f"the output of {tool.address}", _OUTPUT_CODES, "UNRECORDABLE_OUTPUT") from None


def _unusable(
    problem: ValueProblem, what: str, codes: dict[type[ValueProblem], str], otherwise: str
) -> _StepFailure:
    """The step's failure for a value that cannot be used: permanent, since it would be the same again."""
    code = codes.get(type(problem), otherwise)
    limit = " (ORDO_STEP_OUTPUT_MAX_BYTES)" if isinstance(problem, TooLarge) else ""
    return _StepFailure("failed", _error(code, f"{what} {problem}{limit}", retryable=False))


async def _invoke_here(tool: Tool, arguments: Any, ctx: ToolContext) -> Any:
    """The blocking driver's tool caller: a coroutine that never suspends."""
    return _invoke_blocking(tool, arguments, ctx)


def _invoke_blocking(tool: Tool, arguments: Any, ctx: ToolContext) -> Any:
    _validate_input(tool, arguments)
    if tool.inline:
        output = _inline(tool, arguments, ctx)
    else:
        output = _on_step_thread(tool, arguments, ctx, ctx.deadline - time.monotonic())
    _validate_output(tool, output)
    return output


async def _invoke_async(tool: Tool, arguments: Any, ctx: ToolContext) -> Any:
    _validate_input(tool, arguments)
    timeout = ctx.deadline - time.monotonic()
    if tool.inline:
        output = _inline(tool, arguments, ctx)
    elif tool.afunc is not None:
        try:
            output = await asyncio.wait_for(_guarded_async(tool, arguments, ctx), max(0.0, timeout))
        except TimeoutError:
            raise _step_timeout(tool, timeout) from None
    else:  # a blocking tool in an async run: its own thread, as in a blocking run
        loop = asyncio.get_running_loop()
        output = await loop.run_in_executor(None, _on_step_thread, tool, arguments, ctx, timeout)
    _validate_output(tool, output)
    return output


def _validate_input(tool: Tool, arguments: Any) -> None:
    # The fast validator decides; the reference one explains (and has the last word if they differ).
    error = (
        None
        if _fast_valid(tool.fast_input, arguments)
        else best_match(tool.input_validator.iter_errors(arguments))
    )
    if error is not None:
        where = format_path(["with", *error.absolute_path])
        raise _StepFailure(
            "failed",
            _error("INPUT_INVALID", f"{where}: {error.message}", retryable=False, details={"path": where}),
        )


def _fast_valid(validator: Any, value: Any) -> bool:
    """The fast validator's answer; False (ask the reference validator) when it cannot read the value:
    jsonschema-rs raises UnicodeEncodeError on a lone surrogate (a JMESPath literal can make one) in
    a string it must match against a pattern or format."""
    try:
        return bool(validator.is_valid(value))
    except ValueError:
        return False


def _validate_output(tool: Tool, output: Any) -> None:
    error = (
        None
        if _fast_valid(tool.fast_output, output)
        else best_match(tool.output_validator.iter_errors(output))
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


def _inline(tool: Tool, arguments: Any, ctx: ToolContext) -> Any:
    """An inline tool, called in place; its timeout is checked when it returns."""
    timeout = ctx.deadline - time.monotonic()
    output = _guarded(tool, arguments, ctx)
    if time.monotonic() > ctx.deadline:
        raise _step_timeout(tool, timeout)
    return output


def _step_timeout(tool: Tool, timeout: float) -> _StepFailure:
    return _StepFailure(
        "timed_out", _error("STEP_TIMEOUT", f"{tool.address} did not finish in {timeout:.3g} s")
    )


def _guarded(tool: Tool, arguments: Any, ctx: ToolContext) -> Any:
    try:
        return tool.func(arguments, ctx)
    except (Exception, SystemExit) as e:  # a tool calling exit() must not end the worker
        raise _tool_failure(tool, e, ctx) from None


async def _guarded_async(tool: Tool, arguments: Any, ctx: ToolContext) -> Any:
    assert tool.afunc is not None
    try:
        return await tool.afunc(arguments, ctx)
    except (Exception, SystemExit) as e:
        raise _tool_failure(tool, e, ctx) from None


def _tool_failure(tool: Tool, e: BaseException, ctx: ToolContext) -> _StepFailure:
    """What a tool's exception means for its step: the errors tools raise on purpose keep their
    code and retry advice; anything else is a crash of the tool, retried like any failure."""
    if isinstance(e, RetryLater):
        return _StepFailure(
            "failed", _tool_error(e.code, e.message, retry_after_s=e.delay_s, details=e.details)
        )
    if isinstance(e, ToolError):
        return _StepFailure(
            "failed", _tool_error(e.code, e.message, retryable=e.retryable, details=e.details)
        )
    if isinstance(e, OrdoError):
        return _StepFailure("failed", _tool_error(e.code, e.message, retryable=False, details=e.details))
    ctx.log.exception("tool_crashed", tool=tool.address)  # called while `e` is being handled
    return _StepFailure(
        "failed", _tool_error("TOOL_CRASHED", f"{tool.address} raised {type(e).__name__}: {e}")
    )


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
        raise _step_timeout(tool, timeout)
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


def _tool_error(code: Any, message: Any, *, details: Any = None, **kwargs: Any) -> dict[str, Any]:
    """An error a tool raised, bounded: its code and message as text, its details only if small."""
    text = str(message)
    if len(text) > _ERROR_MESSAGE_MAX:
        text = text[: _ERROR_MESSAGE_MAX - 3] + "..."
    if details:
        try:
            size = measure(details, max_bytes=1 << 50)
            if size > _ERROR_DETAILS_MAX_BYTES:
                details = {"truncated": True, "bytes": size}
        except ValueProblem as e:
            details = {"unrecordable": f"the details {e}"}
    return _error(str(code)[:100], text, details=details, **kwargs)


def _ms(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 3)


class _NullLog:
    def bind(self, **_: Any) -> _NullLog:
        return self

    def __getattr__(self, _: str) -> Callable[..., None]:
        return lambda *a, **k: None


_NULL_LOG = _NullLog()
