"""Checking plant documents before anything is stored.

A plant document is what `ordo resources import FILE` and `POST /resources/import` take: a CSV of
resources, or JSON (or YAML) with any of these sections:

```json
{"resources": [{"code": "ACME", "level": "enterprise", "children": [
     {"code": "JHB", "level": "site", "timezone": "Africa/Johannesburg", "holiday_calendar": "za"}]}],
 "holiday_calendars": [{"name": "za", "country": "ZA"}],
 "patterns": [{"name": "press_days", "kind": "weekly", "rules": [...]}],
 "assignments": [{"resource": "JHB", "pattern": "two_shift", "effective_from": "2026-01-01"}],
 "exceptions": [{"resource": "P-01", "kind": "maintenance", "start": "2026-01-05T06:00",
                 "end": "2026-01-05T10:00", "rrule": "FREQ=MONTHLY;BYDAY=1MO"}]}
```

Resources come as a tree (`children`) or a flat list (`parent` names a code); a bare list is the
resources section. They are matched to the stored plant by code: new codes are added, listed fields
of existing ones replaced, fields left out kept (so a CSV without a timezone column does not undo a
timezone set earlier), and resources the document does not mention are left alone.

The document is checked as a whole against the plant as stored, merged with the document: every
problem found is reported at once, each naming its row (CSV line) or path and field, and nothing is
stored unless there is none. Problems: a malformed field, a code listed twice, a parent that exists
neither in the document nor in the plant, a cycle, a level not below its parent's (ISA-95: enterprise,
site, area, work_center, work_unit), an unknown time zone, holiday calendar, pattern or country,
overlapping pattern rules, an assignment or exception naming a missing resource, an exception ending
before it starts.

Pure: the stored plant comes in as rows (store.plant.load_plant), the checked changes go out as
store.plant.PlantWrite.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from engine.tools.availability import LEVELS, check_zone, parse_exception
from engine.tools.holiday_calendars import parse_calendar
from engine.tools.shift_patterns import BUILT_IN_NAMES, parse_pattern
from store.plant import AssignmentValues, ExceptionValues, PlantRows, PlantWrite, ResourceValues
from store.problems import Problems

__all__ = ["CSV_COLUMNS", "SECTIONS", "check_csv", "check_document"]

SECTIONS = ("resources", "holiday_calendars", "patterns", "assignments", "exceptions")
CSV_COLUMNS = ("code", "name", "level", "parent", "timezone", "requires_scheduling", "holiday_calendar")
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
_RESOURCE_FIELDS = {*CSV_COLUMNS, "metadata", "children"}
_ASSIGNMENT_FIELDS = {"resource", "pattern", "effective_from", "effective_to", "anchor"}
_MAX_ITEMS = 100_000
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}


@dataclass
class _Item:
    """A resource as given: where it came from, and the fields it sets."""

    path: str
    row: int | None
    fields: dict[str, Any]


def check_document(doc: Any, existing: PlantRows, *, single: str | None = None) -> PlantWrite:
    """The checked changes of a JSON plant document, or InvalidPlant listing every problem.
    `single` names the one section of a one-item request (POST /assignments...): its item's path is
    then `body`."""
    problems = Problems()
    if isinstance(doc, list):
        doc = {"resources": doc}
    if not isinstance(doc, Mapping):
        problems.add("document", None, f"a plant document is an object with sections {', '.join(SECTIONS)}")
        problems.raise_if_any()
    for key in doc:
        if key not in SECTIONS:
            problems.add("document", str(key), f"unknown section; a plant document has {', '.join(SECTIONS)}")
    sections: dict[str, list[Any]] = {}
    for name in SECTIONS:
        value = doc.get(name, [])
        if not isinstance(value, list) or len(value) > _MAX_ITEMS:
            problems.add(name, None, f"{name} is a list of at most {_MAX_ITEMS} items")
            value = []
        sections[name] = value
    items = _flatten(sections["resources"], problems, single == "resources")
    return _check(items, sections, existing, problems, single)


def check_csv(text: str, existing: PlantRows) -> PlantWrite:
    """The checked changes of a CSV of resources: a header row naming columns (code and level are
    required; name, parent, timezone, requires_scheduling, holiday_calendar, and `meta.KEY` for
    metadata, are optional), then one resource per row. An empty cell means "none" (inherit the
    parent's zone or calendar). Problems name the CSV line and the column."""
    problems = Problems()
    if "\x00" in text:  # PostgreSQL text cannot hold it: refused here, naming its line
        line = text.count("\n", 0, text.index("\x00")) + 1
        problems.add("csv", None, "the CSV contains a NUL character (\\u0000)", row=line)
        problems.raise_if_any("the CSV")
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not header:
        problems.add("csv", None, "the CSV is empty: it needs a header row (code, level, ...)", row=1)
        problems.raise_if_any("the CSV")
    reader.fieldnames = header
    for column in ("code", "level"):
        if column not in header:
            problems.add("csv", column, f"the header has no {column!r} column", row=1)
    for column in header:
        if column not in CSV_COLUMNS and not column.startswith("meta.") and column:
            problems.add("csv", column, f"unknown column; use {', '.join(CSV_COLUMNS)} or meta.KEY", row=1)
    if len(set(header)) != len(header):
        problems.add("csv", None, "a column is named twice in the header", row=1)
    problems.raise_if_any("the CSV")
    items: list[_Item] = []
    for raw in reader:
        line = reader.line_num
        if None in raw:
            problems.add(f"row {line}", None, "the row has more cells than the header", row=line)
            continue
        if all(not (v or "").strip() for v in raw.values()):
            continue  # blank line
        fields: dict[str, Any] = {}
        metadata: dict[str, str] = {}
        for column, value in raw.items():
            cell = (value or "").strip()
            if column.startswith("meta."):
                if cell:
                    metadata[column[5:]] = cell
            elif column == "requires_scheduling":
                if cell.lower() in _TRUE:
                    fields[column] = True
                elif cell.lower() in _FALSE:
                    fields[column] = False
                elif cell:
                    fields[column] = cell  # refused by the field check, naming the row
            else:
                fields[column] = cell or None
        if any(c.startswith("meta.") for c in header):
            fields["metadata"] = metadata
        items.append(_Item(f"row {line}", line, fields))
    return _check(items, {name: [] for name in SECTIONS}, existing, problems, None, what="the CSV")


# --------------------------------------------------------------------------------------- checking


def _flatten(roots: list[Any], problems: Problems, single: bool = False) -> list[_Item]:
    """Tree or flat list -> items in document order; a child's parent is the node it sits under."""
    out: list[_Item] = []
    stack: list[tuple[Any, str, str | None]] = [
        (node, "body" if single else f"resources[{i}]", None) for i, node in reversed(list(enumerate(roots)))
    ]
    while stack:
        node, path, implied_parent = stack.pop()
        if not isinstance(node, Mapping):
            problems.add(path, None, "a resource is an object with code and level")
            continue
        fields = {k: v for k, v in node.items() if k != "children"}
        if implied_parent is not None:
            if "parent" in fields and fields["parent"] != implied_parent:
                problems.add(
                    path,
                    "parent",
                    f"says {fields['parent']!r} but the resource sits under {implied_parent!r}",
                )
            fields["parent"] = implied_parent
        out.append(_Item(path, None, fields))
        children = node.get("children", [])
        if not isinstance(children, list):
            problems.add(path, "children", "children is a list of resources")
            continue
        code = node.get("code") if isinstance(node.get("code"), str) else None
        for j in reversed(range(len(children))):
            stack.append((children[j], f"{path}.children[{j}]", code or "?"))
    return out


def _check(
    items: list[_Item],
    sections: Mapping[str, list[Any]],
    existing: PlantRows,
    problems: Problems,
    single: str | None,
    *,
    what: str = "the plant document",
) -> PlantWrite:
    def where(section: str, i: int) -> str:
        return "body" if single == section else f"{section}[{i}]"

    stored = {r["code"]: r for r in existing.resources}
    stored_by_id = {str(r["id"]): r for r in existing.resources}
    out = PlantWrite()

    calendar_names = {r["name"] for r in existing.calendars}
    for i, doc in enumerate(sections["holiday_calendars"]):
        calendar = parse_calendar(doc, problems, where("holiday_calendars", i))
        if calendar is not None:
            if any(name == calendar.name for name, _ in out.calendars):
                problems.add(
                    where("holiday_calendars", i), "name", f"calendar {calendar.name!r} is listed twice"
                )
            out.calendars.append((calendar.name, dict(calendar.definition)))
            calendar_names.add(calendar.name)

    pattern_names = {r["name"] for r in existing.patterns} | set(BUILT_IN_NAMES)
    for i, doc in enumerate(sections["patterns"]):
        pattern = parse_pattern(doc, problems, where("patterns", i))
        if pattern is None:
            continue
        if pattern.name in BUILT_IN_NAMES:
            problems.add(
                where("patterns", i), "name", f"{pattern.name!r} is a built-in pattern; choose another name"
            )
        elif any(name == pattern.name for name, _ in out.patterns):
            problems.add(where("patterns", i), "name", f"pattern {pattern.name!r} is listed twice")
        out.patterns.append((pattern.name, dict(pattern.definition)))
        pattern_names.add(pattern.name)

    merged = _check_resources(items, stored, calendar_names, problems, out)

    for i, doc in enumerate(sections["assignments"]):
        assignment = _check_assignment(
            doc, merged, stored_by_id, pattern_names, problems, where("assignments", i)
        )
        if assignment is not None:
            out.assignments.append(assignment)

    for i, doc in enumerate(sections["exceptions"]):
        path = where("exceptions", i)
        if not isinstance(doc, Mapping):
            problems.add(path, None, "an exception is an object with resource, kind, start and end")
            continue
        code = _resource_ref(doc.get("resource"), merged, stored_by_id, problems, path)
        if code is None:
            continue
        rule = parse_exception(doc, _zone_of(code, merged), problems, path)
        if rule is not None:
            out.exceptions.append(
                ExceptionValues(
                    code,
                    rule.kind,
                    rule.impact,
                    rule.capacity_pct,
                    rule.starts_at,
                    rule.ends_at,
                    rule.rrule,
                    rule.description,
                )
            )
    problems.raise_if_any(what if single is None else "the request")
    return out


def _check_resources(
    items: list[_Item],
    stored: Mapping[str, Mapping[str, Any]],
    calendar_names: set[str],
    problems: Problems,
    out: PlantWrite,
) -> dict[str, dict[str, Any]]:
    """Check the resources and return the merged plant: code -> {level, parent, timezone}."""
    merged: dict[str, dict[str, Any]] = {
        code: {"level": r["level"], "parent": r.get("parent_code"), "timezone": r["timezone"], "item": None}
        for code, r in stored.items()
    }
    given: dict[str, _Item] = {}
    checked: list[tuple[_Item, ResourceValues]] = []
    for item in items:
        values = _resource_values(item, stored, calendar_names, problems)
        if values is None:
            continue
        if values.code in given:
            first = given[values.code]
            problems.add(
                item.path, "code", f"{values.code!r} is listed twice (first at {first.path})", row=item.row
            )
            continue
        given[values.code] = item
        merged[values.code] = {
            "level": values.level,
            "parent": values.parent,
            "timezone": values.timezone,
            "item": item,
        }
        checked.append((item, values))
    for item, values in checked:
        parent = values.parent
        if parent is not None and parent not in merged:
            problems.add(
                item.path,
                "parent",
                f"parent {parent!r} is neither in the document nor in the plant",
                row=item.row,
            )
    _check_cycles(merged, problems)
    _check_levels(merged, problems)
    out.resources.extend(values for _, values in checked)
    return merged


def _resource_values(
    item: _Item, stored: Mapping[str, Mapping[str, Any]], calendar_names: set[str], problems: Problems
) -> ResourceValues | None:
    f, path, row = item.fields, item.path, item.row
    before = problems.count
    for key in f:
        if key not in _RESOURCE_FIELDS:
            problems.add(
                path,
                str(key),
                f"unknown field; a resource has {', '.join(sorted(_RESOURCE_FIELDS))}",
                row=row,
            )
    code = f.get("code")
    if not isinstance(code, str) or not _CODE.match(code):
        problems.add(
            path,
            "code",
            "code is 1-100 letters, digits and _ . : - (starting with a letter or digit)",
            row=row,
        )
        return None
    old = stored.get(code)
    level = _level(f.get("level", old["level"] if old else None))
    if level is None:
        problems.add(
            path, "level", f"level must be one of {', '.join(LEVELS)}, not {f.get('level')!r}", row=row
        )
    parent = f["parent"] if "parent" in f else (old.get("parent_code") if old else None)
    if parent is not None and (not isinstance(parent, str) or not _CODE.match(parent)):
        problems.add(path, "parent", f"parent is a resource code, not {parent!r}", row=row)
    if parent == code:
        problems.add(path, "parent", "a resource cannot be its own parent", row=row)
    name = f["name"] if "name" in f else (old["name"] if old else "")
    name = name or ""
    if not isinstance(name, str) or len(name) > 200:
        problems.add(path, "name", "name is text of at most 200 characters", row=row)
    timezone = f["timezone"] if "timezone" in f else (old["timezone"] if old else None)
    if timezone is not None and (message := check_zone(timezone)):
        problems.add(path, "timezone", message, row=row)
    calendar = (
        f["holiday_calendar"] if "holiday_calendar" in f else (old["holiday_calendar"] if old else None)
    )
    if calendar is not None and calendar not in calendar_names:
        problems.add(
            path,
            "holiday_calendar",
            f"no holiday calendar {calendar!r} in the document or the plant",
            row=row,
        )
    scheduling = f.get("requires_scheduling", old["requires_scheduling"] if old else None)
    if scheduling is None:
        scheduling = level == "work_unit"
    if not isinstance(scheduling, bool):
        problems.add(path, "requires_scheduling", "requires_scheduling is true or false", row=row)
    metadata = f["metadata"] if "metadata" in f else (old["metadata"] if old else {})
    if not isinstance(metadata, Mapping):
        problems.add(path, "metadata", "metadata is an object", row=row)
    if problems.count > before or level is None:
        return None
    return ResourceValues(code, name, level, parent, scheduling, timezone, calendar, dict(metadata))


def _level(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    normal = re.sub(r"[\s-]+", "_", value.strip().lower())
    normal = {"workcenter": "work_center", "workunit": "work_unit"}.get(normal, normal)
    return normal if normal in LEVELS else None


def _check_cycles(merged: Mapping[str, Mapping[str, Any]], problems: Problems) -> None:
    """A resource may not be its own ancestor. Each cycle is reported once, on a resource of the
    document whose parent closes it."""
    done: set[str] = set()
    for start in merged:
        if start in done:
            continue
        trail: list[str] = []
        on_trail: set[str] = set()
        node: str | None = start
        while node is not None and node in merged and node not in done:
            if node in on_trail:
                cycle = trail[trail.index(node) :]
                culprit = next((c for c in cycle if merged[c]["item"] is not None), cycle[0])
                item = merged[culprit]["item"]
                loop = " -> ".join([*cycle[cycle.index(culprit) :], *cycle[: cycle.index(culprit)], culprit])
                problems.add(
                    item.path if item else culprit,
                    "parent",
                    f"the hierarchy would contain a cycle: {loop} (each is the parent of the previous)",
                    row=item.row if item else None,
                )
                break
            trail.append(node)
            on_trail.add(node)
            node = merged[node]["parent"]
        done.update(trail)


def _check_levels(merged: Mapping[str, Mapping[str, Any]], problems: Problems) -> None:
    """ISA-95: a resource sits below its parent's level (a work unit under a work center, ...)."""
    for code, info in merged.items():
        parent = info["parent"]
        if parent is None or parent not in merged:
            continue
        if info["item"] is None and merged[parent]["item"] is None:
            continue  # stored as it was: checked when it was written
        mine, theirs = LEVELS.index(info["level"]), LEVELS.index(merged[parent]["level"])
        if mine <= theirs:
            item = info["item"] or merged[parent]["item"]
            problems.add(
                item.path,
                "level",
                f"{code!r} ({info['level']}) cannot sit under {parent!r} ({merged[parent]['level']}): "
                f"levels go {' > '.join(LEVELS)}",
                row=item.row,
            )


def _check_assignment(
    doc: Any,
    merged: Mapping[str, Mapping[str, Any]],
    stored_by_id: Mapping[str, Mapping[str, Any]],
    pattern_names: set[str],
    problems: Problems,
    path: str,
) -> AssignmentValues | None:
    if not isinstance(doc, Mapping):
        problems.add(path, None, "an assignment is an object with resource, pattern and effective_from")
        return None
    before = problems.count
    for key in doc:
        if key not in _ASSIGNMENT_FIELDS:
            problems.add(
                path, str(key), f"unknown field; an assignment has {', '.join(sorted(_ASSIGNMENT_FIELDS))}"
            )
    code = _resource_ref(doc.get("resource"), merged, stored_by_id, problems, path)
    pattern = doc.get("pattern")
    if not isinstance(pattern, str) or pattern not in pattern_names:
        custom = sorted(pattern_names - set(BUILT_IN_NAMES))
        problems.add(
            path,
            "pattern",
            f"unknown pattern {pattern!r}; built-ins: {', '.join(BUILT_IN_NAMES)}"
            + (f"; yours: {', '.join(custom)}" if custom else ""),
        )
    first = _date(doc.get("effective_from"), problems, path, "effective_from", required=True)
    last = _date(doc.get("effective_to"), problems, path, "effective_to", required=False)
    anchor = _date(doc.get("anchor"), problems, path, "anchor", required=False)
    if first is not None and last is not None and last < first:
        problems.add(path, "effective_to", f"the assignment ends ({last}) before it starts ({first})")
    if problems.count > before or code is None or first is None or not isinstance(pattern, str):
        return None
    return AssignmentValues(code, pattern, first, last, anchor)


def _resource_ref(
    ref: Any,
    merged: Mapping[str, Mapping[str, Any]],
    stored_by_id: Mapping[str, Mapping[str, Any]],
    problems: Problems,
    path: str,
) -> str | None:
    """The code of the resource `ref` (a code, or the id of a stored resource) names."""
    if isinstance(ref, str):
        if ref in merged:
            return ref
        try:
            row = stored_by_id.get(str(uuid.UUID(ref)))
        except ValueError:
            row = None
        if row is not None:
            return row["code"]
    problems.add(path, "resource", f"no resource {ref!r} in the document or the plant (give its code or id)")
    return None


def _zone_of(code: str, merged: Mapping[str, Mapping[str, Any]]) -> str:
    seen: set[str] = set()
    node: str | None = code
    while node is not None and node in merged and node not in seen:
        seen.add(node)
        if merged[node]["timezone"]:
            return merged[node]["timezone"]
        node = merged[node]["parent"]
    return "UTC"


def _date(value: Any, problems: Problems, path: str, name: str, *, required: bool) -> date | None:
    if value is None and not required:
        return None
    if isinstance(value, date):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    problems.add(path, name, f"expected a date YYYY-MM-DD, got {value!r}")
    return None
