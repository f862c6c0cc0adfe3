"""The plant operations that use Ordo's own tables: the `schedule.generate` tool, stored availability
as `solver.solve` calendars, and applying checked plant documents.

This module is where the pure computation (engine/tools/shift_patterns.py, holiday_calendars.py,
availability.py, plant_documents.py) meets the store (store/plant.py, store/plant_availability.py).
Tools get the database through `ToolContext.db` (the worker's `store.db.Database`); the engine's core
(pipeline, templates, runner) never touches it. The API and the CLI call the functions here with a
connection or a database of their own.
"""

from __future__ import annotations

import csv
import io
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from engine.context import ToolContext
from engine.tools.availability import (
    MAX_DAYS,
    Assignment,
    ExceptionRule,
    Node,
    Plant,
    ResourcePlan,
    calendars_from_rows,
    compute_shifts,
    range_problem,
)
from engine.tools.holiday_calendars import HolidayCalendar, parse_calendar
from engine.tools.plant_documents import check_csv, check_document
from engine.tools.shift_patterns import BUILT_IN_NAMES, Pattern, built_in, built_in_definitions, parse_pattern
from store import keyset, webhooks
from store import plant as store_plant
from store import plant_availability as stored
from store.db import Database
from store.domain import iso_utc
from store.errors import InvalidPlant, NotFound, Permanent, ToolError
from store.problems import Problems

__all__ = [
    "MAX_DAYS",
    "PATCHABLE",
    "apply_document",
    "dated_range",
    "generate",
    "generation_range",
    "load_plant",
    "patch_assignment",
    "patch_exception",
    "read_calendars",
    "run_generation",
    "stored_calendars",
    "with_stored_calendars",
]

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


# An assignment is identified by its resource and effective_from, an exception by its resource, kind,
# start and rule (an import listing them again updates them): a patch changes the other fields.
PATCHABLE = {
    "assignments": ("pattern", "effective_to", "anchor"),
    "exceptions": ("impact", "capacity_pct", "end", "description"),
}


def patch_assignment(
    conn: Connection, agent_id: UUID, assignment_id: UUID, changes: Mapping[str, Any]
) -> dict[str, Any]:
    """Change an assignment's pattern, effective_to or anchor, checked like a new one; the row."""
    shown = store_plant.public_assignment(store_plant.get_assignment(conn, assignment_id, agent_id))
    stored_doc = {
        "resource": shown["resource_id"],
        **{k: shown[k] for k in ("effective_from", *PATCHABLE["assignments"])},
    }
    document = _patched("assignments", stored_doc, changes)
    _, checked = apply_document(conn, agent_id, document={"assignments": [document]}, single="assignments")
    return store_plant.get_assignment_by_key(conn, agent_id, checked.assignments[0])


def patch_exception(
    conn: Connection, agent_id: UUID, exception_id: UUID, changes: Mapping[str, Any]
) -> dict[str, Any]:
    """Change an exception's impact, capacity_pct, end or description (e.g. end a breakdown when the
    machine runs again), checked like a new one; the row."""
    shown = store_plant.public_exception(store_plant.get_exception(conn, exception_id, agent_id))
    keys = ("kind", "start", "rrule", *PATCHABLE["exceptions"])
    stored_doc = {"resource": shown["resource_id"], **{k: shown[k] for k in keys}}
    if shown["impact"] == "no_operation":
        stored_doc["capacity_pct"] = None  # stored as 0; a document leaves it out
    if changes.get("impact") == "no_operation" and "capacity_pct" not in changes:
        stored_doc["capacity_pct"] = None  # the reduced capacity goes with the reduced impact
    document = _patched("exceptions", stored_doc, changes)
    _, checked = apply_document(conn, agent_id, document={"exceptions": [document]}, single="exceptions")
    return store_plant.get_exception_by_key(conn, agent_id, checked.exceptions[0])


def _patched(section: str, stored_doc: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The stored item as a document with `changes` applied; identifying fields cannot change."""
    problems = Problems()
    for name in changes:
        if name not in PATCHABLE[section]:
            what = section[:-1]
            if name in stored_doc:
                message = f"identifies the {what} and cannot change: delete it and create another"
            else:
                message = f"unknown field; a {what} patch may change {', '.join(PATCHABLE[section])}"
            problems.add("body", name, message)
    problems.raise_if_any("the request")
    return {**stored_doc, **changes}


# -- generating -----------------------------------------------------------------------------------


def generation_range(args: Mapping[str, Any], ctx: ToolContext) -> tuple[date, date]:
    """`{start, end}`, `{start, days}` or `{days}` counted from the run's scheduled date (in the
    task's zone) -> the first and last date, both included."""
    if "start" in args:
        return dated_range(args)
    return _range_from(_scheduled_date(ctx), args)


def dated_range(args: Mapping[str, Any]) -> tuple[date, date]:
    """The range of `{start, end}` or `{start, days}` (POST /schedules/generate checks it before it
    queues the run)."""
    return _range_from(_date_arg(args.get("start"), "start"), args)


def _range_from(start: date, args: Mapping[str, Any]) -> tuple[date, date]:
    if "end" in args and "days" in args:
        raise Permanent("give end or days, not both", code="INVALID_RANGE")
    if "end" in args:
        end = _date_arg(args["end"], "end")
        why = range_problem(start, end)
    elif "days" in args:
        why = range_problem(start, days=int(args["days"]))
        end = start + timedelta(days=int(args["days"]) - 1) if why is None else start
    else:
        raise Permanent("give {start, end}, {start, days} or {days}", code="INVALID_RANGE")
    if why is not None:
        raise Permanent(why, code="INVALID_RANGE")
    return start, end


def generate(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """schedule.generate: compute and store the availability of the task owner's plant. Schemas:
    catalogs/tools.json."""
    db, agent = _plant_of(ctx, "schedule.generate stores availability")
    start, end = generation_range(args, ctx)

    def still_wanted() -> None:
        if ctx.is_canceled():
            raise ToolError("the run was canceled; nothing was stored", code="CANCELED", retryable=False)
        if ctx.remaining() <= 0:
            raise ToolError("the step ran out of time; nothing was stored", code="TIMEOUT")

    try:
        return run_generation(
            db,
            agent,
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
        written, unplanned = _write_rows(
            conn, plant, targets, start, end, generation_id, staged=not fresh, check=check
        )
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
        if row["added"] or row["removed"] or row["changed"]:
            # The owner's webhooks subscribed to availability.changed hear of it, with the commit.
            webhooks.announce(
                conn,
                agent_id,
                "availability.changed",
                {
                    "generation_id": generation_id,
                    "start": start.isoformat(),
                    "end": end.isoformat(),
                    "added": row["added"],
                    "removed": row["removed"],
                    "changed": row["changed"],
                    "resources_changed": row["resources_changed"],
                    "run_id": run_id,
                },
            )
        # Last chance to give up before the commit: a step past its deadline has already been
        # reported as timed out, and must not change the stored range after all.
        check()
    return {
        "generation_id": generation_id,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "resources": len(targets),
        "rows": total,
        "fresh": fresh,
        "duration_s": round(time.monotonic() - started, 3),
        "changes": _change_counts(row, top, detail_limit),
        # Resources that require scheduling but follow no pattern on any date of the range: most
        # likely an assignment is missing.
        "unplanned": {
            "count": len(unplanned),
            "codes": [plant.nodes[r].code for r in unplanned[:detail_limit]],
        },
    }


def _change_counts(row: Mapping[str, Any], top: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """A generation's totals and the (at most `limit`) resources it changed most; `top` holds up to
    limit + 1 of them, so that a longer list shows as truncated."""
    return {
        "added": row["added"],
        "removed": row["removed"],
        "changed": row["changed"],
        "resources_changed": row["resources_changed"],
        "resources": top[:limit],
        "truncated": len(top) > limit,
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
) -> tuple[dict[str, int], list[str]]:
    """Stream every target's rows through one binary COPY; returns the rows written per resource,
    and the resources that follow no pattern in the range.
    Memory stays bounded: encoded plans are kept for the most recent distinct plans only, and COPY
    data leaves in chunks of about a megabyte."""
    templates: OrderedDict[ResourcePlan, stored.RowTemplate] = OrderedDict()
    written: dict[str, int] = {}
    unplanned: list[str] = []
    with stored.copy_writer(conn, staged=staged) as write:
        chunk: list[bytes] = []
        size = 0
        for resource_id in targets:
            plan, exception_ids = plant.plan(resource_id, start, end)
            if not plan.spans:
                unplanned.append(resource_id)
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
    return written, unplanned


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
    targets = report_targets(conn, resources, agent_id=agent_id, owner=agent_id)
    codes = {t["id"]: t["code"] for t in targets}
    shifts = (
        {**row, "code": codes[row["resource_id"]]} for row in stored.shift_rows(conn, list(codes), start, end)
    )
    return calendars_from_rows(codes.values(), shifts, include_reduced=include_reduced)


def stored_calendars(spec: Mapping[str, Any], ctx: ToolContext) -> dict[str, list[dict[str, str]]]:
    """solver.solve's `"availability": {"start", "end", "resource_ids"?, "include_reduced"?}`: the
    task owner's stored availability as calendars, read through the worker's database."""
    db, agent = _plant_of(ctx, '"availability" reads the stored shifts (calendars can also be inline)')
    start = _date_arg(spec.get("start"), "availability.start")
    end = _date_arg(spec.get("end"), "availability.end")
    if why := range_problem(start, end):
        raise Permanent(f"availability: {why}", code="INVALID_RANGE")
    try:
        with db.tx() as conn:
            return read_calendars(
                conn,
                agent,
                start,
                end,
                resources=spec.get("resource_ids"),
                include_reduced=bool(spec.get("include_reduced", False)),
            )
    except NotFound as e:
        raise Permanent(e.message, code="UNKNOWN_RESOURCE", details=e.details) from None


def with_stored_calendars(problem: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """A solver problem (solver.solve's input) whose `availability` is replaced by the task owner's
    stored availability as `calendars` (keyed by resource code; see stored_calendars). Calendars
    given inline win over stored ones; a problem without `availability` comes back unchanged."""
    if "availability" not in problem:
        return dict(problem)
    out = {k: v for k, v in problem.items() if k != "availability"}
    out["calendars"] = {**stored_calendars(problem["availability"], ctx), **(problem.get("calendars") or {})}
    return out


def _plant_of(ctx: ToolContext, what: str) -> tuple[Database, UUID]:
    """The worker's database and the task owner (whose plant a tool works on)."""
    if ctx.db is None:
        raise Permanent(
            f"{what}, which needs Ordo's database: run it in a task (a worker provides the database)",
            code="DATABASE_REQUIRED",
        )
    agent = ctx.task.get("agent_id")
    if not agent:
        raise Permanent(f"{what}: the task's owner (whose plant it is) is unknown", code="PLANT_REQUIRED")
    return ctx.db, UUID(agent)


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


# -- reading stored availability ------------------------------------------------------------------


def report_targets(
    conn: Connection, refs: Sequence[str] | None, *, agent_id: UUID, owner: UUID | None
) -> list[dict[str, Any]]:
    """The resources a read covers, with their effective zone: those named (ids or codes; each with
    the resources under it that require scheduling), or every such resource of the caller's plant."""
    if refs is None:
        roots_by_plant: dict[UUID, list[str] | None] = {agent_id: None}
    else:
        roots_by_plant = {}
        for row in store_plant.resolve(conn, refs, agent_id=agent_id, owner=owner):
            roots = roots_by_plant.setdefault(row["agent_id"], [])
            assert roots is not None
            roots.append(str(row["id"]))
    out = []
    for plant_agent, roots in roots_by_plant.items():
        rows = {str(r["id"]): r for r in store_plant.resource_tree(conn, plant_agent)}
        plant = Plant({rid: _node(r) for rid, r in rows.items()})
        for rid in plant.schedulable(roots):
            r = rows[rid]
            out.append(
                {
                    "id": r["id"],
                    "code": r["code"],
                    "name": r["name"],
                    "path": r["path"],
                    "level": r["level"],
                    "timezone": plant.zone(rid),
                }
            )
    return sorted(out, key=lambda t: (t["path"], str(t["id"])))


_HOUR_FIELDS = (
    "planned_hours",
    "operating_hours",
    "maintenance_hours",
    "holiday_hours",
    "other_down_hours",
    "capacity_hours",
)
DAY_CSV_COLUMNS = ("resource_id", "resource_code", "date", "status", *_HOUR_FIELDS, "holiday")
SHIFT_CSV_COLUMNS = (
    "resource_id",
    "resource_code",
    "date",
    "shift_code",
    "crew",
    "start",
    "end",
    "hours",
    "status",
    "capacity_pct",
    "exception_id",
    "note",
)


def availability_report(
    conn: Connection, targets: Sequence[Mapping[str, Any]], start: date, end: date, *, shifts: bool
) -> dict[str, Any]:
    """Per resource: totals, and every date from `start` to `end` with its hours by status, its
    status and holiday (and, with `shifts`, its shift rows). Times in the resource's zone."""
    ids = [t["id"] for t in targets]
    days_by_resource: dict[UUID, dict[date, dict[str, Any]]] = {}
    for row in stored.day_totals(conn, ids, start, end):
        days_by_resource.setdefault(row["resource_id"], {})[row["shift_date"]] = row
    shifts_by_day: dict[tuple[UUID, date], list[dict[str, Any]]] = {}
    if shifts:
        zones = {t["id"]: ZoneInfo(t["timezone"]) for t in targets}
        for row in stored.shift_rows(conn, ids, start, end):
            key = (row["resource_id"], row["shift_date"])
            shifts_by_day.setdefault(key, []).append(_public_shift(row, zones[row["resource_id"]]))
    resources = []
    for target in targets:
        stored_days = days_by_resource.get(target["id"], {})
        totals = dict.fromkeys(_HOUR_FIELDS, 0.0)
        days = []
        day = start
        while day <= end:
            row = stored_days.get(day)
            entry: dict[str, Any] = {"date": day.isoformat(), **_day_figures(row)}
            for name in _HOUR_FIELDS:
                totals[name] += entry[name]
            if shifts:
                entry["shifts"] = shifts_by_day.get((target["id"], day), [])
            days.append(entry)
            day += timedelta(days=1)
        resources.append(
            {
                "id": str(target["id"]),
                "code": target["code"],
                "name": target["name"],
                "path": target["path"],
                "timezone": target["timezone"],
                "totals": {name: round(value, 4) for name, value in totals.items()},
                "days": days,
            }
        )
    return {"start": start.isoformat(), "end": end.isoformat(), "resources": resources}


def availability_csv(
    conn: Connection, targets: Sequence[Mapping[str, Any]], start: date, end: date, *, shifts: bool
) -> Iterator[str]:
    """The same as CSV, streamed in bounded memory: one row per resource and date (DAY_CSV_COLUMNS),
    or with `shifts` one row per shift (SHIFT_CSV_COLUMNS), resources in id order. Times ISO 8601 in
    the resource's zone."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def drain() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    by_id = {t["id"]: t for t in targets}
    ids = list(by_id)
    if shifts:
        writer.writerow(SHIFT_CSV_COLUMNS)
        zones = {t["id"]: ZoneInfo(t["timezone"]) for t in targets}
        for n, row in enumerate(stored.shift_rows(conn, ids, start, end), 1):
            s = _public_shift(row, zones[row["resource_id"]])
            writer.writerow(
                (
                    row["resource_id"],
                    by_id[row["resource_id"]]["code"],
                    row["shift_date"].isoformat(),
                    s["shift_code"],
                    s["crew"],
                    s["start"],
                    s["end"],
                    s["hours"],
                    s["status"],
                    s["capacity_pct"],
                    s["exception_id"],
                    s["note"],
                )
            )
            if n % 2000 == 0:
                yield drain()
        yield drain()
        return
    writer.writerow(DAY_CSV_COLUMNS)
    # Both sides in resource id order: the stored days stream past once, whatever the range's size.
    stored_days = iter(stored.day_totals(conn, sorted(ids), start, end))
    pending = next(stored_days, None)
    for target in sorted(targets, key=lambda t: t["id"]):
        day = start
        while day <= end:
            row = None
            if (
                pending is not None
                and pending["resource_id"] == target["id"]
                and pending["shift_date"] == day
            ):
                row, pending = pending, next(stored_days, None)
            figures = _day_figures(row)
            writer.writerow(
                (
                    target["id"],
                    target["code"],
                    day.isoformat(),
                    figures["status"],
                    *(figures[name] for name in _HOUR_FIELDS),
                    figures["holiday"],
                )
            )
            day += timedelta(days=1)
        yield drain()


def _day_figures(row: Mapping[str, Any] | None) -> dict[str, Any]:
    if row is None:
        return {"status": "off", **dict.fromkeys(_HOUR_FIELDS, 0.0), "holiday": None}
    figures = {name: round(float(row[name]), 4) for name in _HOUR_FIELDS}
    if figures["operating_hours"] > 0:
        status = "operating"
    elif figures["holiday_hours"] > 0:
        status = "holiday"
    elif figures["maintenance_hours"] >= figures["other_down_hours"]:
        status = "maintenance"
    else:
        status = "down"
    return {"status": status, **figures, "holiday": row["holiday"]}


def _public_shift(row: Mapping[str, Any], zone: ZoneInfo) -> dict[str, Any]:
    return {
        "start": row["starts_at"].astimezone(zone).isoformat(),
        "end": row["ends_at"].astimezone(zone).isoformat(),
        "hours": round((row["ends_at"] - row["starts_at"]).total_seconds() / 3600, 4),
        "shift_code": row["shift_code"],
        "crew": row["crew"],
        "status": row["status"],
        "capacity_pct": row["capacity_pct"],
        "exception_id": None if row["exception_id"] is None else str(row["exception_id"]),
        "note": row["note"],
    }


# -- what generations changed ---------------------------------------------------------------------


def public_generation(
    conn: Connection, row: Mapping[str, Any], *, detail_limit: int = CHANGE_DETAIL_LIMIT
) -> dict[str, Any]:
    """A generation as the API shows it, with the resources it changed most."""
    top = stored.top_changes(conn, row["id"], detail_limit + 1)
    return {
        "generation_id": row["id"],
        "agent_id": str(row["agent_id"]),
        "created_at": iso_utc(row["created_at"]),
        "start": row["start_date"].isoformat(),
        "end": row["end_date"].isoformat(),
        "requested": row["requested"],
        "regenerate": row["regenerate"],
        "run_id": row["run_id"],
        "resources": row["resources"],
        "rows": row["rows"],
        "fresh": row["fresh"],
        "duration_s": row["duration_s"],
        "changes": _change_counts(row, top, detail_limit),
    }


def changes_since(
    conn: Connection, owner: UUID | None, since: int | datetime | None, *, limit: int
) -> dict[str, Any]:
    """The generations after a generation id or an instant, oldest first (None: the latest one)."""
    if since is None:
        latest = stored.latest_generation(conn, owner)
        rows = [latest] if latest else []
    elif isinstance(since, datetime):
        rows = stored.list_generations(conn, owner, after_time=since, limit=limit)
    else:
        rows = stored.list_generations(conn, owner, after_id=since, limit=limit)
    items = [public_generation(conn, r) for r in rows]
    if items:
        next_since: int | str | None = items[-1]["generation_id"]
    else:
        next_since = since.isoformat() if isinstance(since, datetime) else since
    return {"generations": items, "next_since": next_since}


def change_page(
    conn: Connection, generation_id: int, owner: UUID | None, *, cursor: str | None, limit: int
) -> dict[str, Any]:
    """A page of one generation's shift-level changes: `{generation_id, items, next_cursor}`."""
    after = keyset.decode(cursor, UUID, datetime) if cursor else None
    generation = stored.get_generation(conn, generation_id, owner)
    if generation is None:
        raise NotFound(f"no generation {generation_id}", details={"generation_id": generation_id})
    rows = stored.change_page(conn, generation, after=after, limit=limit + 1)
    items = [
        {
            "resource_id": str(r["resource_id"]),
            "code": r["code"],
            "date": r["shift_date"].isoformat(),
            "start": r["starts_at"].astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "change": r["change"],
            "old": r["old"],
            "new": r["new"],
        }
        for r in rows[:limit]
    ]
    next_cursor = keyset.page(rows, limit, lambda r: (r["resource_id"], r["starts_at"])).next_cursor
    return {
        "generation_id": generation_id,
        "fresh": generation["fresh"],
        "items": items,
        "next_cursor": next_cursor,
    }


# -- views of the plant ---------------------------------------------------------------------------


def resource_views(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Resources as the API shows them, each with its effective zone."""
    plants: dict[UUID, Plant] = {}
    out = []
    for row in rows:
        plant = plants.get(row["agent_id"])
        if plant is None:
            tree = store_plant.resource_tree(conn, row["agent_id"])
            plant = plants[row["agent_id"]] = Plant({str(r["id"]): _node(r) for r in tree})
        out.append(store_plant.public_resource(row, timezone=plant.zone(str(row["id"]))))
    return out


def hierarchy(conn: Connection, agent_id: UUID) -> list[dict[str, Any]]:
    """The plant as a tree: roots with nested `children`, in code order."""
    rows = store_plant.load_plant(conn, agent_id).resources
    views = {v["id"]: {**v, "children": []} for v in resource_views(conn, rows)}
    roots = []
    for view in sorted(views.values(), key=lambda v: v["code"]):
        parent = views.get(view["parent_id"]) if view["parent_id"] else None
        (parent["children"] if parent is not None else roots).append(view)
    return roots


def find_pattern(conn: Connection, agent_id: UUID, name: str) -> tuple[Pattern, bool]:
    """A pattern by name: a built-in, else one of the agent's. (pattern, built_in)."""
    pattern = built_in(name)
    if pattern is not None:
        return pattern, True
    row = store_plant.get_pattern(conn, agent_id, name)
    if row is None:
        raise NotFound(
            f"no pattern {name!r} (built-ins: {', '.join(BUILT_IN_NAMES)})", details={"pattern": name}
        )
    problems = Problems()
    parsed = parse_pattern(row["definition"], problems, f"pattern {name}", name=name)
    problems.raise_if_any("the stored pattern")
    assert parsed is not None
    return parsed, False


def pattern_view(pattern: Pattern, *, built_in: bool) -> dict[str, Any]:
    return {**pattern.describe(), "built_in": built_in}


def pattern_views(conn: Connection, owner: UUID | None) -> list[dict[str, Any]]:
    out = [pattern_view(p, built_in=True) for p in built_in_definitions()]
    for row in store_plant.list_patterns(conn, owner):
        problems = Problems()
        parsed = parse_pattern(row["definition"], problems, row["name"], name=row["name"])
        if parsed is not None:
            out.append({**pattern_view(parsed, built_in=False), "agent_id": str(row["agent_id"])})
    return out


def find_calendar(conn: Connection, agent_id: UUID, name: str) -> HolidayCalendar:
    row = store_plant.get_calendar(conn, agent_id, name)
    if row is None:
        raise NotFound(f"no holiday calendar {name!r} in your plant", details={"calendar": name})
    problems = Problems()
    calendar = parse_calendar(row["definition"], problems, f"calendar {name}", name=name)
    problems.raise_if_any("the stored calendar")
    assert calendar is not None
    return calendar


def calendar_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **row["definition"],
        "agent_id": str(row["agent_id"]),
        "updated_at": iso_utc(row["updated_at"]),
    }
