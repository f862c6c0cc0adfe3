"""Tasks: the document agents and people submit, its validation, and the statements that store it.

`validate_task` is the one code path for every way a task arrives (CLI file, API body, PATCH): the
document's shape, the schedule (scheduler.expand), and the pipeline (engine.compile_pipeline). It
returns a complete row or raises a typed error; nothing is written until it succeeds.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from jsonschema import Draft202012Validator
from sqlalchemy import Connection

from engine import ToolRegistry, compile_pipeline
from engine.pipeline import format_path
from scheduler.expand import normalize_expr, parse_schedule
from store.errors import Conflict, InvalidTask, NotFound
from store.sql import load_queries

__all__ = [
    "LOCAL_AGENT_ID",
    "TASK_SCHEMA",
    "Page",
    "cancel",
    "create",
    "delete",
    "get",
    "list_page",
    "pause",
    "public",
    "resume",
    "update",
    "validate_task",
]

Q = load_queries("store", "tasks.sql")

LOCAL_AGENT_ID = UUID("00000000-0000-0000-0000-000000000001")

TASK_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Ordo task",
    "type": "object",
    "required": ["title", "schedule_kind", "payload"],
    "additionalProperties": False,
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "description": {"type": "string", "maxLength": 10000},
        "schedule_kind": {"enum": ["cron", "rrule", "once", "event", "manual"]},
        "schedule_expr": {"type": "string", "maxLength": 10000},
        "timezone": {"type": "string", "minLength": 1, "maxLength": 64},
        "payload": {"type": "object"},
        "status": {"enum": ["active", "paused"]},
        "priority": {"type": "integer", "minimum": 1, "maximum": 9},
        "max_retries": {"type": "integer", "minimum": 0, "maximum": 100},
        "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 604800},
        "backoff": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "base_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
                "cap_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 604800},
                "jitter": {"type": "number", "minimum": 0, "maximum": 1},
            },
        },
        "concurrency_key": {"type": ["string", "null"], "minLength": 1, "maxLength": 200},
        "concurrency_limit": {"type": "integer", "minimum": 1, "maximum": 10000},
        "misfire_policy": {"enum": ["run_once", "skip", "run_all"]},
        "misfire_grace_s": {"type": "integer", "minimum": 0, "maximum": 31536000},
    },
}
_VALIDATOR = Draft202012Validator(TASK_SCHEMA)

_DEFAULTS: dict[str, Any] = {
    "description": "",
    "schedule_expr": "",
    "timezone": "UTC",
    "status": "active",
    "priority": 5,
    "max_retries": 3,
    "timeout_s": 3600.0,
    "concurrency_key": None,
    "concurrency_limit": 1,
    "misfire_policy": "run_once",
    "misfire_grace_s": 3600,
}
_BACKOFF_DEFAULTS = {"base_s": 2.0, "cap_s": 600.0, "jitter": 0.2}


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


def validate_task(
    doc: Any,
    registry: ToolRegistry,
    *,
    now: datetime,
    scopes: Collection[str] | None = None,
) -> dict[str, Any]:
    """A task document → the column values to store; InvalidTask/InvalidSchedule/InvalidPipeline if not."""
    if not isinstance(doc, Mapping):
        raise InvalidTask(
            "a task must be an object with title, schedule_kind and payload", details={"path": ""}
        )
    errors = sorted(
        _VALIDATOR.iter_errors(doc), key=lambda e: (len(e.absolute_path), str(list(e.absolute_path)))
    )
    if errors:
        where = format_path(list(errors[0].absolute_path)) or "task"
        raise InvalidTask(f"{where}: {errors[0].message}", details={"path": where})
    values = {**_DEFAULTS, **{k: v for k, v in doc.items() if k != "backoff"}}
    backoff = {**_BACKOFF_DEFAULTS, **doc.get("backoff", {})}
    if backoff["cap_s"] < backoff["base_s"]:
        raise InvalidTask("backoff.cap_s must be at least backoff.base_s", details={"path": "backoff.cap_s"})
    kind = values["schedule_kind"]
    values["schedule_expr"] = normalize_expr(kind, values["schedule_expr"], values["timezone"], now=now)
    compile_pipeline(values["payload"], registry, scopes=scopes)
    values["backoff_base_s"] = float(backoff["base_s"])
    values["backoff_cap_s"] = float(backoff["cap_s"])
    values["backoff_jitter"] = float(backoff["jitter"])
    values["timeout_s"] = float(values["timeout_s"])
    values["next_fire_at"] = _next_fire(values, now) if values["status"] == "active" else None
    return values


def _next_fire(values: Mapping[str, Any], now: datetime) -> datetime | None:
    schedule = parse_schedule(values["schedule_kind"], values["schedule_expr"], values["timezone"], now=now)
    return None if schedule is None else schedule.next_at_or_after(now)


def _row_params(values: Mapping[str, Any]) -> dict[str, Any]:
    params = {k: values[k] for k in (*_DEFAULTS, "title", "schedule_kind", "next_fire_at")}
    params.update(
        payload=json.dumps(values["payload"]),
        backoff_base_s=values["backoff_base_s"],
        backoff_cap_s=values["backoff_cap_s"],
        backoff_jitter=values["backoff_jitter"],
    )
    if params["concurrency_key"] is None:
        params["concurrency_limit"] = 1
    return params


def create(conn: Connection, values: Mapping[str, Any], agent_id: UUID) -> dict[str, Any]:
    row = conn.execute(Q["insert_task"], {**_row_params(values), "agent_id": agent_id}).mappings().one()
    return dict(row)


def get(
    conn: Connection, task_id: UUID | str, agent_id: UUID | None = None, *, lock: bool = False
) -> dict[str, Any]:
    """A task visible to `agent_id` (None: any). A task of another agent is reported as not found."""
    task_uuid = _uuid(task_id)
    query = Q["get_task_for_update"] if lock else Q["get_task"]
    row = conn.execute(query, {"id": task_uuid, "agent_id": agent_id}).mappings().one_or_none()
    if row is None:
        raise NotFound(f"task {task_id} not found", details={"task_id": str(task_id)})
    return dict(row)


def update(
    conn: Connection,
    task_id: UUID | str,
    patch: Mapping[str, Any],
    registry: ToolRegistry,
    *,
    now: datetime,
    agent_id: UUID | None = None,
    scopes: Collection[str] | None = None,
) -> dict[str, Any]:
    """Merge `patch` into the task's document, validate the whole, store it, and re-plan its schedule."""
    current = get(conn, task_id, agent_id, lock=True)
    if current["status"] == "canceled":
        raise Conflict(f"task {task_id} is canceled; a canceled task cannot be changed")
    merged = {**document(current), **patch}
    if "backoff" in patch and isinstance(patch["backoff"], Mapping):
        merged["backoff"] = {**document(current)["backoff"], **patch["backoff"]}
    values = validate_task(merged, registry, now=now, scopes=scopes)
    replan = _schedule_changed(current, values) or values["status"] != "active"
    if replan:
        conn.execute(Q["withdraw_scheduled"], {"task_id": current["id"]})
    elif current["status"] == "active":
        values["next_fire_at"] = current["next_fire_at"]  # same schedule: keep the scheduler's place
    row = conn.execute(Q["update_task"], {**_row_params(values), "id": current["id"]}).mappings().one()
    return dict(row)


def _schedule_changed(current: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    return any(current[k] != values[k] for k in ("schedule_kind", "schedule_expr", "timezone"))


def pause(conn: Connection, task_id: UUID | str, *, agent_id: UUID | None = None) -> dict[str, Any]:
    """Stop expansion and withdraw occurrences not yet started; runs already running finish."""
    current = get(conn, task_id, agent_id, lock=True)
    if current["status"] == "canceled":
        raise Conflict(f"task {task_id} is canceled; it cannot be paused")
    if current["status"] == "paused":
        return current
    conn.execute(Q["withdraw_scheduled"], {"task_id": current["id"]})
    row = dict(
        conn.execute(Q["set_status"], {"id": current["id"], "status": "paused", "next_fire_at": None})
        .mappings()
        .one()
    )
    # The owner's webhooks subscribed to task.paused hear of it (nothing is written otherwise).
    from store import webhooks  # here, not at the top: store.webhooks reads Page from this module

    webhooks.announce(
        conn,
        row["agent_id"],
        "task.paused",
        {"task_id": str(row["id"]), "title": row["title"], "paused_at": row["updated_at"].isoformat()},
    )
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
    next_fire = _next_fire(current, now)
    return dict(
        conn.execute(Q["set_status"], {"id": current["id"], "status": "active", "next_fire_at": next_fire})
        .mappings()
        .one()
    )


def cancel(conn: Connection, task_id: UUID | str, *, agent_id: UUID | None = None) -> dict[str, Any]:
    """Final: no more occurrences; waiting runs are canceled; running ones stop at the next step."""
    current = get(conn, task_id, agent_id, lock=True)
    if current["status"] == "canceled":
        return current
    conn.execute(Q["withdraw_scheduled"], {"task_id": current["id"]})
    conn.execute(Q["cancel_waiting"], {"task_id": current["id"]})
    return dict(
        conn.execute(Q["set_status"], {"id": current["id"], "status": "canceled", "next_fire_at": None})
        .mappings()
        .one()
    )


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
    after_created, after_id = _decode_cursor(cursor) if cursor else (None, None)
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
    items = [dict(r) for r in rows[:limit]]
    next_cursor = _encode_cursor(items[-1]["created_at"], items[-1]["id"]) if len(rows) > limit else None
    return Page(items, next_cursor)


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


def public(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored task as JSON for people and scripts."""
    return {
        "id": str(row["id"]),
        "agent_id": str(row["agent_id"]),
        **document(row),
        "status": row["status"],
        "next_fire_at": _iso(row["next_fire_at"]),
        "version": row["version"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _uuid(value: UUID | str) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise NotFound(
            f"task {value} not found (task ids are UUIDs)", details={"task_id": str(value)}
        ) from None


def _encode_cursor(created_at: datetime, task_id: UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(task_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, task_id = json.loads(raw)
        return datetime.fromisoformat(created), UUID(task_id)
    except (ValueError, TypeError) as e:
        raise InvalidTask(
            "invalid cursor; pass the next_cursor value of a previous page", details={"path": "cursor"}
        ) from e
