"""The task document: what `ordo task add` reads and `POST /tasks` receives, its JSON Schema and
defaults, its validation, and the JSON a stored task is shown as.

`validate` is the one code path for every way a task arrives (CLI file, API body, PATCH, `ordo task
edit`): the document's shape (`TASK_SCHEMA`), the schedule (scheduler.expand) and the pipeline
(engine.compile_pipeline). It returns the column values to store or raises a typed error; nothing is
written until it succeeds. It sits above store/, which stores what it is given and imports nothing
above itself; the API and the CLI both call it.

`public` shows a stored task. Its `next_fire_at` is the schedule's next occurrence at or after now,
worked out from the schedule itself; the place the scheduler keeps (`task_expansion.expand_from`) is only
where its expansion resumes, which is after the occurrences it has already written ahead.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from uuid import UUID

import orjson
from jsonschema import Draft202012Validator
from sqlalchemy import Connection

from engine import ToolRegistry, compile_pipeline
from engine.pipeline import format_path
from engine.registry import fast_validator
from scheduler.describe import describe
from scheduler.expand import (
    PREVIEW_BUDGET_S,
    Budget,
    Schedule,
    ScheduleTooCostly,
    normalize_expr,
    parse_schedule,
)
from scheduler.expand.budget import COSTLY_BECAUSE
from store import tasks as store_tasks
from store.domain import (
    DEFAULT_BACKOFF,
    MISFIRE_POLICIES,
    SCHEDULE_KINDS,
    TASK_DEFAULTS,
    TIME_BASED_KINDS,
    iso_utc,
)
from store.errors import InvalidBatch, InvalidSchedule, InvalidTask, OrdoError

__all__ = [
    "BATCH_MAX",
    "TASK_SCHEMA",
    "edit",
    "merge",
    "next_occurrence",
    "public",
    "validate",
    "validate_many",
]

# Tasks in one POST /tasks/batch request (stored in one transaction, all or nothing).
BATCH_MAX = 1000

TASK_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Ordo task",
    "type": "object",
    "required": ["title", "schedule_kind", "payload"],
    "additionalProperties": False,
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "description": {"type": "string", "maxLength": 10000},
        "schedule_kind": {"enum": list(SCHEDULE_KINDS)},
        "schedule_expr": {"type": "string", "maxLength": 10000},
        "timezone": {"type": "string", "minLength": 1, "maxLength": 64},
        "payload": {"type": "object"},
        # A task is created active or paused; canceling is an action (POST /tasks/{id}/cancel).
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
        "misfire_policy": {"enum": list(MISFIRE_POLICIES)},
        "misfire_grace_s": {"type": "integer", "minimum": 0, "maximum": 31536000},
    },
}
# Every optional field says what leaving it out means (documentation: the OpenAPI document and
# `ordo task add --help` read the schema).
for _name, _default in TASK_DEFAULTS.items():
    TASK_SCHEMA["properties"][_name]["default"] = _default
for _name, _default in DEFAULT_BACKOFF.items():
    TASK_SCHEMA["properties"]["backoff"]["properties"][_name]["default"] = _default
_VALIDATOR = Draft202012Validator(TASK_SCHEMA)
# Answers valid/invalid far faster (a batch of 100,000 documents spent most of its time in the
# pure-Python validator); the reference validator above is asked only to say what is wrong.
_FAST_VALIDATOR = fast_validator(TASK_SCHEMA, formats=False)


def validate(
    doc: Any,
    registry: ToolRegistry,
    *,
    now: datetime,
    scopes: Collection[str] | None = None,
    checked: _Checked | None = None,
) -> dict[str, Any]:
    """A task document → the column values to store; InvalidTask/InvalidSchedule/InvalidPipeline if
    not. `scopes`: the owner's scopes, checked against the tools the pipeline uses (None: any tool).
    `checked`: what earlier documents of one batch (same registry, scopes and now) already passed."""
    if not isinstance(doc, Mapping):
        raise InvalidTask(
            "a task must be an object with title, schedule_kind and payload", details={"path": ""}
        )
    errors = (
        []
        if _valid_shape(doc)
        else sorted(
            _VALIDATOR.iter_errors(doc), key=lambda e: (len(e.absolute_path), str(list(e.absolute_path)))
        )
    )
    if errors:
        where = format_path(list(errors[0].absolute_path)) or "task"
        raise InvalidTask(f"{where}: {_schema_message(errors[0])}", details={"path": where})
    values = {**TASK_DEFAULTS, **{k: v for k, v in doc.items() if k != "backoff"}}
    backoff = {**DEFAULT_BACKOFF, **doc.get("backoff", {})}
    if backoff["cap_s"] < backoff["base_s"]:
        raise InvalidTask("backoff.cap_s must be at least backoff.base_s", details={"path": "backoff.cap_s"})
    kind = values["schedule_kind"]
    if checked is None:
        values["schedule_expr"] = _checked_schedule(kind, values["schedule_expr"], values["timezone"], now)
        compile_pipeline(values["payload"], registry, scopes=scopes)
    else:
        values["schedule_expr"] = checked.schedule(kind, values["schedule_expr"], values["timezone"], now)
        checked.pipeline(values["payload"], registry, scopes)
    values["backoff_base_s"] = float(backoff["base_s"])
    values["backoff_cap_s"] = float(backoff["cap_s"])
    values["backoff_jitter"] = float(backoff["jitter"])
    values["timeout_s"] = float(values["timeout_s"])
    if values["concurrency_key"] is None:
        values["concurrency_limit"] = 1
    # Where the scheduler starts expanding: now, for an active task with a calendar.
    values["expand_from"] = now if values["status"] == "active" and kind in TIME_BASED_KINDS else None
    return values


def _valid_shape(doc: Mapping[str, Any]) -> bool:
    try:
        return bool(_FAST_VALIDATOR.is_valid(doc))
    except ValueError:  # a value JSON has no type for (a YAML date): the reference validator says which
        return False


def _checked_schedule(kind: str, expr: str, timezone: str, now: datetime) -> str:
    """The expression normalised (normalize_expr), once its next occurrence is found affordably."""
    normal = normalize_expr(kind, expr, timezone, now=now)
    _check_affordable(kind, normal, timezone, now)
    return normal


def _check_affordable(kind: str, expr: str, timezone: str, now: datetime) -> None:
    """A rule whose next occurrence is not found within a preview's budget is refused (422
    SCHEDULE_TOO_COSTLY): every reader of the task (its next_fire_at, its preview) and the scheduler
    would pay that cost again and again."""
    schedule = parse_schedule(kind, expr, timezone, now=now)
    if schedule is None:
        return
    try:
        schedule.next_at_or_after(now, Budget(PREVIEW_BUDGET_S))
    except ScheduleTooCostly:
        raise ScheduleTooCostly(
            f"the schedule's next occurrence was not found within {PREVIEW_BUDGET_S:g} s: {COSTLY_BECAUSE}",
            resume=None,
            details={"path": "schedule_expr", "budget_s": PREVIEW_BUDGET_S},
        ) from None


class _Checked:
    """Schedules and pipelines one batch has already checked. Documents of a batch mostly share their
    pipeline (and often their schedule): each distinct one is compiled (parsed) once, not once per
    document. A failure is not remembered, so each document that repeats it reports it."""

    def __init__(self) -> None:
        self._pipelines: set[bytes] = set()
        self._schedules: dict[tuple[str, str, str], str] = {}

    def pipeline(self, payload: Any, registry: ToolRegistry, scopes: Collection[str] | None) -> None:
        try:
            key = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
        except TypeError:  # not JSON: compile_pipeline says what is wrong
            key = None
        if key is None or key not in self._pipelines:
            compile_pipeline(payload, registry, scopes=scopes)
            if key is not None:
                self._pipelines.add(key)

    def schedule(self, kind: str, expr: str, timezone: str, now: datetime) -> str:
        key = (kind, expr, timezone)
        normal = self._schedules.get(key)
        if normal is None:
            normal = self._schedules[key] = _checked_schedule(kind, expr, timezone, now)
        return normal


def validate_many(
    docs: Sequence[Any],
    registry: ToolRegistry,
    *,
    now: datetime,
    scopes: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """Every document of a batch validated as `validate` does (identical pipelines and schedules
    checked once), or InvalidBatch naming every invalid document by its index; nothing is stored
    unless all are valid."""
    checked = _Checked()
    values: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for index, doc in enumerate(docs):
        try:
            values.append(validate(doc, registry, now=now, scopes=scopes, checked=checked))
        except OrdoError as e:
            if not 400 <= e.status < 500:
                raise
            # Anything wrong with the document itself, a missing tool scope (403 alone) included.
            errors.append({"index": index, "code": e.code, "message": e.message, **_path(e)})
    if errors:
        first = errors[0]
        raise InvalidBatch(
            f"{len(errors)} of {len(docs)} tasks are invalid, nothing was stored; "
            f"tasks[{first['index']}]: {first['message']}",
            details={"invalid": len(errors), "errors": errors},
        )
    return values


def _path(error: OrdoError) -> dict[str, Any]:
    path = error.details.get("path")
    return {"path": path} if isinstance(path, str) else {}


def _schema_message(error: Any) -> str:
    # jsonschema's messages quote the offending value; say what is wrong without echoing it.
    schema, value = error.schema, error.instance
    match error.validator:
        case "maxLength":
            return f"longer than {schema['maxLength']} characters ({len(value)})"
        case "minLength":
            return f"shorter than {schema['minLength']} character(s)"
        case "enum":
            return f"must be one of {', '.join(map(str, schema['enum']))}"
        case "type":
            expected = schema["type"] if isinstance(schema["type"], str) else " or ".join(schema["type"])
            return f"must be of type {expected}, not {type(value).__name__}"
        case "maximum" | "exclusiveMaximum" | "minimum" | "exclusiveMinimum":
            return f"{error.message.split(' is ', 1)[-1]} (got {value!r})"[:200]
        case "additionalProperties":
            unknown = sorted(set(value) - set(schema.get("properties", {})))
            return (
                f"unknown field(s) {', '.join(repr(u[:50]) for u in unknown[:5])}; known fields: "
                + ", ".join(schema.get("properties", {}))
            )
    return str(error.message)


def merge(current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """The document a PATCH asks for: fields in `patch` replace the stored task's (`payload` whole),
    `backoff` is merged field by field."""
    stored = store_tasks.document(current)
    merged = {**stored, **patch}
    if isinstance(patch.get("backoff"), Mapping):
        merged["backoff"] = {**stored["backoff"], **patch["backoff"]}
    return merged


def edit(
    conn: Connection,
    task_id: UUID | str,
    patch: Mapping[str, Any],
    registry: ToolRegistry,
    *,
    now: datetime,
    agent_id: UUID | None = None,
    scopes: Collection[str] | None = None,
) -> dict[str, Any]:
    """Merge `patch` into a task, validate the whole, store it, and re-plan its schedule if it changed
    (PATCH /tasks/{id}, `ordo task edit`)."""
    current = store_tasks.get(conn, task_id, agent_id, lock=True)
    store_tasks.check_editable(current)
    values = validate(merge(current, patch), registry, now=now, scopes=scopes)
    return store_tasks.update(conn, current, values)


def public(row: Mapping[str, Any], *, now: datetime) -> dict[str, Any]:
    """A stored task as JSON for people and scripts (the API's TaskPublic, `ordo task ... --json`),
    with its schedule in words (scheduler.describe) and its next occurrence."""
    return {
        "id": str(row["id"]),
        "agent_id": str(row["agent_id"]),
        **store_tasks.document(row),
        "schedule_text": describe(row["schedule_kind"], row["schedule_expr"], row["timezone"]),
        "status": row["status"],
        "next_fire_at": iso_utc(next_occurrence(row, now=now)),
        "version": row["version"],
        "created_at": iso_utc(row["created_at"]),
        "updated_at": iso_utc(row["updated_at"]),
    }


def next_occurrence(row: Mapping[str, Any], *, now: datetime) -> datetime | None:
    """The first occurrence at or after `now` of an active task with a calendar; None otherwise
    (paused, canceled, event or manual, a schedule with nothing left, or one too costly to work it out
    within a read's budget: creation refuses those, see `_check_affordable`)."""
    if row["status"] != "active" or row["schedule_kind"] not in TIME_BASED_KINDS:
        return None
    schedule = _stored_schedule(row["schedule_kind"], row["schedule_expr"], row["timezone"])
    if schedule is None:
        return None
    try:
        return schedule.next_at_or_after(now, Budget(_NEXT_BUDGET_S))
    except ScheduleTooCostly:  # a list of tasks must not wait on one costly rule: not known in time
        return None


# What working out one task's next occurrence for a read may cost (a page lists up to 100 tasks).
_NEXT_BUDGET_S = 0.05


# A stored expression carries its own anchor (normalize_expr writes an RRULE's DTSTART), so the `now`
# that parse_schedule takes to anchor a bare rule is never read here, and one parsed schedule serves
# every task with the same (kind, expression, zone).
_NEVER_READ = datetime(2000, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=4096)
def _stored_schedule(kind: str, expr: str, timezone: str) -> Schedule | None:
    try:
        return parse_schedule(kind, expr, timezone, now=_NEVER_READ)
    except InvalidSchedule:
        return None  # accepted once, unreadable now (a zone gone from tzdata): nothing comes next
