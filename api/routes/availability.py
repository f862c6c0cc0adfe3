"""Equipment availability: the generated shifts and day totals (JSON or CSV), what each generation
changed, previews of patterns, and `POST /schedules/generate`. Scopes `availability:read` /
`availability:write`; an agent sees its own plant's availability (admins every plant's, by id).

Reads of several statements run in one read-only snapshot: a generation commits its whole range at
once, and a reader sees the range before it or after it, never a mix.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse

from api.deps import (
    AvailabilityRead,
    AvailabilityWrite,
    CheckedRoute,
    Clock,
    Cursor,
    Db,
    IdempotencyKey,
    Registry,
)
from api.errors import responses
from api.idempotent import remember, replayed
from api.plant_schemas import (
    DAY_CSV,
    SHIFT_CSV,
    AvailabilityReport,
    ChangePage,
    ChangesSince,
    GenerateRequest,
    Generation,
    PatternPreview,
)
from api.responses import json_body
from api.schemas import RunPublic, Text
from engine.tools import plant
from engine.tools.availability import checked_preview, range_problem
from engine.tools.holiday_calendars import OBSERVED_SETTINGS
from scheduler import task_document
from store import audit
from store import plant as store_plant
from store import plant_availability as stored
from store import runs as store_runs
from store import tasks as store_tasks
from store.agents import Principal
from store.db import Database
from store.errors import InvalidPlant, NotFound, Permanent

__all__ = ["router"]

router = APIRouter(tags=["availability"], route_class=CheckedRoute)

_READ = responses(401, 403, 404, 422, 429, 503)
_MAX_JSON_CELLS = 100_000  # resources x days in one JSON answer; CSV streams any size
_MAX_REFS = 1000
_GENERATE_TITLE = "Generate availability"

ResourceIds = Annotated[
    Text | None,
    Query(
        max_length=4000,
        description="Comma-separated resource ids or codes; each stands for itself and every resource "
        "under it that requires scheduling (name an area or line for all its machines). Default: the "
        "whole plant.",
    ),
]
StartDate = Annotated[date, Query(description="First date (YYYY-MM-DD).")]
EndDate = Annotated[date, Query(description="Last date, included.")]

_CSV_NOTE = (
    "With format=csv: one row per resource and date (detail=days: "
    + ", ".join(plant.DAY_CSV_COLUMNS)
    + ") or per shift (detail=shifts: "
    + ", ".join(plant.SHIFT_CSV_COLUMNS)
    + "); times ISO 8601 in the resource's zone, hours as real hours."
)


@router.get(
    "/availability",
    response_model=AvailabilityReport,
    responses={
        **_READ,
        200: {
            "description": "JSON per resource (totals, days, optional shifts), or CSV. " + _CSV_NOTE,
            "content": {
                "text/csv": {
                    **DAY_CSV,
                    "examples": {
                        "days": {"value": DAY_CSV["example"]},
                        "shifts": {"value": SHIFT_CSV["example"]},
                    },
                }
            },
        },
    },
)
def get_availability(
    caller: AvailabilityRead,
    db: Db,
    start: StartDate,
    end: EndDate,
    resource_ids: ResourceIds = None,
    format: Annotated[Literal["json", "csv"], Query(description="json or csv.")] = "json",
    detail: Annotated[
        Literal["days", "shifts"], Query(description="days: per date; shifts: every shift row too.")
    ] = "days",
) -> Any:
    """Each resource's planned availability from `start` to `end`: per date its planned, operating,
    maintenance, holiday and other down hours, capacity-weighted hours, status and holiday, with
    totals per resource, and with detail=shifts each shift (start and end in the resource's zone,
    real hours, shift code, crew, status, capacity, exception id). Generate it first with
    schedule.generate (POST /schedules/generate)."""
    _check_range(start, end)
    refs = _refs(resource_ids)
    shifts = detail == "shifts"
    if format == "csv":
        with db.tx() as conn:
            targets = plant.report_targets(conn, refs, agent_id=caller.agent_id, owner=caller.owner)
        return StreamingResponse(
            _csv_stream(db, targets, start, end, shifts),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="availability_{start}_{end}.csv"'},
        )
    with db.tx() as conn:
        stored.snapshot(conn)
        targets = plant.report_targets(conn, refs, agent_id=caller.agent_id, owner=caller.owner)
        cells = len(targets) * ((end - start).days + 1)
        if cells > _MAX_JSON_CELLS:
            raise InvalidPlant(
                f"{len(targets)} resources x {(end - start).days + 1} days is more than one JSON answer "
                f"holds ({_MAX_JSON_CELLS:,} resource-days): ask for fewer, or use format=csv",
                details={"resource_days": cells, "limit": _MAX_JSON_CELLS},
                code="TOO_LARGE",
            )
        return json_body(plant.availability_report(conn, targets, start, end, shifts=shifts))


def _csv_stream(
    db: Database, targets: list[dict[str, Any]], start: date, end: date, shifts: bool
) -> Iterator[str]:
    with db.tx() as conn:
        stored.snapshot(conn)
        yield from plant.availability_csv(conn, targets, start, end, shifts=shifts)


@router.get("/availability/changes", response_model=ChangesSince, responses=_READ)
def availability_changes(
    caller: AvailabilityRead,
    db: Db,
    since: Annotated[
        str | None,
        Query(
            max_length=64,
            description="A generation id, or an ISO 8601 instant with offset: the generations after it. "
            "Default: only the latest generation.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Generations per answer.")] = 20,
) -> Any:
    """What generations changed, oldest first: per generation the range, rows, totals added, removed
    and changed, and the resources that changed most. Poll with `since=<next_since>`; the shift-level
    change set of a generation is at /availability/generations/{id}/changes. Generations older than
    ORDO_AVAILABILITY_HISTORY_DAYS (90) are pruned with their change sets; each plant keeps its
    latest."""
    after = _since(since)
    with db.tx() as conn:
        return json_body(plant.changes_since(conn, caller.owner, after, limit=limit))


GenerationId = Annotated[int, Path(ge=1, le=2**63 - 1, description="A generation id.")]


@router.get("/availability/generations/{generation_id}", response_model=Generation, responses=_READ)
def get_generation(generation_id: GenerationId, caller: AvailabilityRead, db: Db) -> Any:
    with db.tx() as conn:
        row = stored.get_generation(conn, generation_id, caller.owner)
        if row is None:
            raise NotFound(f"no generation {generation_id}", details={"generation_id": generation_id})
        return json_body(plant.public_generation(conn, row))


@router.get(
    "/availability/generations/{generation_id}/changes",
    response_model=ChangePage,
    responses=responses(400, 401, 403, 404, 422, 429, 503),
)
def generation_changes(
    generation_id: GenerationId,
    caller: AvailabilityRead,
    db: Db,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> Any:
    """Every shift a generation added, removed or changed (old and new values), a page at a time in
    resource and time order. A fresh generation (the range held nothing before) lists its rows that
    are still stored, all added."""
    with db.tx() as conn:
        return json_body(plant.change_page(conn, generation_id, caller.owner, cursor=cursor, limit=limit))


@router.get("/patterns/{name}/preview", response_model=PatternPreview, responses=_READ, tags=["plant"])
def preview_pattern(
    name: Annotated[Text, Path(min_length=1, max_length=100)],
    caller: AvailabilityRead,
    db: Db,
    timezone: Annotated[str, Query(max_length=100, description="IANA zone, e.g. Europe/Chisinau.")],
    start: StartDate,
    days: Annotated[int, Query(ge=1, le=plant.MAX_DAYS)] = 14,
    holidays: Annotated[
        str | None,
        Query(max_length=100, description="Public holidays of a country: CC or CC-SUB (ZA, US-CA)."),
    ] = None,
    observed: Annotated[
        Literal[OBSERVED_SETTINGS], Query(description="Which dates a moved holiday stops.")  # type: ignore[valid-type]
    ] = "both",
    anchor: Annotated[date | None, Query(description="Rotation day 1 (default: start).")] = None,
    crew: Annotated[str | None, Query(max_length=20, description="Show this crew's roster.")] = None,
) -> Any:
    """What a pattern gives, computed and not stored: the same JSON as `ordo availability preview
    --json`: `{"days": [{"date", "planned_hours", "holiday", "shifts": [{"start", "end", "shift_code",
    "crew"}]}], "total_hours"}`."""
    with db.tx() as conn:
        pattern, _ = plant.find_pattern(conn, caller.agent_id, name)
    return json_body(
        checked_preview(
            pattern, timezone, start, days, holidays=holidays, observed=observed, anchor=anchor, crew=crew
        )
    )


# -- POST /schedules/generate ---------------------------------------------------------------------


@router.post(
    "/schedules/generate",
    status_code=202,
    response_model=RunPublic,
    responses=responses(400, 401, 403, 404, 409, 413, 422, 429, 503),
)
def generate_schedules(
    body: GenerateRequest,
    caller: AvailabilityWrite,
    db: Db,
    registry: Registry,
    now: Clock,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Queue a run of schedule.generate for the caller's plant (the run of your generate task,
    created on first use): `{start, end}`, `{start, days}` or `{days}` from today, optional
    `resource_ids` and `regenerate`. Answers 202 with the run; poll GET /runs/{id} for its output
    (generation_id, rows, changes)."""
    tool = registry.require("schedule.generate")
    errors = sorted(tool.input_validator.iter_errors(body.root), key=lambda e: list(e.path))
    if errors:
        where = ".".join(str(p) for p in errors[0].absolute_path) or "body"
        raise InvalidPlant(
            f"{where}: {errors[0].message}",
            details={"errors": [{"path": "body", "field": where, "message": errors[0].message}]},
            code="INVALID_REQUEST",
        )
    if "start" in body.root:  # a range of fixed dates is checked now, as the tool will check it
        try:
            plant.dated_range(body.root)
        except Permanent as e:
            raise InvalidPlant(
                e.message,
                details={"errors": [{"path": "body", "field": "end", "message": e.message}]},
                code="INVALID_RANGE",
            ) from None
    with db.tx() as conn:
        if replay := replayed(
            conn, caller, idempotency_key, "POST /schedules/generate", body.root, location="/runs"
        ):
            return replay
        task_id = _generate_task(conn, caller, registry, now)
        (run_id,) = store_runs.enqueue(conn, task_id, agent_id=caller.agent_id, params=body.root)
        out = store_runs.get(conn, run_id)
        out.pop("attempts", None)
        audit.record(conn, caller, "availability.generate", "task", task_id, {"run_id": run_id})
        remember(conn, caller, idempotency_key, 202, out)
    return json_body(out, 202, {"Location": f"/runs/{run_id}"})


def _generate_task(conn: Any, caller: Principal, registry: Any, now: datetime) -> Any:
    """The caller's generate task: a manual task whose one step runs schedule.generate with the
    run's params as input. Created on first use, and again if it was canceled or deleted."""
    current = store_plant.generate_task(conn, caller.agent_id)
    if current is not None and current["status"] != "canceled":
        return current["id"]
    document = {
        "title": _GENERATE_TITLE,
        "description": "Created by POST /schedules/generate: each run generates availability with the "
        "request as schedule.generate's input.",
        "schedule_kind": "manual",
        "payload": {
            "params": {},
            "pipeline": [{"id": "generate", "uses": "schedule.generate", "with": "${params}"}],
        },
        "max_retries": 1,
    }
    values = task_document.validate(document, registry, now=now, scopes=caller.tool_scopes)
    row = store_tasks.create(conn, values, caller.agent_id)
    store_plant.set_generate_task(conn, caller.agent_id, row["id"])
    return row["id"]


def _check_range(start: date, end: date) -> None:
    if why := range_problem(start, end):
        raise InvalidPlant(
            why,
            details={"errors": [{"path": "query", "field": "end", "message": why}]},
            code="INVALID_RANGE",
        )


def _refs(value: str | None) -> list[str] | None:
    if value is None:
        return None
    refs = [part.strip() for part in value.split(",") if part.strip()]
    if not refs or len(refs) > _MAX_REFS or any(len(r) > 100 for r in refs):
        raise InvalidPlant(
            f"resource_ids is a comma-separated list of 1 to {_MAX_REFS} ids or codes",
            details={"errors": [{"path": "query", "field": "resource_ids", "message": "malformed"}]},
        )
    return refs


def _since(value: str | None) -> int | datetime | None:
    if value is None:
        return None
    if re.fullmatch(r"\d{1,18}", value):
        return int(value)
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        instant = None
    if instant is None or instant.tzinfo is None:
        raise InvalidPlant(
            f"since is a generation id or an ISO 8601 instant with offset, not {value!r}",
            details={"errors": [{"path": "query", "field": "since", "message": "malformed"}]},
        )
    return instant
