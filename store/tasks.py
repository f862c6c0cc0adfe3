"""Tasks in the database: store, read, list, change status, delete.

What is stored here was validated above the store (scheduler.task_document.validate, called by the
API and the CLI alike); this module only reads and writes rows. `expand_from` is the scheduler's
place in a task's schedule: where its next expansion starts (None: nothing to expand). It is kept in
task_expansion, not in the task row, so task rows as read here do not have it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import orjson
from psycopg import AsyncConnection
from sqlalchemy import Connection

from store import audit, events, keyset, webhooks
from store.domain import TASK_DEFAULTS, TIME_BASED_KINDS, iso_utc
from store.errors import Conflict, InvalidInput, NotFound
from store.keyset import Page
from store.sql import fetch_one, load_queries

__all__ = [
    "LOCAL_AGENT_ID",
    "MIN_PREFIX",
    "cancel",
    "check_editable",
    "create",
    "create_many",
    "delete",
    "document",
    "get",
    "get_async",
    "get_many",
    "list_page",
    "pause",
    "resolve_id",
    "resume",
    "update",
]

Q = load_queries("store", "tasks.sql")

# The operator at the host (migrations/0001_init.sql): tasks added with the CLI belong to it.
LOCAL_AGENT_ID = UUID("00000000-0000-0000-0000-000000000001")

# Like git, the CLI takes a task id by a unique prefix of at least this many hex digits.
MIN_PREFIX = 4
_PREFIX = re.compile(r"^[0-9a-f-]{1,36}$")


def _columns(values: Mapping[str, Any]) -> dict[str, Any]:
    params = {k: values[k] for k in (*TASK_DEFAULTS, "title", "schedule_kind", "expand_from", "payload")}
    params.update(
        backoff_base_s=values["backoff_base_s"],
        backoff_cap_s=values["backoff_cap_s"],
        backoff_jitter=values["backoff_jitter"],
    )
    return params


def _row_params(values: Mapping[str, Any]) -> dict[str, Any]:
    return {**_columns(values), "payload": json.dumps(values["payload"])}


def _set_expansion(conn: Connection, task_id: UUID, expand_from: datetime | None) -> None:
    if expand_from is not None:
        conn.execute(Q["set_expansion"], {"task_id": task_id, "expand_from": expand_from})


def create(
    conn: Connection, values: Mapping[str, Any], agent_id: UUID, entry: audit.Entry | None = None
) -> dict[str, Any]:
    """Store a validated task for `agent_id`, with its audit `entry` (if any) in the same statement."""
    params = {**_row_params(values), "agent_id": agent_id}
    return dict(audit.insert(conn, Q["insert_task"], params, entry).mappings().one())


# Rows per INSERT of create_many: one statement's JSON stays a few megabytes.
_ROWS_PER_INSERT = 5000


def create_many(conn: Connection, values: Sequence[Mapping[str, Any]], agent_id: UUID) -> list[UUID]:
    """Store validated tasks for `agent_id`, a few thousand per statement; their ids, in order. All or
    nothing with the caller's transaction."""
    ids = [uuid4() for _ in values]
    for start in range(0, len(values), _ROWS_PER_INSERT):
        rows = [
            {**_columns(v), "id": task_id}
            for v, task_id in zip(
                values[start : start + _ROWS_PER_INSERT], ids[start : start + _ROWS_PER_INSERT], strict=True
            )
        ]
        conn.execute(Q["insert_tasks"], {"rows": orjson.dumps(rows).decode(), "agent_id": agent_id})
    return ids


def get(
    conn: Connection, task_id: UUID | str, agent_id: UUID | None = None, *, lock: bool = False
) -> dict[str, Any]:
    """A task visible to `agent_id` (None: any). A task of another agent is reported as not found."""
    task_uuid = _uuid(task_id)
    query = Q["get_task_for_update"] if lock else Q["get_task"]
    row = conn.execute(query, {"id": task_uuid, "agent_id": agent_id}).mappings().one_or_none()
    return _found(row, task_id)


async def get_async(
    conn: AsyncConnection[Any], task_id: UUID | str, agent_id: UUID | None = None
) -> dict[str, Any]:
    """`get` on a psycopg async connection (the API's GET /tasks/{id}): the same statement and answer."""
    row = await fetch_one(conn, Q["get_task"], {"id": _uuid(task_id), "agent_id": agent_id})
    return _found(row, task_id)


def _found(row: Mapping[str, Any] | None, task_id: UUID | str) -> dict[str, Any]:
    if row is None:
        raise NotFound(f"task {task_id} not found", details={"task_id": str(task_id)})
    return dict(row)


def get_many(conn: Connection, ids: Sequence[UUID]) -> list[dict[str, Any]]:
    """The tasks with these ids (any owner), in the order given; missing ones are left out."""
    rows = {row["id"]: dict(row) for row in conn.execute(Q["get_tasks"], {"ids": list(ids)}).mappings()}
    return [rows[i] for i in ids if i in rows]


def resolve_id(conn: Connection, text: str, agent_id: UUID | None = None) -> UUID:
    """A task id from a full id or, like git, a unique prefix of one (at least MIN_PREFIX hex digits,
    dashes optional). A full id always means that task; an ambiguous prefix is refused with the
    candidates."""
    text = text.strip().lower()
    whole = _whole_id(text)
    if whole is not None:
        return whole
    digits = text.replace("-", "")
    if not _PREFIX.match(text) or len(digits) < MIN_PREFIX:
        raise InvalidInput(
            f"{text!r} is not a task id: give the id or at least {MIN_PREFIX} of its first hex digits",
            details={"path": "task_id"},
        )
    candidates = (
        conn.execute(Q["task_ids_by_prefix"], {"prefix": digits, "agent_id": agent_id, "n": 6})
        .scalars()
        .all()
    )
    if not candidates:
        raise NotFound(f"no task id starts with {text!r}", details={"task_id": text})
    if len(candidates) > 1:
        shown = ", ".join(str(c) for c in candidates[:5])
        raise Conflict(
            f"{text!r} is ambiguous: it starts {len(candidates) if len(candidates) < 6 else 'more than 5'} "
            f"task ids ({shown}); give more digits",
            details={"task_id": text, "candidates": [str(c) for c in candidates[:5]]},
            code="AMBIGUOUS_ID",
        )
    return candidates[0]


def _whole_id(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


def check_editable(current: Mapping[str, Any]) -> None:
    if current["status"] == "canceled":
        raise Conflict(f"task {current['id']} is canceled; a canceled task cannot be changed")


def update(conn: Connection, current: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """Replace a task's definition (`current` locked by get(..., lock=True), `values` validated). A
    changed schedule, or a task no longer active, withdraws its unstarted occurrences; an unchanged
    schedule keeps the scheduler's place."""
    replan = _schedule_changed(current, values) or values["status"] != "active"
    if replan:
        conn.execute(Q["withdraw_scheduled"], {"task_id": current["id"]})
    # The place moves (to values["expand_from"]) unless an active task keeps its schedule.
    move = replan or current["status"] != "active"
    if move:
        conn.execute(Q["clear_expansion"], {"task_id": current["id"]})
    row = conn.execute(Q["update_task"], {**_row_params(values), "id": current["id"]}).mappings().one()
    if move:
        _set_expansion(conn, current["id"], values["expand_from"])
    return dict(row)


def _schedule_changed(current: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    return any(current[k] != values[k] for k in ("schedule_kind", "schedule_expr", "timezone"))


def pause(
    conn: Connection,
    task_id: UUID | str,
    *,
    agent_id: UUID | None = None,
    reason: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Stop expansion and withdraw occurrences not yet started; runs already running finish.

    The owner hears of it as `task.paused` ({task_id, title, paused_at} and the `reason` fields). Paused
    by its owner (no `reason`), only the owner's webhooks subscribed to it are told (nothing is written
    otherwise). Paused by Ordo (a `reason`, e.g. a scope revoked), it is also recorded as an event, so
    the owner's tasks subscribed to task.paused run and the event log shows why."""
    current = get(conn, task_id, agent_id, lock=True)
    if current["status"] == "canceled":
        raise Conflict(f"task {task_id} is canceled; it cannot be paused")
    if current["status"] == "paused":
        return current
    conn.execute(Q["withdraw_scheduled"], {"task_id": current["id"]})
    row = _set_status(conn, current["id"], "paused")
    owner = row["agent_id"]
    payload = {
        "task_id": str(row["id"]),
        "title": row["title"],
        "paused_at": iso_utc(row["updated_at"]),
        **(reason or {}),
    }
    if reason is None:
        webhooks.announce(conn, owner, "task.paused", payload)
    else:
        events.publish(conn, owner, "task.paused", payload, subscribers_of=owner, system=True)
    return row


def resume(
    conn: Connection, task_id: UUID | str, *, now: datetime, agent_id: UUID | None = None
) -> dict[str, Any]:
    """Pick the schedule up from now: occurrences missed while paused are not run."""
    current = get(conn, task_id, agent_id, lock=True)
    if current["status"] == "canceled":
        raise Conflict(f"task {task_id} is canceled; create a new task instead of resuming it")
    if current["status"] == "active":
        return current
    row = _set_status(conn, current["id"], "active")
    _set_expansion(conn, current["id"], now if current["schedule_kind"] in TIME_BASED_KINDS else None)
    return row


def cancel(conn: Connection, task_id: UUID | str, *, agent_id: UUID | None = None) -> dict[str, Any]:
    """Final: no more occurrences; waiting runs are canceled; running ones stop at the next step."""
    current = get(conn, task_id, agent_id, lock=True)
    if current["status"] == "canceled":
        return current
    conn.execute(Q["withdraw_scheduled"], {"task_id": current["id"]})
    conn.execute(Q["cancel_waiting"], {"task_id": current["id"]})
    return _set_status(conn, current["id"], "canceled")


def _set_status(conn: Connection, task_id: UUID, status: str) -> dict[str, Any]:
    """Any status but active first withdraws the task's place (the foreign key on task_expansion)."""
    if status != "active":
        conn.execute(Q["clear_expansion"], {"task_id": task_id})
    return dict(conn.execute(Q["set_status"], {"id": task_id, "status": status}).mappings().one())


def delete(conn: Connection, task_id: UUID | str, *, agent_id: UUID | None = None) -> None:
    """Remove a task with its runs and history."""
    current = get(conn, task_id, agent_id, lock=True)
    conn.execute(Q["delete_task"], {"id": current["id"]})
    conn.execute(Q["delete_task_history"], {"id": current["id"]})


def list_page(
    conn: Connection,
    *,
    agent_id: UUID | None = None,
    status: str | None = None,
    schedule_kind: str | None = None,
    text: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page:
    """Tasks newest first (rows as dicts)."""
    after_created, after_id = keyset.decode(cursor, datetime, UUID) if cursor else (None, None)
    if text is not None:
        text = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = (
        conn.execute(
            Q["list_tasks"],
            {
                "agent_id": agent_id,
                "status": status,
                "schedule_kind": schedule_kind,
                "text": text,
                "after_created": after_created,
                "after_id": after_id,
                "limit": limit + 1,
            },
        )
        .mappings()
        .all()
    )
    return keyset.page([dict(r) for r in rows], limit, lambda r: (r["created_at"], r["id"]))


def document(row: Mapping[str, Any]) -> dict[str, Any]:
    """The task document (the fields a user submits) of a stored task."""
    return {
        "title": row["title"],
        "description": row["description"],
        "schedule_kind": row["schedule_kind"],
        "schedule_expr": row["schedule_expr"],
        "timezone": row["timezone"],
        "payload": row["payload"],
        "status": row["status"] if row["status"] != "canceled" else "paused",
        "priority": row["priority"],
        "max_retries": row["max_retries"],
        "timeout_s": row["timeout_s"],
        "backoff": {
            "base_s": row["backoff_base_s"],
            "cap_s": row["backoff_cap_s"],
            "jitter": row["backoff_jitter"],
        },
        "concurrency_key": row["concurrency_key"],
        "concurrency_limit": row["concurrency_limit"],
        "misfire_policy": row["misfire_policy"],
        "misfire_grace_s": row["misfire_grace_s"],
    }


def _uuid(value: UUID | str) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise NotFound(
            f"task {value} not found (task ids are UUIDs)", details={"task_id": str(value)}
        ) from None
