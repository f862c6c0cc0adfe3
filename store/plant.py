"""The plant model's tables: resources (the ISA-95 tree), custom operating patterns, pattern
assignments, holiday calendars and exceptions.

Values arrive here already checked (engine/tools/plant_documents.py checks documents as a whole and
engine/tools/plant.py applies them); this module reads and writes them, scoped to one agent's plant.
A resource is named by its UUID or by its code, unique in its plant: codes are looked up in the
caller's own plant, ids in any plant the caller may see (every plant for admins).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection

from store import keyset
from store.domain import iso_utc
from store.errors import Conflict, NotFound
from store.sql import load_queries

__all__ = [
    "AssignmentValues",
    "ExceptionValues",
    "PlantRows",
    "PlantWrite",
    "ResourceValues",
    "delete_assignment",
    "delete_calendar",
    "delete_exception",
    "delete_pattern",
    "delete_resource",
    "generate_task",
    "get_assignment",
    "get_assignment_by_key",
    "get_calendar",
    "get_exception",
    "get_exception_by_key",
    "get_pattern",
    "list_assignments",
    "list_calendars",
    "list_exceptions",
    "list_patterns",
    "list_resources",
    "load_plant",
    "lock_plant",
    "public_assignment",
    "public_exception",
    "public_resource",
    "resolve",
    "resource_tree",
    "set_generate_task",
    "update_resource",
    "write_plant",
]

Q = load_queries("store", "plant.sql")


@dataclass(frozen=True)
class ResourceValues:
    """A resource as it will be stored (every field final: defaults and kept values resolved)."""

    code: str
    name: str
    level: str
    parent: str | None  # the parent's code
    requires_scheduling: bool
    timezone: str | None
    holiday_calendar: str | None
    metadata: Mapping[str, Any]


@dataclass(frozen=True)
class AssignmentValues:
    resource: str  # code
    pattern: str
    effective_from: date
    effective_to: date | None
    anchor: date | None


@dataclass(frozen=True)
class ExceptionValues:
    resource: str  # code
    kind: str
    impact: str
    capacity_pct: int
    starts_at: datetime
    ends_at: datetime
    rrule: str | None
    description: str


@dataclass
class PlantWrite:
    """Checked changes to one plant, written together in one transaction."""

    resources: list[ResourceValues] = field(default_factory=list)
    patterns: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)
    calendars: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)
    assignments: list[AssignmentValues] = field(default_factory=list)
    exceptions: list[ExceptionValues] = field(default_factory=list)


@dataclass
class PlantRows:
    """Everything stored about one plant, as rows."""

    resources: list[dict[str, Any]]
    patterns: list[dict[str, Any]]
    calendars: list[dict[str, Any]]
    assignments: list[dict[str, Any]]
    exceptions: list[dict[str, Any]]


def lock_plant(conn: Connection, agent_id: UUID) -> None:
    """Serialise writers of this plant until the transaction ends (see plant_lock)."""
    conn.execute(Q["plant_lock"], {"agent_id": str(agent_id)})


def load_plant(conn: Connection, agent_id: UUID) -> PlantRows:
    def rows(name: str, **params: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in conn.execute(Q[name], params).mappings()]

    return PlantRows(
        resources=rows("resources_of_agent", agent_id=agent_id),
        patterns=rows("patterns_of_agent", owner=agent_id),
        calendars=rows("calendars_of_agent", owner=agent_id),
        assignments=rows("assignments_of_agent", owner=agent_id, resource_id=None),
        exceptions=rows("exceptions_of_agent", owner=agent_id, resource_id=None),
    )


# -- resources ------------------------------------------------------------------------------------


def resolve(
    conn: Connection, refs: Sequence[str], *, agent_id: UUID, owner: UUID | None
) -> list[dict[str, Any]]:
    """The resources named by `refs` (ids or codes), in the order given. NotFound names the first
    one that does not exist (or that the caller may not see)."""
    ids, codes = [], []
    for ref in refs:
        as_id = _as_uuid(ref)
        (ids if as_id is not None else codes).append(as_id or ref)
    found = conn.execute(
        Q["resources_by_ref"], {"ids": ids, "codes": codes, "owner": owner, "agent_id": agent_id}
    ).mappings()
    by_id, by_code = {}, {}
    for row in found:
        by_id[str(row["id"])] = dict(row)
        if row["agent_id"] == agent_id:
            by_code[row["code"]] = dict(row)
    out = []
    for ref in refs:
        row = by_id.get(str(_as_uuid(ref))) if _as_uuid(ref) is not None else by_code.get(ref)
        if row is None:
            raise NotFound(
                f"no resource {ref!r} in your plant (give its id or code)", details={"resource": ref}
            )
        out.append(row)
    return out


def resource_tree(conn: Connection, agent_id: UUID) -> list[dict[str, Any]]:
    """A plant's resources, lean (inheritance and subtree questions)."""
    return [dict(r) for r in conn.execute(Q["resource_tree"], {"agent_id": agent_id}).mappings()]


def list_resources(
    conn: Connection,
    *,
    owner: UUID | None,
    level: str | None = None,
    under: str | None = None,
    cursor: str | None = None,
    limit: int = 200,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page in tree order; `under` is a resource path (its subtree, itself included)."""
    after_path, after_id = keyset.decode(cursor, str, UUID) if cursor else (None, None)
    rows = [
        dict(r)
        for r in conn.execute(
            Q["list_resources"],
            {
                "owner": owner,
                "level": level,
                "under": under,
                "after_path": after_path,
                "after_id": after_id,
                "limit": limit + 1,
            },
        ).mappings()
    ]
    page = keyset.page(rows, limit, lambda r: (r["path"], r["id"]))
    return page.items, page.next_cursor


def update_resource(conn: Connection, resource_id: UUID, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Change name, requires_scheduling, timezone, holiday_calendar (None in `changes` clears the
    last two: inherit again) or metadata. Values are checked by the caller."""
    row = (
        conn.execute(
            Q["update_resource"],
            {
                "id": resource_id,
                "name": changes.get("name"),
                "requires_scheduling": changes.get("requires_scheduling"),
                "timezone": changes.get("timezone"),
                "clear_timezone": "timezone" in changes and changes["timezone"] is None,
                "holiday_calendar": changes.get("holiday_calendar"),
                "clear_calendar": "holiday_calendar" in changes and changes["holiday_calendar"] is None,
                "metadata": json.dumps(changes["metadata"]) if "metadata" in changes else None,
            },
        )
        .mappings()
        .one()
    )
    return dict(row)


def delete_resource(conn: Connection, row: Mapping[str, Any]) -> None:
    """Delete a resource with its assignments, exceptions and generated rows; refused (409) while it
    has children."""
    children = conn.execute(Q["child_count"], {"id": row["id"]}).scalar_one()
    if children:
        raise Conflict(
            f"resource {row['code']!r} has {children} child resource(s); delete or move them first",
            details={"resource": row["code"], "children": children},
        )
    conn.execute(Q["delete_resource_rows"], {"id": row["id"]})
    conn.execute(Q["delete_resource"], {"id": row["id"]})


def write_plant(conn: Connection, agent_id: UUID, changes: PlantWrite) -> dict[str, dict[str, int]]:
    """Write checked changes (the caller holds the plant lock and checked them against the plant as
    it is). Returns, per section, how many items were created, updated and left unchanged."""
    summary: dict[str, dict[str, int]] = {}
    for section, name, statement in (
        ("holiday_calendars", "calendars", "upsert_calendar"),
        ("patterns", "patterns", "upsert_pattern"),
    ):
        items: list[tuple[str, Mapping[str, Any]]] = getattr(changes, name)
        counts = _counts(len(items))
        for item_name, definition in items:
            row = (
                conn.execute(
                    Q[statement],
                    {"agent_id": agent_id, "name": item_name, "definition": json.dumps(definition)},
                )
                .mappings()
                .one_or_none()
            )
            _count(counts, row)
        summary[section] = counts
    summary["resources"] = _write_resources(conn, agent_id, changes.resources)
    ids = _ids_by_code(conn, agent_id)
    summary["assignments"] = _write_assignments(conn, agent_id, changes.assignments, ids)
    summary["exceptions"] = _write_exceptions(conn, agent_id, changes.exceptions, ids)
    return summary


def _write_resources(conn: Connection, agent_id: UUID, items: Sequence[ResourceValues]) -> dict[str, int]:
    counts = _counts(len(items))
    if not items:
        return counts
    changed = {}
    for row in conn.execute(
        Q["upsert_resources"],
        {
            "agent_id": agent_id,
            "codes": [r.code for r in items],
            "names": [r.name for r in items],
            "levels": [r.level for r in items],
            "requires_scheduling": [r.requires_scheduling for r in items],
            "timezones": [r.timezone for r in items],
            "calendars": [r.holiday_calendar for r in items],
            "metadata": [json.dumps(r.metadata) for r in items],
        },
    ).mappings():
        changed[row["code"]] = row["created"]
    moved = conn.execute(
        Q["set_parents"],
        {"agent_id": agent_id, "codes": [r.code for r in items], "parents": [r.parent for r in items]},
    ).scalars()
    for code in moved:
        changed.setdefault(code, False)
    conn.execute(Q["refresh_paths"], {"agent_id": agent_id})
    counts["created"] = sum(1 for created in changed.values() if created)
    counts["updated"] = len(changed) - counts["created"]
    counts["unchanged"] = len(items) - len(changed)
    return counts


def _write_assignments(
    conn: Connection, agent_id: UUID, items: Sequence[AssignmentValues], ids: Mapping[str, UUID]
) -> dict[str, int]:
    return _upsert(
        conn,
        "upsert_assignment",
        len(items),
        {
            "agent_id": agent_id,
            "resource_ids": [ids[a.resource] for a in items],
            "patterns": [a.pattern for a in items],
            "froms": [a.effective_from for a in items],
            "tos": [a.effective_to for a in items],
            "anchors": [a.anchor for a in items],
        },
    )


def _write_exceptions(
    conn: Connection, agent_id: UUID, items: Sequence[ExceptionValues], ids: Mapping[str, UUID]
) -> dict[str, int]:
    return _upsert(
        conn,
        "upsert_exceptions",
        len(items),
        {
            "agent_id": agent_id,
            "resource_ids": [ids[e.resource] for e in items],
            "kinds": [e.kind for e in items],
            "impacts": [e.impact for e in items],
            "capacities": [e.capacity_pct for e in items],
            "starts": [e.starts_at for e in items],
            "ends": [e.ends_at for e in items],
            "rrules": [e.rrule for e in items],
            "descriptions": [e.description for e in items],
        },
    )


def _upsert(conn: Connection, statement: str, total: int, params: Mapping[str, Any]) -> dict[str, int]:
    """Run a bulk upsert that returns the rows it created or changed (with `created`); count them."""
    counts = _counts(total)
    if total:
        for row in conn.execute(Q[statement], params).mappings():
            _count(counts, row)
    return counts


def _counts(total: int) -> dict[str, int]:
    return {"created": 0, "updated": 0, "unchanged": total}


def _count(counts: dict[str, int], row: Any) -> None:
    if row is None:
        return  # unchanged
    counts["unchanged"] -= 1
    counts["created" if row["created"] else "updated"] += 1


def _ids_by_code(conn: Connection, agent_id: UUID) -> dict[str, UUID]:
    return {
        r["code"]: r["id"] for r in conn.execute(Q["resources_of_agent"], {"agent_id": agent_id}).mappings()
    }


# -- patterns and calendars -----------------------------------------------------------------------


def list_patterns(conn: Connection, owner: UUID | None) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(Q["patterns_of_agent"], {"owner": owner}).mappings()]


def get_pattern(conn: Connection, agent_id: UUID, name: str) -> dict[str, Any] | None:
    row = conn.execute(Q["get_pattern"], {"agent_id": agent_id, "name": name}).mappings().one_or_none()
    return dict(row) if row else None


def delete_pattern(conn: Connection, agent_id: UUID, name: str) -> None:
    uses = conn.execute(Q["pattern_use"], {"agent_id": agent_id, "name": name}).scalar_one()
    if uses:
        raise Conflict(
            f"pattern {name!r} is assigned {uses} time(s); delete those assignments first",
            details={"pattern": name, "assignments": uses},
        )
    if conn.execute(Q["delete_pattern"], {"agent_id": agent_id, "name": name}).one_or_none() is None:
        raise NotFound(f"no custom pattern {name!r} in your plant", details={"pattern": name})


def list_calendars(conn: Connection, owner: UUID | None) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(Q["calendars_of_agent"], {"owner": owner}).mappings()]


def get_calendar(conn: Connection, agent_id: UUID, name: str) -> dict[str, Any] | None:
    row = conn.execute(Q["get_calendar"], {"agent_id": agent_id, "name": name}).mappings().one_or_none()
    return dict(row) if row else None


def delete_calendar(conn: Connection, agent_id: UUID, name: str) -> None:
    users = conn.execute(Q["calendar_use"], {"agent_id": agent_id, "name": name}).scalars().all()
    if users:
        raise Conflict(
            f"holiday calendar {name!r} is attached to {', '.join(users)}; detach it first",
            details={"calendar": name, "resources": users},
        )
    if conn.execute(Q["delete_calendar"], {"agent_id": agent_id, "name": name}).one_or_none() is None:
        raise NotFound(f"no holiday calendar {name!r} in your plant", details={"calendar": name})


# -- assignments and exceptions -------------------------------------------------------------------


def list_assignments(
    conn: Connection, owner: UUID | None, resource_id: UUID | None = None
) -> list[dict[str, Any]]:
    params = {"owner": owner, "resource_id": resource_id}
    return [dict(r) for r in conn.execute(Q["assignments_of_agent"], params).mappings()]


def get_assignment(conn: Connection, assignment_id: UUID, owner: UUID | None) -> dict[str, Any]:
    row = conn.execute(Q["get_assignment"], {"id": assignment_id, "owner": owner}).mappings().one_or_none()
    if row is None:
        raise NotFound(f"no assignment {assignment_id}", details={"assignment_id": str(assignment_id)})
    return dict(row)


def get_assignment_by_key(conn: Connection, agent_id: UUID, values: AssignmentValues) -> dict[str, Any]:
    params = {"agent_id": agent_id, "code": values.resource, "effective_from": values.effective_from}
    return dict(conn.execute(Q["assignment_by_key"], params).mappings().one())


def delete_assignment(conn: Connection, assignment_id: UUID, owner: UUID | None) -> None:
    if conn.execute(Q["delete_assignment"], {"id": assignment_id, "owner": owner}).one_or_none() is None:
        raise NotFound(f"no assignment {assignment_id}", details={"assignment_id": str(assignment_id)})


def list_exceptions(
    conn: Connection, owner: UUID | None, resource_id: UUID | None = None
) -> list[dict[str, Any]]:
    params = {"owner": owner, "resource_id": resource_id}
    return [dict(r) for r in conn.execute(Q["exceptions_of_agent"], params).mappings()]


def get_exception(conn: Connection, exception_id: UUID, owner: UUID | None) -> dict[str, Any]:
    row = conn.execute(Q["get_exception"], {"id": exception_id, "owner": owner}).mappings().one_or_none()
    if row is None:
        raise NotFound(f"no exception {exception_id}", details={"exception_id": str(exception_id)})
    return dict(row)


def get_exception_by_key(conn: Connection, agent_id: UUID, values: ExceptionValues) -> dict[str, Any]:
    params = {
        "agent_id": agent_id,
        "code": values.resource,
        "kind": values.kind,
        "starts_at": values.starts_at,
        "rrule": values.rrule,
    }
    return dict(conn.execute(Q["exception_by_key"], params).mappings().one())


def delete_exception(conn: Connection, exception_id: UUID, owner: UUID | None) -> None:
    if conn.execute(Q["delete_exception"], {"id": exception_id, "owner": owner}).one_or_none() is None:
        raise NotFound(f"no exception {exception_id}", details={"exception_id": str(exception_id)})


# -- the agent's generate task (POST /schedules/generate) ----------------------------------------


def generate_task(conn: Connection, agent_id: UUID) -> dict[str, Any] | None:
    """The agent's generate task (id, status), under a lock held until commit; None: none yet."""
    conn.execute(Q["generate_task_lock"], {"agent_id": str(agent_id)})
    row = conn.execute(Q["get_generate_task"], {"agent_id": agent_id}).mappings().one_or_none()
    return dict(row) if row else None


def set_generate_task(conn: Connection, agent_id: UUID, task_id: UUID) -> None:
    conn.execute(Q["set_generate_task"], {"agent_id": agent_id, "task_id": task_id})


# -- public shapes --------------------------------------------------------------------------------


def public_resource(row: Mapping[str, Any], *, timezone: str | None = None) -> dict[str, Any]:
    """A resource as the API and CLI show it; `timezone` is the effective zone when known."""
    return {
        "id": str(row["id"]),
        "code": row["code"],
        "name": row["name"],
        "level": row["level"],
        "parent": row.get("parent_code"),
        "parent_id": None if row["parent_id"] is None else str(row["parent_id"]),
        "path": row["path"],
        "requires_scheduling": row["requires_scheduling"],
        "timezone": timezone or row["timezone"],
        "timezone_own": row["timezone"],
        "holiday_calendar": row["holiday_calendar"],
        "metadata": row["metadata"],
        "agent_id": str(row["agent_id"]),
        "created_at": iso_utc(row["created_at"]),
        "updated_at": iso_utc(row["updated_at"]),
    }


def public_assignment(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "resource_id": str(row["resource_id"]),
        "resource": row.get("resource_code"),
        "pattern": row["pattern"],
        "effective_from": row["effective_from"].isoformat(),
        "effective_to": _iso(row["effective_to"]),
        "anchor": _iso(row["anchor"]),
        "created_at": iso_utc(row["created_at"]),
    }


def public_exception(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "resource_id": str(row["resource_id"]),
        "resource": row.get("resource_code"),
        "kind": row["kind"],
        "impact": row["impact"],
        "capacity_pct": row["capacity_pct"],
        "start": row["starts_at"].isoformat(),
        "end": row["ends_at"].isoformat(),
        "rrule": row["rrule"],
        "description": row["description"],
        "created_at": iso_utc(row["created_at"]),
    }


def _iso(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _as_uuid(ref: str) -> UUID | None:
    try:
        return uuid.UUID(ref)
    except (ValueError, AttributeError, TypeError):
        return None
