"""The plant: resources (the ISA-95 tree) and their import, operating patterns, holiday calendars,
pattern assignments and exceptions. Scopes `availability:read` / `availability:write`; an agent sees
and changes only its own plant (admins read every plant; their writes go to their own).

Every write goes through `engine.tools.plant.apply_document`, the code `ordo resources import` uses:
checked as a whole against the stored plant, every problem reported at once with its row (or path)
and field (422 INVALID_PLANT), nothing stored unless there is none.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from api.deps import AvailabilityRead, AvailabilityWrite, CheckedRoute, Cursor, Db
from api.errors import BadRequest, responses
from api.plant_schemas import (
    AssignmentCreate,
    AssignmentPatch,
    AssignmentPublic,
    CalendarPublic,
    CalendarPut,
    ExceptionCreate,
    ExceptionPatch,
    ExceptionPublic,
    HolidayList,
    ImportSummary,
    PatternPublic,
    PatternPut,
    PlantImport,
    ResourceNode,
    ResourcePage,
    ResourcePatch,
    ResourcePublic,
)
from api.responses import json_body
from api.schemas import ErrorBody, Text, safe_json
from engine.tools import plant
from engine.tools.availability import LEVELS, range_problem
from store import audit
from store import plant as store_plant
from store.agents import Principal
from store.db import Database
from store.errors import InvalidPlant, NotFound, OrdoError

__all__ = ["router"]

router = APIRouter(tags=["plant"], route_class=CheckedRoute)

_READ = responses(401, 403, 404, 422, 429, 503)
_WRITE = responses(400, 401, 403, 404, 409, 413, 422, 429, 503)

Ref = Annotated[Text, Path(min_length=1, max_length=100, description="The resource's id or code.")]
Name = Annotated[Text, Path(min_length=1, max_length=100, description="The name.")]
ResourceFilter = Annotated[
    Text | None, Query(min_length=1, max_length=100, description="Only this resource's (id or code).")
]


class UnsupportedMediaType(OrdoError):
    code, status = "UNSUPPORTED_MEDIA_TYPE", 415


_IMPORT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": PlantImport.document_schema},
            "text/csv": {
                "schema": {
                    "type": "string",
                    "description": "A header row (code and level required; name, parent, timezone, "
                    "requires_scheduling, holiday_calendar and meta.KEY optional), then one resource "
                    "per row. An empty cell means none (inherit the parent's zone or calendar).",
                },
                "example": "code,level,parent,timezone\nACME,enterprise,,\n"
                "JHB,site,ACME,Africa/Johannesburg\n",
            },
        },
    }
}


# -- resources ------------------------------------------------------------------------------------


@router.post(
    "/resources/import",
    response_model=ImportSummary,
    responses={
        **_WRITE,
        415: {"model": ErrorBody, "description": "The body is neither JSON nor CSV."},
    },
    openapi_extra=_IMPORT_BODY,
)
async def import_plant(request: Request, caller: AvailabilityWrite, db: Db) -> Any:
    """Import a plant: a JSON document (resources as a tree or a flat list, and optionally
    holiday_calendars, patterns, assignments, exceptions) or a CSV of resources
    (`Content-Type: text/csv`). Resources are matched by code: new ones are added, the listed fields
    of existing ones replaced, others left alone. Everything is checked first: any problem refuses
    the whole import (422 INVALID_PLANT, `details.errors` naming each row or path and field) and
    nothing is stored. Answers how many items of each section were created, updated, unchanged."""
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    raw = await request.body()
    args: dict[str, Any]
    if kind in ("text/csv", "application/csv"):
        try:
            args = {"csv_text": raw.decode("utf-8")}
        except UnicodeDecodeError:
            raise BadRequest("the CSV is not UTF-8 text", code="MALFORMED_CSV") from None
    elif kind == "application/json":
        try:
            document = json.loads(raw)
            safe_json(document)
        except RecursionError:
            raise BadRequest("the JSON is nested too deeply", code="MALFORMED_JSON") from None
        except ValueError as e:
            raise BadRequest(f"the request body is not valid JSON: {e}", code="MALFORMED_JSON") from None
        args = {"document": document}
    else:
        raise UnsupportedMediaType(f"send the plant as application/json or text/csv, not {kind}")
    return await run_in_threadpool(_import, db, caller, args)


def _import(db: Database, caller: Principal, args: dict[str, Any]) -> Response:
    with db.tx() as conn:
        summary, _ = plant.apply_document(conn, caller.agent_id, **args)
        audit.record(conn, caller, "resource.import", "plant", caller.agent_id, summary)
    return json_body(summary)


@router.get("/resources", response_model=ResourcePage, responses=responses(400, 401, 403, 404, 422, 429, 503))
def list_resources(
    caller: AvailabilityRead,
    db: Db,
    level: Literal[LEVELS] | None = None,  # type: ignore[valid-type]
    under: Annotated[
        Text | None,
        Query(min_length=1, max_length=100, description="Only this resource's subtree (id or code)."),
    ] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> Any:
    """Resources in tree order (by path): the caller's plant (every plant for admins)."""
    with db.tx() as conn:
        path, owner = None, caller.owner
        if under is not None:
            (row,) = store_plant.resolve(conn, [under], agent_id=caller.agent_id, owner=caller.owner)
            # A path is unique within its plant only: the subtree is read in the plant it belongs to
            # (for an admin naming another plant's resource, that plant, not every plant's same path).
            path, owner = row["path"], row["agent_id"]
        rows, next_cursor = store_plant.list_resources(
            conn, owner=owner, level=level, under=path, cursor=cursor, limit=limit
        )
        return json_body({"items": plant.resource_views(conn, rows), "next_cursor": next_cursor})


@router.get("/resources/hierarchy", response_model=list[ResourceNode], responses=_READ)
def resource_hierarchy(caller: AvailabilityRead, db: Db) -> Any:
    """The caller's plant as a tree: roots with nested `children` (ISA-95: enterprise > site > area
    > work_center > work_unit)."""
    with db.tx() as conn:
        return json_body(plant.hierarchy(conn, caller.agent_id))


@router.get("/resources/{ref}", response_model=ResourcePublic, responses=_READ)
def get_resource(ref: Ref, caller: AvailabilityRead, db: Db) -> Any:
    """One resource, by id or code, with its effective time zone."""
    with db.tx() as conn:
        (row,) = store_plant.resolve(conn, [ref], agent_id=caller.agent_id, owner=caller.owner)
        return json_body(plant.resource_views(conn, [row])[0])


@router.patch("/resources/{ref}", response_model=ResourcePublic, responses=_WRITE)
def update_resource(ref: Ref, body: ResourcePatch, caller: AvailabilityWrite, db: Db) -> Any:
    """Change a resource's name, parent, level, timezone, holiday_calendar, requires_scheduling or
    metadata (null timezone or calendar: inherit the parent's again). Checked with the whole tree."""
    changes = body.root
    with db.tx() as conn:
        (row,) = store_plant.resolve(conn, [ref], agent_id=caller.agent_id, owner=caller.agent_id)
        if "code" in changes or "children" in changes:
            raise InvalidPlant(
                "a resource's code cannot change and children are imported, not patched",
                details={"errors": [{"path": "body", "field": "code" if "code" in changes else "children"}]},
            )
        plant.apply_document(
            conn,
            caller.agent_id,
            document={"resources": [{**changes, "code": row["code"]}]},
            single="resources",
        )
        (row,) = store_plant.resolve(conn, [str(row["id"])], agent_id=caller.agent_id, owner=caller.agent_id)
        audit.record(conn, caller, "resource.update", "resource", row["id"], {"fields": sorted(changes)})
        return json_body(plant.resource_views(conn, [row])[0])


@router.delete("/resources/{ref}", status_code=204, response_class=Response, responses=_WRITE)
def delete_resource(ref: Ref, caller: AvailabilityWrite, db: Db) -> Response:
    """Delete a resource with its assignments, exceptions and generated availability (409 while it
    has children)."""
    with db.tx() as conn:
        store_plant.lock_plant(conn, caller.agent_id)
        (row,) = store_plant.resolve(conn, [ref], agent_id=caller.agent_id, owner=caller.agent_id)
        store_plant.delete_resource(conn, row)
        audit.record(conn, caller, "resource.delete", "resource", row["id"], {"code": row["code"]})
    return Response(status_code=204)


# -- patterns -------------------------------------------------------------------------------------


@router.get("/patterns", response_model=list[PatternPublic], responses=_READ)
def list_patterns(caller: AvailabilityRead, db: Db) -> Any:
    """The built-in patterns (24x7, two_shift, day_only, extended, dupont, pitman, continental) and
    the caller's own, each with its definition and weekly hours."""
    with db.tx() as conn:
        return json_body(plant.pattern_views(conn, caller.owner))


@router.get("/patterns/{name}", response_model=PatternPublic, responses=_READ)
def get_pattern(name: Name, caller: AvailabilityRead, db: Db) -> Any:
    with db.tx() as conn:
        pattern, is_built_in = plant.find_pattern(conn, caller.agent_id, name)
        return json_body(plant.pattern_view(pattern, built_in=is_built_in))


@router.put("/patterns/{name}", response_model=PatternPublic, responses=_WRITE)
def put_pattern(name: Name, body: PatternPut, caller: AvailabilityWrite, db: Db) -> Any:
    """Create or replace one of your patterns: weekly rules, or a rotation with a cycle, shifts and
    crew rosters. Overlapping rules are refused, naming them."""
    doc = _named(body.root, name)
    with db.tx() as conn:
        plant.apply_document(conn, caller.agent_id, document={"patterns": [doc]}, single="patterns")
        pattern, _ = plant.find_pattern(conn, caller.agent_id, name)
        audit.record(conn, caller, "pattern.put", "pattern", name)
        return json_body(plant.pattern_view(pattern, built_in=False))


@router.delete("/patterns/{name}", status_code=204, response_class=Response, responses=_WRITE)
def delete_pattern(name: Name, caller: AvailabilityWrite, db: Db) -> Response:
    """Delete one of your patterns (409 while a resource is assigned to it)."""
    with db.tx() as conn:
        store_plant.lock_plant(conn, caller.agent_id)
        store_plant.delete_pattern(conn, caller.agent_id, name)
        audit.record(conn, caller, "pattern.delete", "pattern", name)
    return Response(status_code=204)


# -- holiday calendars ----------------------------------------------------------------------------


@router.get("/holiday-calendars", response_model=list[CalendarPublic], responses=_READ)
def list_calendars(caller: AvailabilityRead, db: Db) -> Any:
    with db.tx() as conn:
        return json_body([plant.calendar_view(r) for r in store_plant.list_calendars(conn, caller.owner)])


@router.get("/holiday-calendars/{name}", response_model=CalendarPublic, responses=_READ)
def get_calendar(name: Name, caller: AvailabilityRead, db: Db) -> Any:
    with db.tx() as conn:
        return json_body(plant.calendar_view(_calendar_row(conn, caller.agent_id, name)))


@router.put("/holiday-calendars/{name}", response_model=CalendarPublic, responses=_WRITE)
def put_calendar(name: Name, body: CalendarPut, caller: AvailabilityWrite, db: Db) -> Any:
    """Create or replace a holiday calendar: a country (and subdivision) from the holidays library,
    the `observed` setting (both, actual, observed_only), custom dates and RRULE holidays."""
    doc = _named(body.root, name)
    with db.tx() as conn:
        plant.apply_document(
            conn, caller.agent_id, document={"holiday_calendars": [doc]}, single="holiday_calendars"
        )
        audit.record(conn, caller, "calendar.put", "holiday_calendar", name)
        return json_body(plant.calendar_view(_calendar_row(conn, caller.agent_id, name)))


@router.delete("/holiday-calendars/{name}", status_code=204, response_class=Response, responses=_WRITE)
def delete_calendar(name: Name, caller: AvailabilityWrite, db: Db) -> Response:
    """Delete a calendar (409 while a resource uses it)."""
    with db.tx() as conn:
        store_plant.lock_plant(conn, caller.agent_id)
        store_plant.delete_calendar(conn, caller.agent_id, name)
        audit.record(conn, caller, "calendar.delete", "holiday_calendar", name)
    return Response(status_code=204)


@router.get("/holiday-calendars/{name}/holidays", response_model=HolidayList, responses=_READ)
def calendar_holidays(
    name: Name,
    caller: AvailabilityRead,
    db: Db,
    start: Annotated[date, Query(description="First date.")],
    end: Annotated[date, Query(description="Last date (included; at most 10 years after start).")],
) -> Any:
    """The dates the calendar stops the plant on, with the holidays' names."""
    if why := range_problem(start, end):
        raise InvalidPlant(why, details={"errors": [{"path": "query", "field": "end"}]}, code="INVALID_RANGE")
    with db.tx() as conn:
        calendar = plant.find_calendar(conn, caller.agent_id, name)
    holidays = [{"date": d.isoformat(), "name": n} for d, n in calendar.dates(start, end).items()]
    return json_body({"calendar": name, "holidays": holidays})


def _calendar_row(conn: Any, agent_id: UUID, name: str) -> dict[str, Any]:
    row = store_plant.get_calendar(conn, agent_id, name)
    if row is None:
        raise NotFound(f"no holiday calendar {name!r} in your plant", details={"calendar": name})
    return row


# -- assignments and exceptions -------------------------------------------------------------------


@router.get("/assignments", response_model=list[AssignmentPublic], responses=_READ)
def list_assignments(caller: AvailabilityRead, db: Db, resource: ResourceFilter = None) -> Any:
    """Pattern assignments, in tree then date order; `resource` limits them to one resource's own."""
    with db.tx() as conn:
        resource_id = _resource_id(conn, caller, resource)
        rows = store_plant.list_assignments(conn, caller.owner, resource_id)
        return json_body([store_plant.public_assignment(r) for r in rows])


@router.post("/assignments", status_code=201, response_model=AssignmentPublic, responses=_WRITE)
def create_assignment(body: AssignmentCreate, caller: AvailabilityWrite, db: Db) -> Any:
    """Assign a pattern to a resource from `effective_from` (to `effective_to`, both included).
    Resources under it inherit it unless they have their own; among a resource's own assignments the
    latest effective_from wins. Assigning again from the same date replaces that assignment."""
    with db.tx() as conn:
        _, changes = plant.apply_document(
            conn, caller.agent_id, document={"assignments": [body.root]}, single="assignments"
        )
        row = store_plant.get_assignment_by_key(conn, caller.agent_id, changes.assignments[0])
        audit.record(conn, caller, "assignment.create", "assignment", row["id"], {"pattern": row["pattern"]})
        return json_body(store_plant.public_assignment(row), 201)


@router.patch("/assignments/{assignment_id}", response_model=AssignmentPublic, responses=_WRITE)
def update_assignment(assignment_id: UUID, body: AssignmentPatch, caller: AvailabilityWrite, db: Db) -> Any:
    """Change an assignment's pattern, effective_to (null: open ended) or anchor, e.g. end it on a
    date; checked like a new one. Its resource and effective_from identify it: to move them, delete
    it and assign again."""
    with db.tx() as conn:
        row = plant.patch_assignment(conn, caller.agent_id, assignment_id, body.root)
        audit.record(
            conn, caller, "assignment.update", "assignment", row["id"], {"fields": sorted(body.root)}
        )
        return json_body(store_plant.public_assignment(row))


@router.delete("/assignments/{assignment_id}", status_code=204, response_class=Response, responses=_WRITE)
def delete_assignment(assignment_id: UUID, caller: AvailabilityWrite, db: Db) -> Response:
    with db.tx() as conn:
        store_plant.delete_assignment(conn, assignment_id, caller.agent_id)
        audit.record(conn, caller, "assignment.delete", "assignment", assignment_id)
    return Response(status_code=204)


@router.get("/exceptions", response_model=list[ExceptionPublic], responses=_READ)
def list_exceptions(caller: AvailabilityRead, db: Db, resource: ResourceFilter = None) -> Any:
    """Exceptions (maintenance, breakdowns, shutdowns), optionally one resource's own."""
    with db.tx() as conn:
        resource_id = _resource_id(conn, caller, resource)
        rows = store_plant.list_exceptions(conn, caller.owner, resource_id)
        return json_body([store_plant.public_exception(r) for r in rows])


@router.post("/exceptions", status_code=201, response_model=ExceptionPublic, responses=_WRITE)
def create_exception(body: ExceptionCreate, caller: AvailabilityWrite, db: Db) -> Any:
    """Add a maintenance window, breakdown, shutdown or other exception: one window (start, end), or
    an RRULE series of windows as long as the first. It cuts the shifts of the resource and of
    everything under it; the cut part keeps the exception's kind as status (impact no_operation) or
    its capacity (impact reduced). Listing the same exception again updates it."""
    with db.tx() as conn:
        _, changes = plant.apply_document(
            conn, caller.agent_id, document={"exceptions": [body.root]}, single="exceptions"
        )
        row = store_plant.get_exception_by_key(conn, caller.agent_id, changes.exceptions[0])
        audit.record(conn, caller, "exception.create", "exception", row["id"], {"kind": row["kind"]})
        return json_body(store_plant.public_exception(row), 201)


@router.patch("/exceptions/{exception_id}", response_model=ExceptionPublic, responses=_WRITE)
def update_exception(exception_id: UUID, body: ExceptionPatch, caller: AvailabilityWrite, db: Db) -> Any:
    """Change an exception's impact, capacity_pct, end or description, e.g. end a breakdown when the
    machine runs again; checked like a new one. Its resource, kind, start and rrule identify it."""
    with db.tx() as conn:
        row = plant.patch_exception(conn, caller.agent_id, exception_id, body.root)
        audit.record(conn, caller, "exception.update", "exception", row["id"], {"fields": sorted(body.root)})
        return json_body(store_plant.public_exception(row))


@router.delete("/exceptions/{exception_id}", status_code=204, response_class=Response, responses=_WRITE)
def delete_exception(exception_id: UUID, caller: AvailabilityWrite, db: Db) -> Response:
    with db.tx() as conn:
        store_plant.delete_exception(conn, exception_id, caller.agent_id)
        audit.record(conn, caller, "exception.delete", "exception", exception_id)
    return Response(status_code=204)


def _resource_id(conn: Any, caller: Principal, ref: str | None) -> UUID | None:
    if ref is None:
        return None
    (row,) = store_plant.resolve(conn, [ref], agent_id=caller.agent_id, owner=caller.owner)
    return row["id"]


def _named(doc: dict[str, Any], name: str) -> dict[str, Any]:
    if "name" in doc and doc["name"] != name:
        raise InvalidPlant(
            f"the body names {doc['name']!r} but the address names {name!r}",
            details={"errors": [{"path": "body", "field": "name", "message": "differs from the address"}]},
        )
    return {**doc, "name": name}
