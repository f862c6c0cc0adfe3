"""What a run needs besides its queue row: its task's compiled definition (cached by task version)
and the event that triggered it."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from engine import Pipeline, ToolRegistry, compile_pipeline, is_async_capable
from store.domain import iso_utc
from store.errors import OrdoError
from store.sql import load_queries
from workers.retry import RetryPolicy

__all__ = ["TaskDef", "TaskDefinitions", "fetch_events"]

Q = load_queries("workers", "queries.sql")


@dataclass(frozen=True)
class TaskDef:
    version: int
    status: str
    agent_id: uuid.UUID
    pipeline: Pipeline | None  # None: the payload no longer compiles (compile_error says why)
    compile_error: dict[str, Any] | None
    context_task: dict[str, Any]  # `task` in templates
    timeout_s: float
    policy: RetryPolicy
    scopes: frozenset[str]  # what the owner must hold for the pipeline's tools

    @property
    def inline(self) -> bool:
        """The whole run finishes without blocking (every step is an inline tool)."""
        return self.pipeline is not None and self.pipeline.inline

    @property
    def on_event_loop(self) -> bool:
        """The run can be awaited on the worker's event loop (every step inline or asynchronous)."""
        return self.pipeline is not None and is_async_capable(self.pipeline)


class TaskDefinitions:
    """Compiled task definitions, cached by (id, version): a change bumps the version."""

    def __init__(self, registry: ToolRegistry) -> None:
        self.registry = registry
        self._defs: dict[uuid.UUID, TaskDef] = {}

    def __getitem__(self, task_id: uuid.UUID) -> TaskDef:
        return self._defs[task_id]

    def get(self, task_id: uuid.UUID) -> TaskDef | None:
        return self._defs.get(task_id)

    def ensure(self, conn: Connection, wanted: Mapping[uuid.UUID, int]) -> None:
        """Load and compile the tasks in `wanted` (id -> version) that are missing or stale."""
        missing = [
            tid
            for tid, version in wanted.items()
            if tid not in self._defs or self._defs[tid].version != version
        ]
        if not missing:
            return
        for row in conn.execute(Q["task_definitions"], {"ids": missing}).mappings().all():
            self._defs[row["id"]] = self._compile(row)

    def _compile(self, row: Mapping[str, Any]) -> TaskDef:
        """Never raises: a task that cannot be compiled fails its own runs, not the batch they came in."""
        pipeline, error = None, None
        try:
            pipeline = compile_pipeline(row["payload"], self.registry)
        except OrdoError as e:
            # The catalog changed since the task was accepted (a tool was removed): fail its runs clearly.
            error = {"code": e.code, "message": e.message, "retryable": False, "details": e.details}
        except Exception as e:  # a payload the checks let through but the compiler chokes on
            error = {
                "code": "TASK_INVALID",
                "message": f"the task's pipeline cannot be compiled: {type(e).__name__}: {e}",
                "retryable": False,
            }
        try:
            policy = RetryPolicy(row["backoff_base_s"], row["backoff_cap_s"], row["backoff_jitter"])
        except (TypeError, ValueError):
            policy = RetryPolicy()
        scopes = (
            frozenset(scope for step in pipeline.steps for scope in step.tool.scopes)
            if pipeline is not None
            else frozenset()
        )
        return TaskDef(
            version=row["version"],
            status=row["status"],
            agent_id=row["agent_id"],
            pipeline=pipeline,
            compile_error=error,
            context_task={
                "id": str(row["id"]),
                "title": row["title"],
                "timezone": row["timezone"],
                "agent_id": str(row["agent_id"]),
            },
            timeout_s=row["timeout_s"],
            policy=policy,
            scopes=scopes,
        )


def fetch_events(conn: Connection, ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, dict[str, Any]]:
    """The events behind event-triggered runs, as templates see them (`event`)."""
    wanted = list({i for i in ids if i is not None})
    if not wanted:
        return {}
    rows = conn.execute(Q["events_by_id"], {"ids": wanted}).mappings().all()
    return {
        r["id"]: {
            "id": str(r["id"]),
            "topic": r["topic"],
            "payload": r["payload"],
            "created_at": iso_utc(r["created_at"]),
        }
        for r in rows
    }
