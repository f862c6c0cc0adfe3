"""Runs: enqueue by hand or event; list history and what comes next; show with every attempt; cancel,
retry, prune.

A pending run is a due_work row, a run that ended is the final task_run row of its attempts; both
carry the same run id. A queued row whose run_at is still ahead is an occurrence the scheduler wrote
ahead: it is shown in state `scheduled` and listed by `list_upcoming`, not in the history.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from sqlalchemy import Connection

from store import keyset
from store.domain import iso_utc
from store.errors import Conflict, InvalidInput, NotFound
from store.keyset import Page
from store.sql import fetch_all, load_queries
from store.tasks import get as get_task
from store.tasks import get_async as get_task_async

__all__ = [
    "cancel",
    "enqueue",
    "get",
    "list_page",
    "list_page_json",
    "list_page_json_async",
    "list_upcoming",
    "prune",
    "public",
    "retry",
]

Q = load_queries("store", "runs.sql")

# A run listing shows outputs up to this size as JSON; larger ones as {"truncated": true, "bytes": N}.
LISTING_OUTPUT_MAX_BYTES = 16 * 1024


def enqueue(
    conn: Connection,
    task_id: UUID | str,
    *,
    agent_id: UUID | None = None,
    params: Mapping[str, Any] | None = None,
    n: int = 1,
    origin: str = "manual",
    event_id: UUID | None = None,
) -> list[int]:
    """Queue `n` runs of a task now. A canceled task refuses; a paused one may still be run by hand."""
    task = get_task(conn, task_id, agent_id)
    if task["status"] == "canceled":
        raise Conflict(f"task {task_id} is canceled; it cannot run")
    if params is not None and not isinstance(params, Mapping):
        raise InvalidInput("params must be an object", details={"path": "params"})
    ids = (
        conn.execute(
            Q["enqueue_manual"],
            {
                "task_id": task["id"],
                "n": n,
                "origin": origin,
                "params": json.dumps(params) if params else None,
                "event_id": event_id,
            },
        )
        .scalars()
        .all()
    )
    return list(ids)


def list_page(conn: Connection, **filters: Any) -> Page:
    """History newest first, as dicts (see `list_page_json` for the filters)."""
    page = list_page_json(conn, **filters)
    return Page([json.loads(doc) for doc in page.items], page.next_cursor)


def list_page_json(
    conn: Connection, *, agent_id: UUID | None = None, task_id: UUID | str | None = None, **filters: Any
) -> Page:
    """History: runs that have run or are due now, newest scheduled first, each as its JSON text (the
    shape of `public`), ready to send. `next_cursor` continues after the last run of this page. The
    other filters are `_history_params`'s."""
    params, limit = _history_params(**filters)
    if task_id is not None:
        task_id = get_task(conn, task_id, agent_id)["id"]
    rows = conn.execute(Q["list_runs"], {**params, "agent_id": agent_id, "task_id": task_id}).mappings()
    return _history_page(rows.all(), limit)


async def list_page_json_async(
    conn: AsyncConnection[Any],
    *,
    agent_id: UUID | None = None,
    task_id: UUID | str | None = None,
    **filters: Any,
) -> Page:
    """`list_page_json` on a psycopg async connection (the API's GET /runs): the same statements and
    answer."""
    params, limit = _history_params(**filters)
    if task_id is not None:
        task_id = (await get_task_async(conn, task_id, agent_id))["id"]
    # A page with filters is planned for them: the plan PostgreSQL keeps for the prepared statement
    # serves pages without (each filter is an `:x IS NULL OR ...` condition in it), and it walked the
    # whole history for `state=dead` instead of task_run_dead_idx (70 ms against 17 ms at 300,000
    # runs). Planning costs about a millisecond.
    filtered = task_id is not None or any(params[name] is not None for name in _FILTERS)
    params |= {"agent_id": agent_id, "task_id": task_id}
    rows = await fetch_all(conn, Q["list_runs"], params, prepare=False if filtered else None)
    return _history_page(rows, limit)


_FILTERS = ("states", "worker_id", "since", "until")


def _history_params(
    *,
    states: Sequence[str] | None = None,
    worker_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
    now: datetime | None = None,
) -> tuple[dict[str, Any], int]:
    """The history statement's parameters for these filters (besides owner and task), and the page size."""
    after_at, after_id = keyset.decode(cursor, datetime, int) if cursor else (None, None)
    params = {
        "states": list(states) if states else None,
        "worker_id": worker_id,
        "since": since,
        "until": until,
        "after_at": after_at,
        "after_id": after_id,
        "limit": limit + 1,
        "now": now,
        "output_max": LISTING_OUTPUT_MAX_BYTES,
    }
    return params, limit


def _history_page(rows: Sequence[Mapping[str, Any]], limit: int) -> Page:
    page = keyset.page(rows, limit, lambda row: (row["scheduled_for"], row["run_id"]))
    return Page([row["doc"] for row in page.items], page.next_cursor)


def list_upcoming(
    conn: Connection,
    *,
    agent_id: UUID | None = None,
    task_id: UUID | str | None = None,
    cursor: str | None = None,
    limit: int = 50,
    now: datetime | None = None,
) -> Page:
    """Occurrences written ahead whose time has not come (state `scheduled`), soonest first."""
    after_at, after_id = keyset.decode(cursor, datetime, int) if cursor else (None, None)
    if task_id is not None:
        task_id = get_task(conn, task_id, agent_id)["id"]
    rows = (
        conn.execute(
            Q["list_upcoming"],
            {
                "agent_id": agent_id,
                "task_id": task_id,
                "after_at": after_at,
                "after_id": after_id,
                "limit": limit + 1,
                "now": now,
            },
        )
        .mappings()
        .all()
    )
    page = keyset.page(rows, limit, lambda row: (row["scheduled_for"], row["run_id"]))
    return Page([public(row) for row in page.items], page.next_cursor)


def get(conn: Connection, run_id: int | str, *, agent_id: UUID | None = None) -> dict[str, Any]:
    """A run with every attempt (steps, timing, output or error)."""
    rid = _run_id(run_id)
    params = {"id": rid, "agent_id": agent_id}
    row = conn.execute(Q["get_pending_run"], params).mappings().one_or_none()
    if row is None:
        row = conn.execute(Q["get_ended_run"], params).mappings().one_or_none()
    if row is None:
        raise NotFound(f"run {run_id} not found", details={"run_id": str(run_id)})
    attempts = conn.execute(Q["attempts"], {"run_id": rid}).mappings().all()
    current = next((a for a in attempts if a["attempt"] == row["attempt"]), None)
    out = public(
        {
            **row,
            "steps": current["steps"] if current else None,
            "output": current["output"] if current else None,
        }
    )
    out["attempts"] = [
        {
            "attempt": a["attempt"],
            "state": a["state"],
            "worker_id": a["worker_id"],
            "started_at": iso_utc(a["started_at"]),
            "finished_at": iso_utc(a["finished_at"]),
            "duration_ms": (
                round((a["finished_at"] - a["started_at"]).total_seconds() * 1000, 3)
                if a["started_at"]
                else None
            ),
            "steps": a["steps"],
            "output": a["output"],
            "error": a["error"],
        }
        for a in attempts
    ]
    return out


def cancel(conn: Connection, run_id: int | str, *, agent_id: UUID | None = None) -> dict[str, Any]:
    """Withdraw a waiting run at once (an occurrence written ahead is then not run); ask a running one
    to stop at its next step boundary."""
    run = get(conn, run_id, agent_id=agent_id)
    if run["state"] not in ("scheduled", "queued", "failed", "running"):
        raise Conflict(
            f"run {run_id} is {run['state']}; only a scheduled, waiting or running run can be canceled"
        )
    if run["state"] == "running":
        conn.execute(Q["request_cancel"], {"id": run["id"]})
    else:
        conn.execute(Q["cancel_waiting_run"], {"id": run["id"], "message": "canceled by request"})
    return get(conn, run_id, agent_id=agent_id)


def retry(conn: Connection, run_id: int | str, *, agent_id: UUID | None = None) -> dict[str, Any]:
    """Retry a run now: a failed run waiting for its backoff becomes due at once; a dead run gets one
    more attempt under the same run id (its last attempt is then recorded as failed, not dead)."""
    run = get(conn, run_id, agent_id=agent_id)
    if run["state"] not in ("failed", "dead"):
        raise Conflict(f"run {run_id} is {run['state']}; only a failed or dead run can be retried")
    task = get_task(conn, run["task_id"])
    if task["status"] == "canceled":
        raise Conflict(f"task {task['id']} is canceled; its runs cannot be retried")
    statement = Q["retry_now"] if run["state"] == "failed" else Q["reopen_dead"]
    if conn.execute(statement, {"id": run["id"]}).one_or_none() is None:
        # The run moved on between the read and the write (a worker took it, another retry won).
        raise Conflict(f"run {run_id} changed while it was being retried; look at it again")
    return get(conn, run_id, agent_id=agent_id)


def prune(conn: Connection, cutoff: datetime, batch: int = 5000) -> int:
    return len(conn.execute(Q["prune_finished"], {"cutoff": cutoff, "n": batch}).all())


def public(row: Mapping[str, Any]) -> dict[str, Any]:
    """A run as JSON: state, timing, the current attempt's steps and output, the last error."""
    return {
        "id": row["run_id"],
        "task_id": str(row["task_id"]),
        "task_title": row.get("task_title"),
        "state": row["state"],
        "attempt": row["attempt"],
        "max_attempts": row["max_attempts"],
        "origin": row["origin"],
        "priority": row["priority"],
        "scheduled_for": iso_utc(row["scheduled_for"]),
        "run_at": iso_utc(row["run_at"]),
        "created_at": iso_utc(row["created_at"]),
        "started_at": iso_utc(row["started_at"]),
        "finished_at": iso_utc(row["finished_at"]),
        "worker_id": row["worker_id"],
        "event_id": str(row["event_id"]) if row["event_id"] else None,
        "cancel_requested": row["cancel_requested"],
        "error": row["error"],
        "steps": row.get("steps") or [],
        "output": row.get("output"),
    }


def _run_id(value: int | str) -> int:
    try:
        rid = int(value)
    except (TypeError, ValueError):
        raise NotFound(
            f"run {value} not found (run ids are integers)", details={"run_id": str(value)}
        ) from None
    if not 0 < rid < 2**63:
        raise NotFound(f"run {value} not found", details={"run_id": str(value)})
    return rid
