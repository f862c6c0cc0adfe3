"""Runs: list (newest first, stable cursor), show with every attempt's steps, cancel."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Path, Query, Response
from pydantic import AwareDatetime
from pydantic_core import to_json

from api.deps import Db, Reads, RunsRead, TasksWrite
from api.errors import responses
from api.responses import json_body
from api.schemas import RunDetail, RunPage, Text
from store import audit
from store import runs as store_runs

__all__ = ["router"]

router = APIRouter(prefix="/runs", tags=["runs"])

_MAX_ID = 2**63 - 1
RunId = Annotated[int, Path(ge=1, le=_MAX_ID, description="Run id.")]
State = Literal["queued", "running", "succeeded", "failed", "dead", "canceled", "skipped"]


@router.get("", response_model=RunPage, responses=responses(401, 403, 404, 422, 429, 503))
async def list_runs(
    caller: RunsRead,
    reads: Reads,
    task_id: Annotated[UUID | None, Query(description="Only this task's runs.")] = None,
    state: Annotated[
        list[State] | None, Query(description="Only runs in these states (repeat the parameter).")
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
    cursor: Annotated[
        str | None, Query(pattern=r"^[1-9][0-9]{0,17}$", description="next_cursor of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Any:
    """The caller's runs (every agent's for admins), newest first. Runs created while you page appear
    only before the first page: pages never skip or repeat a run."""
    page = await reads.run(
        store_runs.list_page_json,
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


@router.get("/{run_id}", response_model=RunDetail, responses=responses(401, 403, 404, 422, 429, 503))
async def get_run(run_id: RunId, caller: RunsRead, reads: Reads) -> Any:
    """A run with every attempt: each step's state, timing, output or error."""
    run = await reads.run(store_runs.get, run_id, agent_id=caller.owner)
    return json_body(run)


@router.post(
    "/{run_id}/cancel", response_model=RunDetail, responses=responses(401, 403, 404, 409, 422, 429, 503)
)
def cancel_run(run_id: RunId, caller: TasksWrite, db: Db) -> Any:
    """Cancel a run: a waiting one is withdrawn now; a running one stops at its next step boundary
    (`cancel_requested` is true until the worker records it as canceled)."""
    with db.tx() as conn:
        run = store_runs.cancel(conn, run_id, agent_id=caller.owner)
        audit.record(
            conn, caller, "run.cancel", "run", run_id, {"task_id": run["task_id"], "state": run["state"]}
        )
    return json_body(run)
