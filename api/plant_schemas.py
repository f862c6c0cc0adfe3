"""Request and response bodies of the plant and availability routes.

Plant documents (resources, patterns, holiday calendars, assignments, exceptions) are not modelled
field by field: routes take the JSON object as sent and `engine.tools.plant_documents` checks it as a
whole, the same code `ordo resources import` uses, so that every problem is reported at once with its
row and field. The JSON Schemas below document those documents in the OpenAPI; they are no stricter
than the checks.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import (
    AnyJson,
    Timestamp,
    _Document,  # a JSON object, documented by its class's schema
)
from engine.tools.availability import EXCEPTION_KINDS, IMPACTS, LEVELS, STATUSES
from engine.tools.holiday_calendars import OBSERVED_SETTINGS
from engine.tools.plant import DAY_CSV_COLUMNS, PATCHABLE, SHIFT_CSV_COLUMNS

__all__ = [
    "DAY_CSV",
    "SHIFT_CSV",
    "AssignmentCreate",
    "AssignmentPatch",
    "AssignmentPublic",
    "AvailabilityReport",
    "CalendarPublic",
    "CalendarPut",
    "ChangePage",
    "ChangesSince",
    "ExceptionCreate",
    "ExceptionPatch",
    "ExceptionPublic",
    "GenerateRequest",
    "Generation",
    "HolidayList",
    "ImportSummary",
    "PatternPreview",
    "PatternPublic",
    "PatternPut",
    "PlantImport",
    "ResourceNode",
    "ResourcePage",
    "ResourcePatch",
    "ResourcePublic",
    "csv_content",
]

_DATE = {"type": "string", "format": "date"}
_CODE = {"type": "string", "minLength": 1, "maxLength": 100}
_TEXT = {"type": "string"}

_RESOURCE = {
    "type": "object",
    "description": "A resource. Tree form nests `children`; flat form names `parent` by code.",
    "properties": {
        "code": {**_CODE, "description": "Unique in the plant; letters, digits and _ . : -"},
        "name": {"type": ["string", "null"], "maxLength": 200},
        "level": {"type": "string", "description": f"One of {', '.join(LEVELS)} (ISA-95, top down)."},
        "parent": {"type": ["string", "null"], "description": "The parent's code (flat form)."},
        "timezone": {"type": ["string", "null"], "description": "IANA zone; null inherits the parent's."},
        "requires_scheduling": {"type": "boolean", "description": "Default: true for work units."},
        "holiday_calendar": {"type": ["string", "null"], "description": "A calendar's name; null inherits."},
        "metadata": {"type": "object"},
        "children": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["code"],
}
_RULE = {
    "type": "object",
    "properties": {
        "days": {"description": "Weekdays: a list (mon ... sun) or text such as 'mon-fri'."},
        "start": {"type": "string", "description": "HH:MM"},
        "end": {"type": "string", "description": "HH:MM; at or before start: overnight; 24:00: midnight."},
        "shift_code": _TEXT,
        "crew": {"type": ["string", "null"]},
    },
}
_PATTERN = {
    "type": "object",
    "description": "A weekly pattern (rules) or a rotation (cycle_days, shifts, crews).",
    "properties": {
        "name": _TEXT,
        "description": _TEXT,
        "kind": {"type": "string", "enum": ["weekly", "rotation"]},
        "rules": {"type": "array", "items": _RULE},
        "cycle_days": {"type": "integer"},
        "shifts": {"type": "object", "description": '{"D": {"start": "06:00", "end": "18:00"}}'},
        "crews": {
            "type": "object",
            "description": 'Roster per crew, one mark per cycle day: {"A": "DDNN----"}',
        },
    },
    "required": ["kind"],
}
_CALENDAR = {
    "type": "object",
    "description": "Public holidays of a country (the holidays library) plus custom dates and RRULEs.",
    "properties": {
        "name": _TEXT,
        "country": {"type": ["string", "null"], "description": "ISO 3166 code (ZA, US) or CC-SUB."},
        "subdivision": {"type": ["string", "null"]},
        "observed": {"type": "string", "enum": list(OBSERVED_SETTINGS)},
        "dates": {"type": "array", "description": "'YYYY-MM-DD' or {date, name}."},
        "rules": {"type": "array", "description": "{rrule, name, start}: a recurring holiday."},
        "description": _TEXT,
    },
}
_ASSIGNMENT = {
    "type": "object",
    "description": "From effective_from to effective_to (both included) the resource follows the pattern.",
    "properties": {
        "resource": {**_TEXT, "description": "The resource's id or code."},
        "pattern": {**_TEXT, "description": "A built-in (24x7, two_shift, ...) or one of yours."},
        "effective_from": _DATE,
        "effective_to": {"type": ["string", "null"], "format": "date"},
        "anchor": {"type": ["string", "null"], "format": "date", "description": "Rotation day 1."},
    },
    "required": ["resource", "pattern", "effective_from"],
}
_EXCEPTION = {
    "type": "object",
    "description": "A maintenance window, breakdown, shutdown...: one window or an RRULE series.",
    "properties": {
        "resource": {**_TEXT, "description": "The resource's id or code; it applies to everything under it."},
        "kind": {"type": "string", "enum": list(EXCEPTION_KINDS)},
        "impact": {"type": "string", "enum": list(IMPACTS)},
        "capacity_pct": {"type": ["integer", "null"], "description": "For impact 'reduced': 1-99."},
        "start": {**_TEXT, "description": "ISO date-time; without an offset: the resource's local time."},
        "end": _TEXT,
        "rrule": {"type": ["string", "null"], "description": "RFC 5545 rule, e.g. FREQ=MONTHLY;BYDAY=1MO."},
        "description": _TEXT,
    },
    "required": ["resource", "kind", "start", "end"],
}
_IMPORT = {
    "type": "object",
    "description": "A plant document: any of these sections, checked as a whole and stored all or nothing.",
    "properties": {
        "resources": {"type": "array", "items": _RESOURCE},
        "holiday_calendars": {"type": "array", "items": _CALENDAR},
        "patterns": {"type": "array", "items": _PATTERN},
        "assignments": {"type": "array", "items": _ASSIGNMENT},
        "exceptions": {"type": "array", "items": _EXCEPTION},
    },
}
_PATCH = {
    "type": "object",
    "description": "Fields to change (the code cannot change); checked with the whole tree.",
    "properties": {k: v for k, v in _RESOURCE["properties"].items() if k not in ("code", "children")},
}


class PlantImport(_Document):
    document_schema = _IMPORT


class ResourcePatch(_Document):
    document_schema = _PATCH


class PatternPut(_Document):
    document_schema = _PATTERN


class CalendarPut(_Document):
    document_schema = _CALENDAR


class AssignmentCreate(_Document):
    document_schema = _ASSIGNMENT


class AssignmentPatch(_Document):
    document_schema = {
        "type": "object",
        "description": "Fields to change; resource and effective_from identify the assignment and stay.",
        "properties": {k: _ASSIGNMENT["properties"][k] for k in PATCHABLE["assignments"]},
    }


class ExceptionCreate(_Document):
    document_schema = _EXCEPTION


class ExceptionPatch(_Document):
    document_schema = {
        "type": "object",
        "description": "Fields to change; resource, kind, start and rrule identify the exception and stay.",
        "properties": {k: _EXCEPTION["properties"][k] for k in PATCHABLE["exceptions"]},
    }


class GenerateRequest(_Document):
    document_schema = {
        "type": "object",
        "description": "schedule.generate's input: {start, end}, {start, days} or {days} from today.",
        "properties": {
            "start": _DATE,
            "end": _DATE,
            "days": {"type": "integer"},
            "resource_ids": {"type": "array", "items": _TEXT},
            "regenerate": {"type": "boolean"},
        },
    }


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Counts(BaseModel):
    created: int
    updated: int
    unchanged: int


class ImportSummary(BaseModel):
    resources: Counts
    holiday_calendars: Counts
    patterns: Counts
    assignments: Counts
    exceptions: Counts


class ResourcePublic(_Open):
    id: str
    code: str
    name: str
    level: Literal[LEVELS]  # type: ignore[valid-type]
    parent: str | None
    parent_id: str | None
    path: str
    requires_scheduling: bool
    timezone: str | None = Field(description="The effective zone (its own or inherited).")
    timezone_own: str | None
    holiday_calendar: str | None
    metadata: dict[str, Any]
    agent_id: str
    created_at: Timestamp
    updated_at: Timestamp


class ResourcePage(BaseModel):
    items: list[ResourcePublic]
    next_cursor: str | None


class ResourceNode(ResourcePublic):
    children: list[ResourceNode]


ResourceNode.model_rebuild()


class PatternPublic(_Open):
    name: str
    built_in: bool
    kind: Literal["weekly", "rotation"]
    description: str
    weekly_hours: float = Field(description="Planned hours in an average week (the resource's view).")


class CalendarPublic(_Open):
    name: str
    country: str | None
    subdivision: str | None
    observed: Literal[OBSERVED_SETTINGS]  # type: ignore[valid-type]


class Holiday(BaseModel):
    date: str
    name: str


class HolidayList(BaseModel):
    calendar: str
    holidays: list[Holiday]


class AssignmentPublic(BaseModel):
    id: str
    resource_id: str
    resource: str | None
    pattern: str
    effective_from: str
    effective_to: str | None
    anchor: str | None
    created_at: Timestamp


class ExceptionPublic(BaseModel):
    id: str
    resource_id: str
    resource: str | None
    kind: Literal[EXCEPTION_KINDS]  # type: ignore[valid-type]
    impact: Literal[IMPACTS]  # type: ignore[valid-type]
    capacity_pct: int
    start: Timestamp
    end: Timestamp
    rrule: str | None
    description: str
    created_at: Timestamp


class PreviewShift(BaseModel):
    start: Timestamp
    end: Timestamp
    shift_code: str
    crew: str | None


class PreviewDay(BaseModel):
    date: str
    planned_hours: float
    holiday: str | None
    shifts: list[PreviewShift]


class PatternPreview(BaseModel):
    days: list[PreviewDay]
    total_hours: float


class Shift(BaseModel):
    start: Timestamp = Field(description="ISO 8601 in the resource's zone.")
    end: Timestamp
    hours: float = Field(description="Real hours (a DST night is 7 or 9 h long).")
    shift_code: str
    crew: str | None
    status: Literal[STATUSES]  # type: ignore[valid-type]
    capacity_pct: int
    exception_id: str | None
    note: str | None = Field(description="The holiday's name or the exception's description.")


class Day(BaseModel):
    date: str
    status: Literal["operating", "holiday", "maintenance", "down", "off"] = Field(
        description="operating: some time available; holiday; maintenance or down: planned time all "
        "under exceptions; off: nothing planned."
    )
    planned_hours: float
    operating_hours: float
    maintenance_hours: float
    holiday_hours: float
    other_down_hours: float = Field(description="Breakdowns, shutdowns and other exceptions.")
    capacity_hours: float = Field(description="Hours weighted by capacity (a reduced hour at 60% is 0.6).")
    holiday: str | None
    shifts: list[Shift] | None = Field(default=None, description="With detail=shifts.")


class Totals(BaseModel):
    planned_hours: float
    operating_hours: float
    maintenance_hours: float
    holiday_hours: float
    other_down_hours: float
    capacity_hours: float


class ResourceAvailability(BaseModel):
    id: str
    code: str
    name: str
    path: str
    timezone: str
    totals: Totals
    days: list[Day]


class AvailabilityReport(BaseModel):
    start: str
    end: str
    resources: list[ResourceAvailability]


class ResourceChanges(BaseModel):
    resource_id: str
    code: str | None
    added: int
    removed: int
    changed: int


class ChangeCounts(BaseModel):
    added: int
    removed: int
    changed: int
    resources_changed: int
    resources: list[ResourceChanges] = Field(description="The resources that changed most (at most 50).")
    truncated: bool


class Generation(BaseModel):
    generation_id: int
    agent_id: str
    created_at: Timestamp
    start: str
    end: str
    requested: list[str] | None
    regenerate: bool
    run_id: int | None
    resources: int
    rows: int
    fresh: bool = Field(description="The range held nothing before: every row was added.")
    duration_s: float | None
    changes: ChangeCounts


class ChangesSince(BaseModel):
    generations: list[Generation]
    next_since: int | str | None = Field(description="Pass as `since` to get only later generations.")


class ShiftChange(BaseModel):
    resource_id: str
    code: str | None
    date: str
    start: Timestamp
    change: Literal["added", "removed", "changed"]
    old: AnyJson = Field(description="The shift before (removed, changed).")
    new: AnyJson = Field(description="The shift after (added, changed).")


class ChangePage(BaseModel):
    generation_id: int
    fresh: bool
    items: list[ShiftChange]
    next_cursor: str | None


def csv_content(columns: tuple[str, ...], example: str) -> dict[str, Any]:
    """An OpenAPI `text/csv` response entry naming its columns."""
    return {
        "schema": {"type": "string", "description": f"CSV with a header row: {', '.join(columns)}."},
        "example": ",".join(columns) + "\n" + example,
    }


DAY_CSV = csv_content(
    DAY_CSV_COLUMNS,
    "1b4e28ba-2fa1-11d2-883f-0016d3cca427,P-01,2026-04-27,holiday,16.0,0.0,0.0,16.0,0.0,0.0,Freedom Day\n",
)
SHIFT_CSV = csv_content(
    SHIFT_CSV_COLUMNS,
    "1b4e28ba-2fa1-11d2-883f-0016d3cca427,P-01,2026-04-28,D,,2026-04-28T06:00:00+02:00,"
    "2026-04-28T14:00:00+02:00,8.0,available,100,,\n",
)
