"""Tasks: create (one, or a batch all or nothing; validated by the CLI's code path), list, show, change,
delete, run now, pause, resume, cancel, and preview the next occurrences. An agent sees only its own
tasks (others' are 404)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from api.deps import (
    ApiState,
    CheckedRoute,
    Clock,
    Cursor,
    Db,
    IdempotencyKey,
    Limit,
    Reads,
    Registry,
    State,
    TasksRead,
    TasksWrite,
)
from api.errors import responses
from api.idempotent import remember, replayed
from api.responses import json_body
from api.schemas import (
    RunNow,
    RunPublic,
    TaskBatch,
    TaskBatchCreated,
    TaskCreate,
    TaskPage,
    TaskPatch,
    TaskPreview,
    TaskPublic,
    Text,
)
from scheduler import task_document
from scheduler.expand import preview_within_budget
from store import audit
from store import runs as store_runs
from store import tasks as store_tasks
from store.domain import PREVIEW_MAX_COUNT, ScheduleKind, TaskStatus

__all__ = ["router"]

router = APIRouter(prefix="/tasks", tags=["tasks"], route_class=CheckedRoute)

_READ = responses(401, 403, 404, 422, 429, 503)
_LIST = responses(400, 401, 403, 422, 429, 503)
_WRITE = responses(400, 401, 403, 404, 409, 413, 415, 422, 429, 503)


@router.post("", status_code=201, response_model=TaskPublic, responses=_WRITE)
def create_task(
    body: TaskCreate,
    caller: TasksWrite,
    state: State,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Create a task. The whole document is checked first (fields, schedule, pipeline, tool scopes);
    nothing is stored if anything is wrong."""
    # The hottest write: the database, the tool registry and the clock come from one dependency (the
    # app's state) rather than three (Db, Registry, Clock), each of which FastAPI resolves per request.
    doc, now = body.root, state.clock()
    with state.db.tx() as conn:
        if replay := replayed(conn, caller, idempotency_key, "POST /tasks", doc, location="/tasks"):
            return replay
        values = task_document.validate(doc, state.registry, now=now, scopes=caller.tool_scopes)
        entry = audit.Entry(caller, "task.create", "task", {"title": values["title"]})
        row = store_tasks.create(conn, values, caller.agent_id, entry)
        out = task_document.public(row, now=now)
        remember(conn, caller, idempotency_key, 201, out)
    return json_body(out, 201, {"Location": f"/tasks/{out['id']}"})


@router.post("/batch", status_code=201, response_model=TaskBatchCreated, responses=_WRITE)
def create_tasks(
    body: TaskBatch,
    caller: TasksWrite,
    db: Db,
    registry: Registry,
    now: Clock,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Create many tasks at once: all of them, or none. Every document is checked as POST /tasks
    checks one; if any is invalid the answer is 422 INVALID_BATCH whose `details.errors` names each
    invalid document by its index (with its code, message and field path), and nothing is stored."""
    docs = [task.root for task in body.tasks]
    # Checked before the transaction: a thousand documents take a while, holding no connection.
    values = task_document.validate_many(docs, registry, now=now, scopes=caller.tool_scopes)
    with db.tx() as conn:
        if replay := replayed(conn, caller, idempotency_key, "POST /tasks/batch", docs):
            return replay
        ids = store_tasks.create_many(conn, values, caller.agent_id)
        out = {"ids": [str(i) for i in ids]}
        # One entry for the batch, naming every task it created.
        audit.record(conn, caller, "task.create_batch", "task", ids[0], {"count": len(ids), **out})
        remember(conn, caller, idempotency_key, 201, out)
    return json_body(out, 201)


@router.get("", response_model=TaskPage, responses=_LIST)
async def list_tasks(
    caller: TasksRead,
    reads: Reads,
    now: Clock,
    status: TaskStatus | None = None,
    schedule_kind: ScheduleKind | None = None,
    text: Annotated[
        Text | None, Query(max_length=200, description="Substring of the title or description.")
    ] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Any:
    """The caller's tasks (every agent's for admins), newest first."""
    page = await reads.run(
        store_tasks.list_page,
        agent_id=caller.owner,
        status=status,
        schedule_kind=schedule_kind,
        text=text,
        cursor=cursor,
        limit=limit,
    )
    return json_body(
        {"items": [task_document.public(r, now=now) for r in page.items], "next_cursor": page.next_cursor}
    )


@router.get("/{task_id}", response_model=TaskPublic, responses=_READ)
async def get_task(task_id: UUID, caller: TasksRead, request: Request) -> Any:
    """One task; `next_fire_at` is its next occurrence."""
    # The hottest read: the read pool and the clock straight from the app's state (what Reads and
    # Clock give), since each dependency costs FastAPI about a quarter of the read itself.
    state: ApiState = request.app.state.ordo
    task = await state.reads.fetch(store_tasks.get_async, task_id, caller.owner)
    return json_body(task_document.public(task, now=state.clock()))


@router.patch("/{task_id}", response_model=TaskPublic, responses=_WRITE)
def update_task(
    task_id: UUID, body: TaskPatch, caller: TasksWrite, db: Db, registry: Registry, now: Clock
) -> Any:
    """Change fields of a task. The merged document is validated as a whole; a changed schedule is
    re-planned from now and its queued occurrences are withdrawn."""
    with db.tx() as conn:
        row = task_document.edit(
            conn, task_id, body.root, registry, now=now, agent_id=caller.owner, scopes=caller.tool_scopes
        )
        audit.record(conn, caller, "task.update", "task", task_id, {"fields": sorted(body.root)})
    return json_body(task_document.public(row, now=now))


@router.delete("/{task_id}", status_code=204, response_class=Response, responses=_WRITE)
def delete_task(task_id: UUID, caller: TasksWrite, db: Db) -> Response:
    """Delete a task with its runs and their history."""
    with db.tx() as conn:
        store_tasks.delete(conn, task_id, agent_id=caller.owner)
        audit.record(conn, caller, "task.delete", "task", task_id)
    return Response(status_code=204)


@router.post("/{task_id}/run_now", status_code=202, response_model=RunPublic, responses=_WRITE)
def run_now(
    task_id: UUID,
    caller: TasksWrite,
    db: Db,
    body: Annotated[RunNow | None, Body()] = None,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Queue one run of the task now; an idle worker starts it at once. Returns the run (poll
    GET /runs/{id}). A paused task may be run by hand; a canceled one may not."""
    params = body.params if body is not None else None
    operation = f"POST /tasks/{task_id}/run_now"
    with db.tx() as conn:
        if replay := replayed(conn, caller, idempotency_key, operation, {"params": params}, location="/runs"):
            return replay
        (run_id,) = store_runs.enqueue(conn, task_id, agent_id=caller.owner, params=params)
        out = store_runs.get(conn, run_id)
        out.pop("attempts", None)
        audit.record(conn, caller, "task.run_now", "task", task_id, {"run_id": run_id})
        remember(conn, caller, idempotency_key, 202, out)
    return json_body(out, 202, {"Location": f"/runs/{run_id}"})


@router.post("/{task_id}/pause", response_model=TaskPublic, responses=_WRITE)
def pause_task(task_id: UUID, caller: TasksWrite, db: Db, now: Clock) -> Any:
    """Stop scheduling; queued occurrences are withdrawn, running runs finish."""
    with db.tx() as conn:
        row = store_tasks.pause(conn, task_id, agent_id=caller.owner)
        audit.record(conn, caller, "task.pause", "task", task_id)
    return json_body(task_document.public(row, now=now))


@router.post("/{task_id}/resume", response_model=TaskPublic, responses=_WRITE)
def resume_task(task_id: UUID, caller: TasksWrite, db: Db, now: Clock) -> Any:
    """Resume from now; occurrences missed while paused do not run."""
    with db.tx() as conn:
        row = store_tasks.resume(conn, task_id, now=now, agent_id=caller.owner)
        audit.record(conn, caller, "task.resume", "task", task_id)
    return json_body(task_document.public(row, now=now))


@router.post("/{task_id}/cancel", response_model=TaskPublic, responses=_WRITE)
def cancel_task(task_id: UUID, caller: TasksWrite, db: Db, now: Clock) -> Any:
    """Cancel for good: nothing more is scheduled, waiting runs are canceled, running runs stop at
    their next step boundary."""
    with db.tx() as conn:
        row = store_tasks.cancel(conn, task_id, agent_id=caller.owner)
        audit.record(conn, caller, "task.cancel", "task", task_id)
    return json_body(task_document.public(row, now=now))


@router.get("/{task_id}/preview", response_model=TaskPreview, responses=_READ)
async def preview_task(
    task_id: UUID,
    caller: TasksRead,
    reads: Reads,
    now: Clock,
    count: Annotated[int, Query(ge=1, le=PREVIEW_MAX_COUNT, description="How many occurrences.")] = 10,
) -> Any:
    """The task's next occurrences from now, in the task's zone with its offset (event and manual
    tasks have none); `complete: false` with the reason in `cut_short` when its rule is too costly to
    expand them all within about a second."""
    task = await reads.run(store_tasks.get, task_id, caller.owner)
    # Up to 1,000 occurrences of a rule can take a while (up to the preview budget): off the event loop.
    result = await run_in_threadpool(
        preview_within_budget,
        task["schedule_kind"],
        task["schedule_expr"],
        task["timezone"],
        count=count,
        now=now,
    )
    return json_body({"task_id": str(task["id"]), **result.as_json()})
