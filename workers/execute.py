"""Running one attempt: build the run context, run the pipeline (on this thread, or awaited on the
worker's event loop), decide what happens next (done, retry after a backoff, dead), log one line,
and hand back the outcome serialised on its own.

`Executor.finish` never raises. Whatever goes wrong while running an attempt, outside the tools
(which the engine already guards), becomes that run's WORKER_CRASH outcome, so its slot and lease
are always freed and its history always says what happened.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine import RunResult, ToolLimits, run_pipeline, run_pipeline_async
from observability import metrics
from store.db import Database
from store.domain import iso_utc
from workers.inputs import TaskDef
from workers.leases import Lease
from workers.outcomes import Finished, Outcome, serialise, unrecordable
from workers.owners import Owners
from workers.retry import RetryPolicy, decide

__all__ = ["Executor"]

# Labelled children resolved once: a label lookup per run is measurable at thousands of runs a second.
_FINISHED = {
    state: metrics.RUNS_FINISHED.labels(state) for state in ("succeeded", "failed", "dead", "canceled")
}
_ISO_CACHE: dict[datetime, str] = {}


def _iso(value: datetime) -> str:
    """store.domain.iso_utc (the one way Ordo writes an instant), remembered: runs of one lease batch
    share their lease time (and bulk-queued runs their creation time), and formatting costs more than
    a dictionary lookup."""
    text = _ISO_CACHE.get(value)
    if text is None:
        if len(_ISO_CACHE) >= 4096:
            _ISO_CACHE.clear()
        text = _ISO_CACHE[value] = iso_utc(value)
    return text


@dataclass(frozen=True, slots=True)
class _Start:
    """What an attempt's pipeline runs with: its logger and run_pipeline's other arguments."""

    log: Any
    arguments: dict[str, Any]


class _RunLog:
    """The run's logger, bound (run_id, task_id, attempt) only when something is logged: at thousands
    of runs a second with info logging off, most runs never log."""

    __slots__ = ("_base", "_bound", "_lease")

    def __init__(self, base: Any, lease: Lease) -> None:
        self._base = base
        self._lease = lease
        self._bound: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._bound is None:
            lease = self._lease
            self._bound = self._base.bind(run_id=lease.id, task_id=str(lease.task_id), attempt=lease.attempt)
        return getattr(self._bound, name)


class Executor:
    def __init__(
        self,
        db: Database,
        limits: ToolLimits,
        log: Any,
        rng: random.Random,
        is_canceled: Callable[[int], bool],
        owners: Owners,
    ) -> None:
        self.db = db
        self.owners = owners
        self.limits = limits
        self.log = log
        self.rng = rng
        self.is_canceled = is_canceled
        is_enabled = getattr(log, "is_enabled_for", None)
        self._log_successes = is_enabled(logging.INFO) if is_enabled is not None else True

    def finish(self, lease: Lease, task: TaskDef, event: dict[str, Any] | None) -> Finished:
        """Run one attempt on this thread and return its outcome, serialised and size-checked.
        Never raises."""
        try:
            start = self._start(lease, task, event)
            if isinstance(start, _Start):
                outcome = self._conclude(
                    lease, task, run_pipeline(task.pipeline, **start.arguments), start.log
                )
            else:
                outcome = start
        except Exception as e:
            outcome = self._crashed(lease, task, e)
        return self._serialise(outcome, lease)

    async def finish_async(self, lease: Lease, task: TaskDef, event: dict[str, Any] | None) -> Finished:
        """`finish` on the running event loop, for a pipeline whose every step can run there
        (engine.is_async_capable). Never raises."""
        try:
            start = self._start(lease, task, event)
            if isinstance(start, _Start):
                result = await run_pipeline_async(task.pipeline, **start.arguments)
                outcome = self._conclude(lease, task, result, start.log)
            else:
                outcome = start
        except Exception as e:
            outcome = self._crashed(lease, task, e)
        return self._serialise(outcome, lease)

    def crashed(self, lease: Lease, task: TaskDef | None, exc: Exception) -> Finished:
        """The outcome of a lease the worker failed to start (or run)."""
        return self._serialise(self._crashed(lease, task, exc), lease)

    def _serialise(self, outcome: Outcome, lease: Lease) -> Finished:
        try:
            return serialise(outcome, self.limits.record_max_bytes, lease.task_id)
        except Exception as e:  # serialise guards what it knows; this is for what it does not
            self.log.exception("outcome_serialisation_crashed", run_id=outcome.id, task_id=str(lease.task_id))
            return unrecordable(outcome, "UNRECORDABLE_OUTPUT", f"{type(e).__name__}: {e}", lease.task_id)

    def _start(self, lease: Lease, task: TaskDef, event: dict[str, Any] | None) -> Outcome | _Start:
        """The attempt's outcome when it cannot run (canceled, not compiled, scopes revoked), or what
        its pipeline runs with."""
        row = lease.row
        log = _RunLog(self.log, lease)
        if row["task_status"] == "canceled":
            return self._outcome(
                lease,
                "canceled",
                [],
                None,
                {"code": "TASK_CANCELED", "message": "the task was canceled"},
                log,
            )
        if task.pipeline is None:
            return self._outcome(lease, "dead", [], None, task.compile_error, log)
        missing = self.owners.missing(task)
        if missing:
            self.owners.revoked(lease.task_id, task.agent_id, missing)
            error = {
                "code": "SCOPE_REVOKED",
                "message": f"the task's owner no longer holds {', '.join(missing)}, which its tools need; "
                "the task is paused until it is granted again and resumed",
                "retryable": False,
                "details": {"missing_scopes": missing},
            }
            return self._outcome(lease, "dead", [], None, error, log)
        now = lease.started_at
        params = dict(task.pipeline.params)
        if row["params"]:
            params.update(row["params"])
        context = {
            "params": params,
            "steps": {},
            "run": {
                "id": lease.id,
                "attempt": lease.attempt,
                "max_attempts": lease.max_attempts,
                "origin": row["origin"],
                "scheduled_for": _iso(row["scheduled_for"]),
            },
            "task": task.context_task,
            "event": event,
            "now": _iso(now),
        }
        run_id = lease.id
        return _Start(
            log,
            {
                "context": context,
                "now": now,
                "timeout_s": task.timeout_s,
                "limits": self.limits,
                "is_canceled": lambda: self.is_canceled(run_id),
                "log": log,
                "db": self.db,
            },
        )

    def _conclude(self, lease: Lease, task: TaskDef, result: RunResult, log: Any) -> Outcome:
        """The attempt's outcome from its pipeline's result: done, canceled, retried later or dead."""
        if result.state == "succeeded":
            return self._outcome(lease, "succeeded", result.steps, result.output, None, log)
        if result.state == "canceled":
            return self._outcome(lease, "canceled", result.steps, result.output, result.error, log)
        state, delay = decide(result.error, lease.attempt, lease.max_attempts, task.policy, self.rng)
        return self._outcome(lease, state, result.steps, result.output, result.error, log, retry_in_s=delay)

    def _crashed(self, lease: Lease, task: TaskDef | None, exc: Exception) -> Outcome:
        """The attempt failed inside the worker itself: record that, and retry like any failure.
        Built here rather than by _outcome, which may be what failed."""
        self.log.exception("run_crashed", run_id=lease.id, task_id=str(lease.task_id))
        error = {
            "code": "WORKER_CRASH",
            "message": f"the worker failed while running this attempt: {type(exc).__name__}: {exc}"[:4000],
            "retryable": True,
        }
        try:
            policy = task.policy if task is not None else RetryPolicy()
            state, delay = decide(error, lease.attempt, lease.max_attempts, policy, self.rng)
        except Exception:  # decide is pure and simple; should it still fail, do not retry blindly
            state, delay = "dead", None
        _FINISHED[state].inc()
        return Outcome(
            id=lease.id,
            token=lease.token,
            attempt=lease.attempt,
            state=state,
            retry_in_s=delay,
            duration_s=time.monotonic() - lease.received,
            steps=[],
            output=None,
            error=error,
        )

    def _outcome(
        self,
        lease: Lease,
        state: str,
        steps: list[dict[str, Any]],
        output: dict[str, Any] | None,
        error: dict[str, Any] | None,
        log: Any,
        retry_in_s: float | None = None,
    ) -> Outcome:
        duration = time.monotonic() - lease.received
        _FINISHED[state].inc()
        metrics.RUN_SECONDS.observe(duration)
        metrics.observe_steps(steps)
        if state == "succeeded":
            if self._log_successes:
                log.info("run_finished", state=state, duration_ms=round(duration * 1000, 3))
        else:
            log.warning(
                "run_finished",
                state=state,
                duration_ms=round(duration * 1000, 3),
                error_code=(error or {}).get("code"),
                error=(error or {}).get("message"),
                retry_in_s=retry_in_s,
            )
        return Outcome(
            id=lease.id,
            token=lease.token,
            attempt=lease.attempt,
            state=state,
            retry_in_s=retry_in_s,
            duration_s=duration,
            steps=steps,
            output=output or None,
            error=error or None,
        )
