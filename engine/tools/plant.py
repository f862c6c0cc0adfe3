"""The plant operations that use Ordo's own tables: the `schedule.generate` tool, stored availability
as `solver.solve` calendars, and applying checked plant documents.

This module is where the pure computation (engine/tools/shift_patterns.py, holiday_calendars.py,
availability.py, plant_documents.py) meets the store (store/plant.py, store/plant_availability.py).
Tools get the database through `ToolContext.db` (the worker's `store.db.Database`); the engine's core
(pipeline, templates, runner) never touches it. The API and the CLI call the functions here with a
connection or a database of their own.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from engine.context import ToolContext
from engine.tools.availability import (
    Assignment,
    ExceptionRule,
    Node,
    Plant,
    ResourcePlan,
    calendars_from_rows,
    compute_shifts,
)
from engine.tools.holiday_calendars import HolidayCalendar, parse_calendar
from engine.tools.plant_documents import check_csv, check_document
from engine.tools.shift_patterns import Pattern, parse_pattern
from store import plant as store_plant
from store import plant_availability as stored
from store.db import Database
from store.errors import InvalidPlant, NotFound, Permanent, ToolError
from store.problems import Problems

__all__ = [
    "MAX_DAYS",
    "apply_document",
    "generate",
    "generation_range",
    "load_plant",
    "read_calendars",
    "run_generation",
    "stored_calendars",
]

MAX_DAYS = 3660  # ten years in one generation
CHANGE_DETAIL_LIMIT = 50  # resources listed in the tool's output; the rest stay queryable by id
_TEMPLATES_KEPT = 256  # distinct plans whose encoded rows are kept while generating
_FLUSH_BYTES = 1 << 20  # COPY data handed to the connection in chunks of about this size


# -- reading the plant ----------------------------------------------------------------------------


def load_plant(conn: Connection, agent_id: UUID) -> tuple[Plant, store_plant.PlantRows]:
    """The agent's plant as data for the pure computation, and the rows it came from."""
    rows = store_plant.load_plant(conn, agent_id)
    problems = Problems()
    patterns: dict[str, Pattern] = {}
    for row in rows.patterns:
        pattern = parse_pattern(row["definition"], problems, f"pattern {row['name']}", name=row["name"])
        if pattern is not None:
            patterns[row["name"]] = pattern
    calendars: dict[str, HolidayCalendar] = {}
    for row in rows.calendars:
        calendar = parse_calendar(row["definition"], problems, f"calendar {row['name']}", name=row["name"])
        if calendar is not None:
            calendars[row["name"]] = calendar
    problems.raise_if_any("the stored plant")  # stored definitions were checked when written
    nodes = {str(r["id"]): _node(r) for r in rows.resources}
    assignments = [
        Assignment(
            str(a["resource_id"]), a["pattern"], a["effective_from"], a["effective_to"], a["anchor"], i
        )
        for i, a in enumerate(sorted(rows.assignments, key=lambda a: a["created_at"]))
    ]
    exceptions = [
        (
            str(e["id"]),
            str(e["resource_id"]),
            ExceptionRule(
                e["kind"],
                e["impact"],
                e["capacity_pct"],
                e["starts_at"],
                e["ends_at"],
                e["rrule"],
                description=e["description"],
            ),
        )
        for e in rows.exceptions
    ]
    plant = Plant(nodes, assignments, calendars, exceptions, patterns)
    return plant, rows


def apply_document(
    conn: Connection,
    agent_id: UUID,
    *,
    document: Any = None,
    csv_text: str | None = None,
    single: str | None = None,
) -> tuple[dict[str, dict[str, int]], store_plant.PlantWrite]:
    """Check a plant document (JSON/YAML value, or CSV text) against the stored plant and write it,
    all or nothing. Returns the per-section counts and the checked changes."""
    store_plant.lock_plant(conn, agent_id)
    existing = store_plant.load_plant(conn, agent_id)
    if csv_text is not None:
        changes = check_csv(csv_text, existing)
    else:
        changes = check_document(document, existing, single=single)
    return store_plant.write_plant(conn, agent_id, changes), changes


# -- generating -----------------------------------------------------------------------------------


def generation_range(args: Mapping[str, Any], ctx: ToolContext) -> tuple[date, date]:
    """`{start, end}`, `{start, days}` or `{days}` counted from the run's scheduled date (in the
    task's zone) -> the first and last date, both included."""
    start = _date_arg(args.get("start"), "start") if "start" in args else _scheduled_date(ctx)
    if "end" in args and "days" in args:
        raise Permanent("give end or days, not both", code="INVALID_RANGE")
    if "end" in args:
        end = _date_arg(args["end"], "end")
    elif "days" in args:
        end = start + timedelta(days=int(args["days"]) - 1)
    else:
        raise Permanent("give {start, end}, {start, days} or {days}", code="INVALID_RANGE")
    if end < start:
        raise Permanent(f"end ({end}) is before start ({start})", code="INVALID_RANGE")
    if (end - start).days + 1 > MAX_DAYS:
        raise Permanent(f"a generation covers at most {MAX_DAYS} days", code="INVALID_RANGE")
    return start, end


def generate(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """schedule.generate: compute and store the availability of the task owner's plant. Schemas:
    catalogs/tools.json."""
    if ctx.db is None:
        raise Permanent(
            "schedule.generate stores availability in Ordo's database: run it in a task (a worker "
            "provides the database), not standalone",
            code="DATABASE_REQUIRED",
        )
    agent = ctx.task.get("agent_id")
    if not agent:
        raise Permanent("schedule.generate needs the task's owner (its plant)", code="PLANT_REQUIRED")
    start, end = generation_range(args, ctx)

    def still_wanted() -> None:
        if ctx.is_canceled():
            raise ToolError("the run was canceled; nothing was stored", code="CANCELED", retryable=False)
        if ctx.remaining() <= 0:
            raise ToolError("the step ran out of time; nothing was stored", code="TIMEOUT")

    try:
        return run_generation(
            ctx.db,
            UUID(agent),
            start,
            end,
            resources=args.get("resource_ids"),
            regenerate=args.get("regenerate", True),
            run_id=ctx.run.get("id"),
            check=still_wanted,
        )
    except (InvalidPlant, NotFound) as e:
        raise Permanent(e.message, code=e.code, details=e.details) from None


def run_generation(
    db: Database,
    agent_id: UUID,
    start: date,
    end: date,
    *,
    resources: Sequence[str] | None = None,
    regenerate: bool = True,
    run_id: int | None = None,
    check: Callable[[], None] = lambda: None,
    detail_limit: int = CHANGE_DETAIL_LIMIT,
) -> dict[str, Any]:
    """Generate and store the plant's availability from `start` to `end` (both included) for
    `resources` (ids or codes, each with everything under it; None: every resource) that require
    scheduling, in one transaction. `check` is called between chunks and may raise to abandon the
    generation (nothing is stored)."""
    started = time.monotonic()
    with db.tx() as conn:
        store_plant.lock_plant(conn, agent_id)
        plant, _ = load_plant(conn, agent_id)
        roots = None
        if resources is not None:
            roots = [
                str(r["id"]) for r in store_plant.resolve(conn, resources, agent_id=agent_id, owner=agent_id)
            ]
        targets = plant.schedulable(roots)
        ids = [UUID(t) for t in targets]
        generation_id = stored.begin_generation(
            conn, agent_id, start, end, requested=resources, regenerate=regenerate, run_id=run_id
        )
        fresh = not stored.range_has_rows(conn, ids, start, end)
        written = _write_rows(conn, plant, targets, start, end, generation_id, staged=not fresh, check=check)
        if fresh:
            stored.record_fresh_summary(conn, generation_id, {UUID(t): n for t, n in written.items()})
        else:
            stored.apply_stage(conn, generation_id, ids, start, end, regenerate=regenerate)
        total = sum(written.values())
        row = stored.finish_generation(
            conn,
            generation_id,
            resources=len(targets),
            rows=total,
            fresh=fresh,
            duration_s=time.monotonic() - started,
        )
        top = stored.top_changes(conn, generation_id, detail_limit + 1)
    return {
        "generation_id": generation_id,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "resources": len(targets),
        "rows": total,
        "fresh": fresh,
        "duration_s": round(time.monotonic() - started, 3),
        "changes": {
            "added": row["added"],
            "removed": row["removed"],
            "changed": row["changed"],
            "resources_changed": row["resources_changed"],
            "resources": top[:detail_limit],
            "truncated": len(top) > detail_limit,
        },
    }


def _write_rows(
    conn: Connection,
    plant: Plant,
    targets: Sequence[str],
    start: date,
    end: date,
    generation_id: int,
    *,
    staged: bool,
    check: Callable[[], None],
) -> dict[str, int]:
    """Stream every target's rows through one binary COPY; returns rows written per resource.
    Memory stays bounded: encoded plans are kept for the most recent distinct plans only, and COPY
    data leaves in chunks of about a megabyte."""
    templates: OrderedDict[ResourcePlan, stored.RowTemplate] = OrderedDict()
    written: dict[str, int] = {}
    with stored.copy_writer(conn, staged=staged) as write:
        chunk: list[bytes] = []
        size = 0
        for resource_id in targets:
            plan, exception_ids = plant.plan(resource_id, start, end)
            template = templates.get(plan)
            if template is None:
                template = stored.RowTemplate(compute_shifts(plan, start, end), generation_id)
                templates[plan] = template
                if len(templates) > _TEMPLATES_KEPT:
                    templates.popitem(last=False)
            else:
                templates.move_to_end(plan)
            block = template.render(UUID(resource_id), [UUID(e) for e in exception_ids])
            written[resource_id] = template.rows
            chunk.append(block)
            size += len(block)
            if size >= _FLUSH_BYTES:
                check()
                write(b"".join(chunk))
                chunk, size = [], 0
        if chunk:
            write(b"".join(chunk))
    check()
    return written


def _scheduled_date(ctx: ToolContext) -> date:
    scheduled = ctx.run.get("scheduled_for")
    instant = datetime.fromisoformat(scheduled) if isinstance(scheduled, str) else ctx.now
    zone = ctx.task.get("timezone") or "UTC"
    try:
        return instant.astimezone(ZoneInfo(zone)).date()
    except (KeyError, ValueError):
        return instant.astimezone(UTC).date()


def _date_arg(value: Any, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise Permanent(f"{name} must be a date YYYY-MM-DD, got {value!r}", code="INVALID_RANGE") from None


# -- stored availability as solver calendars ------------------------------------------------------


def read_calendars(
    conn: Connection,
    agent_id: UUID,
    start: date,
    end: date,
    *,
    resources: Sequence[str] | None = None,
    include_reduced: bool = False,
) -> dict[str, list[dict[str, str]]]:
    """The stored availability of the plant's resources from `start` to `end` (both included) as
    solver calendars keyed by resource code (see availability.calendars_from_rows): every resource
    that requires scheduling (or those named, with everything under them)."""
    rows = store_plant.load_plant(conn, agent_id).resources
    codes = {str(r["id"]): r["code"] for r in rows}
    plant = Plant({str(r["id"]): _node(r) for r in rows})
    roots = None
    if resources is not None:
        roots = [
            str(r["id"]) for r in store_plant.resolve(conn, resources, agent_id=agent_id, owner=agent_id)
        ]
    targets = plant.schedulable(roots)
    shifts = (
        {**row, "code": codes[str(row["resource_id"])]}
        for row in stored.shift_rows(conn, [UUID(t) for t in targets], start, end)
    )
    return calendars_from_rows([codes[t] for t in targets], shifts, include_reduced=include_reduced)


def stored_calendars(spec: Mapping[str, Any], ctx: ToolContext) -> dict[str, list[dict[str, str]]]:
    """solver.solve's `"availability": {"start", "end", "resource_ids"?, "include_reduced"?}`: the
    task owner's stored availability as calendars, read through the worker's database."""
    if ctx.db is None:
        raise Permanent(
            "availability is read from Ordo's database: run the solver in a task (a worker provides "
            "the database), or pass calendars inline",
            code="DATABASE_REQUIRED",
        )
    agent = ctx.task.get("agent_id")
    if not agent:
        raise Permanent("reading availability needs the task's owner (its plant)", code="PLANT_REQUIRED")
    start = _date_arg(spec.get("start"), "availability.start")
    end = _date_arg(spec.get("end"), "availability.end")
    if end < start:
        raise Permanent(
            f"availability.end ({end}) is before availability.start ({start})", code="INVALID_RANGE"
        )
    try:
        with ctx.db.tx() as conn:
            return read_calendars(
                conn,
                UUID(agent),
                start,
                end,
                resources=spec.get("resource_ids"),
                include_reduced=bool(spec.get("include_reduced", False)),
            )
    except NotFound as e:
        raise Permanent(e.message, code="UNKNOWN_RESOURCE", details=e.details) from None


def _node(row: Mapping[str, Any]) -> Node:
    return Node(
        id=str(row["id"]),
        code=row["code"],
        level=row["level"],
        parent_id=None if row["parent_id"] is None else str(row["parent_id"]),
        timezone=row["timezone"],
        requires_scheduling=row["requires_scheduling"],
        calendar=row["holiday_calendar"],
    )
