"""Runs: the history (newest scheduled first), what is coming (occurrences written ahead), one run with
every attempt's steps, cancel, retry."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query, Response
from pydantic import AwareDatetime
from pydantic_core import to_json

from api.deps import CheckedRoute, Cursor, Db, Limit, Reads, RunsRead, TasksWrite
from api.errors import responses
from api.responses import json_body
from api.schemas import RunDetail, RunPage, Text
from store import audit
from store import runs as store_runs
from store.domain import HistoryState

__all__ = ["router"]

router = APIRouter(prefix="/runs", tags=["runs"], route_class=CheckedRoute)

_MAX_ID = 2**63 - 1
RunId = Annotated[int, Path(ge=1, le=_MAX_ID, description="Run id.")]
TaskFilter = Annotated[UUID | None, Query(description="Only this task's runs.")]
_LIST = responses(400, 401, 403, 404, 422, 429, 503)
_CHANGE = responses(401, 403, 404, 409, 422, 429, 503)


@router.get("", response_model=RunPage, responses=_LIST)
async def list_runs(
    caller: RunsRead,
    reads: Reads,
    task_id: TaskFilter = None,
    state: Annotated[
        list[HistoryState] | None,
        Query(
            description="Only runs in these states (repeat the parameter). Runs that are `scheduled` "
            "(written ahead, not yet due) are listed by GET /runs/upcoming."
        ),
    ] = None,
    since: Annotated[
        AwareDatetime | None, Query(description="Created at or after (ISO 8601 with offset).")
    ] = None,
    until: Annotated[
        AwareDatetime | None, Query(description="Created before (ISO 8601 with offset).")
    ] = None,
    worker_id: Annotated[
        Text | None, Query(max_length=300, description="Only runs leased by this worker.")
    ] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Any:
    """Run history: the caller's runs (every agent's for admins) that have run or are due now, newest
    scheduled first. Occurrences the scheduler wrote ahead appear here once they are due; until then
    GET /runs/upcoming lists them. Pages never repeat a run; runs that become due while you page appear
    before the first page."""
    page = await reads.fetch(
        store_runs.list_page_json_async,
        agent_id=caller.owner,
        task_id=task_id,
        states=state,
        worker_id=worker_id,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )
    # The runs arrive as JSON texts built by the database: spliced, not parsed and re-serialised.
    body = (
        b'{"items":[' + ",".join(page.items).encode() + b'],"next_cursor":' + to_json(page.next_cursor) + b"}"
    )
    return Response(body, media_type="application/json")


@router.get("/upcoming", response_model=RunPage, responses=_LIST)
async def list_upcoming(
    caller: RunsRead, reads: Reads, task_id: TaskFilter = None, cursor: Cursor = None, limit: Limit = 50
) -> Any:
    """What is coming: occurrences the scheduler has written ahead (state `scheduled`, up to
    ORDO_SCHEDULER_HORIZON_S ahead), soonest first. Each is a run with an id, so it can be canceled
    before its time. A task's later occurrences: GET /tasks/{id}/preview."""
    page = await reads.run(
        store_runs.list_upcoming, agent_id=caller.owner, task_id=task_id, cursor=cursor, limit=limit
    )
    return json_body({"items": page.items, "next_cursor": page.next_cursor})


@router.get("/{run_id}", response_model=RunDetail, responses=responses(401, 403, 404, 422, 429, 503))
async def get_run(run_id: RunId, caller: RunsRead, reads: Reads) -> Any:
    """A run with every attempt: each step's state, timing, output or error."""
    run = await reads.run(store_runs.get, run_id, agent_id=caller.owner)
    return json_body(run)


@router.post("/{run_id}/cancel", response_model=RunDetail, responses=_CHANGE)
def cancel_run(run_id: RunId, caller: TasksWrite, db: Db) -> Any:
    """Cancel a run: a scheduled or waiting one is withdrawn now (a scheduled occurrence then does not
    run); a running one stops at its next step boundary (`cancel_requested` is true until the worker
    records it as canceled)."""
    with db.tx() as conn:
        run = store_runs.cancel(conn, run_id, agent_id=caller.owner)
        audit.record(
            conn, caller, "run.cancel", "run", run_id, {"task_id": run["task_id"], "state": run["state"]}
        )
    return json_body(run)


@router.post("/{run_id}/retry", response_model=RunDetail, responses=_CHANGE)
def retry_run(run_id: RunId, caller: TasksWrite, db: Db) -> Any:
    """Retry a run now. A `failed` run waiting for its backoff becomes due at once. A `dead` run gets one
    more attempt under the same id: its last attempt is then recorded as `failed` (it is being
    retried), and if the new attempt fails too the run is `dead` again. 409 for any other state."""
    with db.tx() as conn:
        run = store_runs.retry(conn, run_id, agent_id=caller.owner)
        audit.record(conn, caller, "run.retry", "run", run_id, {"task_id": run["task_id"]})
    return json_body(run)
