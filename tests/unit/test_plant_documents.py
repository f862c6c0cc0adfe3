"""engine.tools.plant_documents: plant documents and CSVs checked as a whole, every problem named by
row (or path) and field."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from engine.tools.plant_documents import check_csv, check_document
from store.errors import InvalidPlant
from store.plant import PlantRows

EMPTY = PlantRows([], [], [], [], [])


def stored(*resources: tuple[str, str, str | None]) -> PlantRows:
    rows = [
        {
            "id": uuid.uuid4(),
            "code": code,
            "level": level,
            "parent_code": parent,
            "name": "",
            "timezone": None,
            "holiday_calendar": None,
            "requires_scheduling": level == "work_unit",
            "metadata": {},
        }
        for code, level, parent in resources
    ]
    return PlantRows(rows, [], [], [], [])


def problems_of(call, *args, **kwargs) -> list[dict]:
    with pytest.raises(InvalidPlant) as raised:
        call(*args, **kwargs)
    return raised.value.details["errors"]


TREE = {
    "resources": [
        {
            "code": "ACME",
            "level": "enterprise",
            "children": [
                {
                    "code": "JHB",
                    "level": "site",
                    "timezone": "Africa/Johannesburg",
                    "children": [{"code": "P-01", "level": "Work Unit", "metadata": {"make": "Schuler"}}],
                }
            ],
        }
    ]
}


def test_a_tree_becomes_resources_with_their_parents() -> None:
    changes = check_document(TREE, EMPTY)
    assert [(r.code, r.level, r.parent, r.timezone, r.requires_scheduling) for r in changes.resources] == [
        ("ACME", "enterprise", None, None, False),
        ("JHB", "site", "ACME", "Africa/Johannesburg", False),
        ("P-01", "work_unit", "JHB", None, True),
    ]
    assert changes.resources[2].metadata == {"make": "Schuler"}


def test_a_csv_becomes_resources_and_its_problems_name_line_and_column() -> None:
    good = check_csv(
        "code,level,parent,timezone,requires_scheduling,meta.line\n"
        "ACME,enterprise,,,,\n"
        "JHB,site,ACME,Africa/Johannesburg,,\n"
        "P-01,work_unit,JHB,,yes,L1\n",
        EMPTY,
    )
    assert [(r.code, r.parent, r.requires_scheduling, dict(r.metadata)) for r in good.resources] == [
        ("ACME", None, False, {}),
        ("JHB", "ACME", False, {}),
        ("P-01", "JHB", True, {"line": "L1"}),
    ]
    errors = problems_of(
        check_csv,
        "code,level,parent,timezone\n"
        "ACME,enterprise,,\n"
        "JHB,site,ACME,Mars/Base\n"
        "P-01,work_unit,NOPE,\n"
        "P-02,galaxy,JHB,\n"
        "P-01,work_unit,JHB,\n",
        EMPTY,
    )
    assert [(e["row"], e["field"]) for e in errors] == [
        (3, "timezone"),
        (5, "level"),
        (6, "code"),
        (4, "parent"),
    ]
    assert errors[3]["message"] == "parent 'NOPE' is neither in the document nor in the plant"


def test_a_csv_with_an_unknown_column_is_refused_at_the_header() -> None:
    errors = problems_of(check_csv, "code,level,timezon\nA,site,UTC\n", EMPTY)
    assert errors == [
        {
            "path": "csv",
            "field": "timezon",
            "row": 1,
            "message": "unknown column; use code, name, level, parent, "
            "timezone, requires_scheduling, holiday_calendar or meta.KEY",
        }
    ]


def test_a_cycle_through_the_stored_plant_is_refused() -> None:
    """Moving the site under its own machine closes a loop: site -> area -> machine -> site."""
    plant = stored(("S", "site", None), ("A", "area", "S"), ("M", "work_unit", "A"))
    errors = problems_of(check_document, {"resources": [{"code": "S", "parent": "M"}]}, plant)
    cycle = next(e for e in errors if "cycle" in e["message"])
    assert (cycle["path"], cycle["field"]) == ("resources[0]", "parent")
    assert "S -> M -> A -> S" in cycle["message"]


def test_a_level_must_sit_below_its_parents() -> None:
    plant = stored(("S", "site", None), ("M", "work_unit", "S"))
    errors = problems_of(check_document, {"resources": [{"code": "S", "level": "work_unit"}]}, plant)
    assert [(e["path"], e["field"]) for e in errors] == [("resources[0]", "level")]
    assert "'M' (work_unit) cannot sit under 'S' (work_unit)" in errors[0]["message"]


def test_assignments_and_exceptions_name_missing_resources_and_bad_fields() -> None:
    errors = problems_of(
        check_document,
        {
            "patterns": [
                {
                    "name": "bad",
                    "kind": "weekly",
                    "rules": [
                        {"days": "mon", "start": "06:00", "end": "14:00", "shift_code": "D"},
                        {"days": "mon", "start": "13:00", "end": "15:00", "shift_code": "X"},
                    ],
                },
                {
                    "name": "two_shift",
                    "kind": "weekly",
                    "rules": [{"days": "mon", "start": "06:00", "end": "07:00", "shift_code": "D"}],
                },
            ],
            "holiday_calendars": [{"name": "moon", "country": "XX"}],
            "assignments": [
                {"resource": "GHOST", "pattern": "two_shift", "effective_from": "2026-01-01"},
                {
                    "resource": "S",
                    "pattern": "nope",
                    "effective_from": "2026-02-01",
                    "effective_to": "2026-01-01",
                },
            ],
            "exceptions": [
                {
                    "resource": "S",
                    "kind": "maintenance",
                    "start": "2026-01-05T10:00",
                    "end": "2026-01-05T06:00",
                },
            ],
        },
        stored(("S", "site", None)),
    )
    found = {(e["path"], e["field"]) for e in errors}
    assert found == {
        ("patterns[0]", "rules[1]"),
        ("patterns[1]", "name"),
        ("holiday_calendars[0]", "country"),
        ("assignments[0]", "resource"),
        ("assignments[1]", "pattern"),
        ("assignments[1]", "effective_to"),
        ("exceptions[0]", "end"),
    }


def test_exception_times_without_an_offset_are_read_in_the_resources_zone() -> None:
    plant = stored(("S", "site", None), ("M", "work_unit", "S"))
    plant.resources[0]["timezone"] = "Africa/Johannesburg"
    changes = check_document(
        {
            "exceptions": [
                {
                    "resource": "M",
                    "kind": "maintenance",
                    "start": "2026-01-05T06:00",
                    "end": "2026-01-05T10:00",
                }
            ]
        },
        plant,
    )
    assert changes.exceptions[0].starts_at == datetime(2026, 1, 5, 4, tzinfo=UTC)


def test_resources_can_be_named_by_id() -> None:
    plant = stored(("S", "site", None))
    changes = check_document(
        {
            "assignments": [
                {"resource": str(plant.resources[0]["id"]), "pattern": "24x7", "effective_from": "2026-01-01"}
            ]
        },
        plant,
    )
    assert changes.assignments[0].resource == "S"


def test_fields_left_out_keep_their_stored_values() -> None:
    plant = stored(("S", "site", None))
    plant.resources[0]["timezone"] = "Europe/Chisinau"
    (values,) = check_document({"resources": [{"code": "S", "name": "Site"}]}, plant).resources
    assert (values.name, values.timezone, values.level) == ("Site", "Europe/Chisinau", "site")


def test_a_single_item_request_reports_its_body() -> None:
    errors = problems_of(
        check_document,
        {"assignments": [{"resource": "X", "pattern": "24x7", "effective_from": "soon"}]},
        EMPTY,
        single="assignments",
    )
    assert {(e["path"], e["field"]) for e in errors} == {("body", "resource"), ("body", "effective_from")}
