"""The plant and availability API on a real server: import (JSON and CSV, all or nothing), the
hierarchy, scopes and plant isolation, POST /schedules/generate through a worker, availability as
JSON and CSV, changes, and pattern previews."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from store.db import Database
from tests.api.conftest import TokenFactory, bearer
from tests.helpers import running_worker, wait_for

PLANT_SCOPES = ("availability:read", "availability:write", "runs:read")

PLANT = {
    "holiday_calendars": [{"name": "za", "country": "ZA"}],
    "resources": [
        {
            "code": "ACME",
            "level": "enterprise",
            "children": [
                {
                    "code": "JHB",
                    "level": "site",
                    "timezone": "Africa/Johannesburg",
                    "holiday_calendar": "za",
                    "children": [
                        {
                            "code": "PRESS",
                            "level": "area",
                            "children": [
                                {
                                    "code": "L1",
                                    "level": "work_center",
                                    "children": [
                                        {"code": "P-01", "level": "work_unit"},
                                        {"code": "P-02", "level": "work_unit"},
                                    ],
                                }
                            ],
                        }
                    ],
                }
            ],
        }
    ],
    "assignments": [{"resource": "PRESS", "pattern": "two_shift", "effective_from": "2025-01-01"}],
}


@pytest.fixture
def planner(make_token: TokenFactory) -> dict[str, str]:
    return bearer(make_token("planner", *PLANT_SCOPES))


def imported(client: httpx.Client, headers: dict[str, str], document: Any = PLANT) -> dict[str, Any]:
    response = client.post("/resources/import", json=document, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_plant_document_is_imported_and_served_as_a_tree(client: httpx.Client, planner: dict) -> None:
    summary = imported(client, planner)
    assert summary["resources"] == {"created": 6, "updated": 0, "unchanged": 0}
    assert summary["assignments"]["created"] == 1
    tree = client.get("/resources/hierarchy", headers=planner).json()
    assert [r["code"] for r in tree] == ["ACME"]
    line = tree[0]["children"][0]["children"][0]["children"][0]
    assert [m["code"] for m in line["children"]] == ["P-01", "P-02"]
    machine = client.get("/resources/P-01", headers=planner).json()
    assert (machine["path"], machine["timezone"], machine["timezone_own"]) == (
        "ACME/JHB/PRESS/L1/P-01",
        "Africa/Johannesburg",
        None,
    )
    assert client.get(f"/resources/{machine['id']}", headers=planner).json()["code"] == "P-01"
    page = client.get("/resources", params={"level": "work_unit"}, headers=planner).json()
    assert [r["code"] for r in page["items"]] == ["P-01", "P-02"]


def test_a_csv_with_a_missing_parent_is_refused_naming_row_and_field(
    client: httpx.Client, planner: dict
) -> None:
    body = "code,level,parent\nACME,enterprise,\nP-9,work_unit,NOWHERE\n"
    response = client.post("/resources/import", content=body, headers={**planner, "Content-Type": "text/csv"})
    assert response.status_code == 422
    error = response.json()
    assert error["code"] == "INVALID_PLANT"
    assert error["details"]["errors"] == [
        {
            "path": "row 3",
            "field": "parent",
            "row": 3,
            "message": "parent 'NOWHERE' is neither in the document nor in the plant",
        }
    ]
    assert client.get("/resources", headers=planner).json()["items"] == []


@pytest.mark.parametrize(
    ("document", "path", "field"),
    [
        (
            {"assignments": [{"resource": "NOPE", "pattern": "24x7", "effective_from": "2026-01-01"}]},
            "assignments[0]",
            "resource",
        ),
        (
            {"holiday_calendars": [{"name": "x", "country": "ZA", "subdivision": "QQ"}]},
            "holiday_calendars[0]",
            "subdivision",
        ),
        (
            {
                "exceptions": [
                    {
                        "resource": "ACME",
                        "kind": "shutdown",
                        "start": "2026-01-02T00:00",
                        "end": "2026-01-01T00:00",
                    }
                ]
            },
            "exceptions[0]",
            "end",
        ),
        (
            {
                "patterns": [
                    {
                        "name": "clash",
                        "kind": "weekly",
                        "rules": [
                            {"days": "mon-fri", "start": "06:00", "end": "14:00", "shift_code": "D"},
                            {"days": "fri", "start": "12:00", "end": "20:00", "shift_code": "A"},
                        ],
                    }
                ]
            },
            "patterns[0]",
            "rules[1]",
        ),
    ],
)
def test_bad_plant_data_is_a_422_naming_the_item_and_field(
    client: httpx.Client, planner: dict, document: dict, path: str, field: str
) -> None:
    imported(client, planner, {"resources": [{"code": "ACME", "level": "enterprise"}]})
    response = client.post("/resources/import", json=document, headers=planner)
    assert response.status_code == 422, response.text
    errors = response.json()["details"]["errors"]
    assert (errors[0]["path"], errors[0]["field"]) == (path, field)


def test_plant_routes_need_the_availability_scopes(client: httpx.Client, make_token: TokenFactory) -> None:
    reader = bearer(make_token("reader", "availability:read"))
    tasks_only = bearer(make_token("tasker", "tasks:read", "tasks:write"))
    assert client.get("/resources", headers=tasks_only).status_code == 403
    refused = client.post("/resources/import", json=PLANT, headers=reader)
    assert (refused.status_code, refused.json()["details"]["required_scope"]) == (403, "availability:write")
    assert client.get("/resources", headers=reader).status_code == 200


def test_an_agent_sees_only_its_own_plant(
    client: httpx.Client, planner: dict, make_token: TokenFactory, admin: dict
) -> None:
    imported(client, planner)
    other = bearer(make_token("other", *PLANT_SCOPES))
    machine = client.get("/resources/P-01", headers=planner).json()
    assert client.get(f"/resources/{machine['id']}", headers=other).status_code == 404
    assert client.get("/resources/P-01", headers=other).status_code == 404
    assert client.get("/resources", headers=other).json()["items"] == []
    assert client.get(f"/resources/{machine['id']}", headers=admin).json()["code"] == "P-01"


def test_patterns_calendars_assignments_and_exceptions_have_their_own_routes(
    client: httpx.Client, planner: dict
) -> None:
    imported(client, planner)
    names = [p["name"] for p in client.get("/patterns", headers=planner).json()]
    assert names[:7] == ["24x7", "two_shift", "day_only", "extended", "dupont", "pitman", "continental"]
    assert client.get("/patterns/dupont", headers=planner).json()["crew_weekly_hours"]["A"] == 42.0
    rule = {"days": "mon-thu", "start": "07:00", "end": "17:00", "shift_code": "D"}
    put = client.put("/patterns/four_tens", json={"kind": "weekly", "rules": [rule]}, headers=planner)
    assert (put.status_code, put.json()["weekly_hours"]) == (200, 40.0)
    created = client.post(
        "/assignments",
        json={"resource": "P-02", "pattern": "four_tens", "effective_from": "2026-03-02"},
        headers=planner,
    )
    assert created.status_code == 201, created.text
    assert client.delete("/patterns/four_tens", headers=planner).status_code == 409
    assert client.delete(f"/assignments/{created.json()['id']}", headers=planner).status_code == 204
    assert client.delete("/patterns/four_tens", headers=planner).status_code == 204
    holidays = client.get(
        "/holiday-calendars/za/holidays", params={"start": "2025-04-26", "end": "2025-04-29"}, headers=planner
    ).json()
    assert holidays["holidays"] == [
        {"date": "2025-04-27", "name": "Freedom Day"},
        {"date": "2025-04-28", "name": "Freedom Day (observed)"},
    ]
    assert client.delete("/holiday-calendars/za", headers=planner).status_code == 409
    exception = client.post(
        "/exceptions",
        json={
            "resource": "P-01",
            "kind": "maintenance",
            "start": "2026-03-02T06:00",
            "end": "2026-03-02T10:00",
            "rrule": "FREQ=MONTHLY;BYDAY=1MO",
        },
        headers=planner,
    )
    assert exception.status_code == 201, exception.text
    assert exception.json()["start"] == "2026-03-02T04:00:00+00:00"
    listed = client.get("/exceptions", params={"resource": "P-01"}, headers=planner).json()
    assert [e["id"] for e in listed] == [exception.json()["id"]]
    patched = client.patch(
        "/resources/L1", json={"timezone": "Europe/Chisinau", "name": "Line 1"}, headers=planner
    )
    assert (patched.status_code, patched.json()["timezone"], patched.json()["name"]) == (
        200,
        "Europe/Chisinau",
        "Line 1",
    )
    assert client.get("/resources/P-01", headers=planner).json()["timezone"] == "Europe/Chisinau"
    assert client.delete("/resources/L1", headers=planner).status_code == 409


def test_assignments_and_exceptions_are_patched_in_place_and_checked_like_new_ones(
    client: httpx.Client, planner: dict
) -> None:
    """A patch keeps the item's id, changes only the fields it names, refuses to change what
    identifies the item, and a bad value stores nothing."""
    imported(client, planner)
    assignment = client.post(
        "/assignments",
        json={"resource": "P-02", "pattern": "24x7", "effective_from": "2026-03-02"},
        headers=planner,
    ).json()
    ended = client.patch(
        f"/assignments/{assignment['id']}", json={"effective_to": "2026-03-31"}, headers=planner
    )
    assert ended.status_code == 200, ended.text
    assert {k: ended.json()[k] for k in ("id", "pattern", "effective_from", "effective_to")} == {
        "id": assignment["id"],
        "pattern": "24x7",
        "effective_from": "2026-03-02",
        "effective_to": "2026-03-31",
    }
    too_early = client.patch(
        f"/assignments/{assignment['id']}", json={"effective_to": "2026-03-01"}, headers=planner
    )
    assert (too_early.status_code, too_early.json()["code"]) == (422, "INVALID_PLANT")
    moved = client.patch(
        f"/assignments/{assignment['id']}", json={"effective_from": "2026-04-01"}, headers=planner
    )
    assert moved.status_code == 422
    assert [(e["path"], e["field"]) for e in moved.json()["details"]["errors"]] == [
        ("body", "effective_from")
    ]
    listed = client.get("/assignments", params={"resource": "P-02"}, headers=planner).json()
    assert [(a["id"], a["effective_to"]) for a in listed] == [(assignment["id"], "2026-03-31")]

    breakdown = client.post(
        "/exceptions",
        json={
            "resource": "P-01",
            "kind": "breakdown",
            "start": "2026-03-02T07:00",
            "end": "2026-03-09T07:00",
        },
        headers=planner,
    ).json()
    repaired = client.patch(
        f"/exceptions/{breakdown['id']}",
        json={"end": "2026-03-03T15:30", "impact": "reduced", "capacity_pct": 50},
        headers=planner,
    )
    assert repaired.status_code == 200, repaired.text
    assert {k: repaired.json()[k] for k in ("id", "start", "end", "impact", "capacity_pct")} == {
        "id": breakdown["id"],
        "start": "2026-03-02T05:00:00+00:00",
        "end": "2026-03-03T13:30:00+00:00",  # read in the resource's zone, like a new exception
        "impact": "reduced",
        "capacity_pct": 50,
    }
    stopped = client.patch(f"/exceptions/{breakdown['id']}", json={"impact": "no_operation"}, headers=planner)
    assert (stopped.status_code, stopped.json()["capacity_pct"]) == (200, 0)
    backwards = client.patch(
        f"/exceptions/{breakdown['id']}", json={"end": "2026-03-01T00:00"}, headers=planner
    )
    assert (backwards.status_code, backwards.json()["details"]["errors"][0]["field"]) == (422, "end")
    assert client.get("/exceptions", params={"resource": "P-01"}, headers=planner).json()[0]["end"] == (
        "2026-03-03T13:30:00+00:00"
    )
    missing = "00000000-0000-4000-8000-000000000000"
    assert (
        client.patch(f"/exceptions/{missing}", json={"end": "2026-03-04T00:00"}, headers=planner).status_code
        == 404
    )


def test_generate_queues_a_run_whose_availability_is_served_as_json_and_csv(
    client: httpx.Client, planner: dict, db: Database
) -> None:
    imported(client, planner)
    queued = client.post(
        "/schedules/generate", json={"start": "2025-04-25", "end": "2025-04-29"}, headers=planner
    )
    assert queued.status_code == 202, queued.text
    run_id = queued.json()["id"]
    with running_worker(db):
        run = wait_for(
            lambda: (
                (r := client.get(f"/runs/{run_id}", headers=planner).json())["state"] in ("succeeded", "dead")
                and r
            ),
            timeout=30,
        )
    assert run["state"] == "succeeded", run
    output = run["steps"][0]["output"]
    assert (output["start"], output["end"], output["resources"], output["rows"]) == (
        "2025-04-25",
        "2025-04-29",
        2,
        12,  # Friday, the observed Monday (holiday rows) and Tuesday: 3 days, 2 shifts, 2 machines
    )

    got = client.get(
        "/availability",
        params={"resource_ids": "L1", "start": "2025-04-25", "end": "2025-04-29"},
        headers=planner,
    ).json()
    assert [r["code"] for r in got["resources"]] == ["P-01", "P-02"]
    p01 = got["resources"][0]
    assert [(d["date"], d["status"], d["planned_hours"], d["holiday"]) for d in p01["days"]] == [
        ("2025-04-25", "operating", 16.0, None),
        ("2025-04-26", "off", 0.0, None),
        ("2025-04-27", "off", 0.0, None),  # Freedom Day is a Sunday: nothing was planned
        ("2025-04-28", "holiday", 16.0, "Freedom Day (observed)"),
        ("2025-04-29", "operating", 16.0, None),
    ]
    assert p01["totals"] == {
        "planned_hours": 48.0,
        "operating_hours": 32.0,
        "maintenance_hours": 0.0,
        "holiday_hours": 16.0,
        "other_down_hours": 0.0,
        "capacity_hours": 32.0,
    }

    shifts = client.get(
        "/availability",
        params={
            "resource_ids": "P-01",
            "start": "2025-04-29",
            "end": "2025-04-29",
            "format": "csv",
            "detail": "shifts",
        },
        headers=planner,
    )
    assert shifts.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(shifts.text)))
    assert [(r["shift_code"], r["start"], r["end"], r["hours"], r["status"]) for r in table] == [
        ("D", "2025-04-29T06:00:00+02:00", "2025-04-29T14:00:00+02:00", "8.0", "available"),
        ("A", "2025-04-29T14:00:00+02:00", "2025-04-29T22:00:00+02:00", "8.0", "available"),
    ]
    days = client.get(
        "/availability", params={"start": "2025-04-28", "end": "2025-04-28", "format": "csv"}, headers=planner
    )
    assert days.text.splitlines()[0].split(",") == [
        "resource_id",
        "resource_code",
        "date",
        "status",
        "planned_hours",
        "operating_hours",
        "maintenance_hours",
        "holiday_hours",
        "other_down_hours",
        "capacity_hours",
        "holiday",
    ]
    assert len(days.text.splitlines()) == 3

    changes = client.get("/availability/changes", headers=planner).json()
    (generation,) = changes["generations"]
    assert (generation["generation_id"], generation["run_id"], generation["changes"]["added"]) == (
        output["generation_id"],
        run_id,
        12,
    )
    assert (
        client.get("/availability/changes", params={"since": changes["next_since"]}, headers=planner).json()[
            "generations"
        ]
        == []
    )
    # `since` may be an instant too: the generations recorded after it.
    created = datetime.fromisoformat(generation["created_at"])
    for since, expected in ((created - timedelta(seconds=1), [output["generation_id"]]), (created, [])):
        after = client.get("/availability/changes", params={"since": since.isoformat()}, headers=planner)
        assert [g["generation_id"] for g in after.json()["generations"]] == expected
    page = client.get(
        f"/availability/generations/{generation['generation_id']}/changes",
        params={"limit": 3},
        headers=planner,
    ).json()
    assert (len(page["items"]), page["fresh"], page["items"][0]["change"]) == (3, True, "added")
    rest = client.get(
        f"/availability/generations/{generation['generation_id']}/changes",
        params={"limit": 100, "cursor": page["next_cursor"]},
        headers=planner,
    ).json()
    assert (len(rest["items"]), rest["next_cursor"]) == (9, None)


def test_generate_checks_its_input_like_the_tool(client: httpx.Client, planner: dict) -> None:
    response = client.post("/schedules/generate", json={"start": "2026-01-01"}, headers=planner)
    assert response.status_code == 422
    assert client.post("/schedules/generate", json={"days": 0}, headers=planner).status_code == 422
    # A range of dates that can only fail is refused before a run is queued for it.
    for body in (
        {"start": "2026-03-10", "end": "2026-03-01"},
        {"start": "9999-12-25", "end": "9999-12-31"},
        {"start": "9999-12-30", "days": 5},
    ):
        refused = client.post("/schedules/generate", json=body, headers=planner)
        assert (refused.status_code, refused.json()["code"]) == (422, "INVALID_RANGE"), refused.text
    assert client.get("/runs", headers=planner).json()["items"] == []


def test_availability_reads_refuse_bad_ranges_and_unknown_resources(
    client: httpx.Client, planner: dict
) -> None:
    imported(client, planner)
    assert (
        client.get(
            "/availability", params={"start": "2026-01-02", "end": "2026-01-01"}, headers=planner
        ).status_code
        == 422
    )
    missing = client.get(
        "/availability",
        params={"start": "2026-01-01", "end": "2026-01-02", "resource_ids": "P-01,GHOST"},
        headers=planner,
    )
    assert (missing.status_code, missing.json()["details"]) == (404, {"resource": "GHOST"})
    assert (
        client.get("/availability/changes", params={"since": "yesterday"}, headers=planner).status_code == 422
    )


def test_a_pattern_preview_over_the_api_matches_the_cli_shape(client: httpx.Client, planner: dict) -> None:
    out = client.get(
        "/patterns/24x7/preview",
        params={"timezone": "Europe/Chisinau", "start": "2026-03-28", "days": 3},
        headers=planner,
    ).json()
    assert [(d["date"], d["planned_hours"]) for d in out["days"]] == [
        ("2026-03-28", 24.0),
        ("2026-03-29", 23.0),
        ("2026-03-30", 24.0),
    ]
    bad = client.get(
        "/patterns/dupont/preview",
        params={"timezone": "UTC", "start": "2026-03-28", "holidays": "QQ", "crew": "Z"},
        headers=planner,
    )
    assert [e["field"] for e in bad.json()["details"]["errors"]] == ["holidays", "crew"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/patterns/two_shift/preview", {"timezone": "UTC", "start": "0001-01-01", "days": 3}),
        ("/patterns/two_shift/preview", {"timezone": "UTC", "start": "9999-12-30", "days": 5}),
        ("/availability", {"start": "9999-12-25", "end": "9999-12-31"}),
        ("/availability", {"start": "9999-12-25", "end": "9999-12-31", "format": "csv"}),
        ("/holiday-calendars/za/holidays", {"start": "9999-12-25", "end": "9999-12-31"}),
    ],
)
def test_dates_at_the_ends_of_the_calendar_are_a_422_not_a_crash(
    client: httpx.Client, planner: dict, path: str, params: dict[str, Any]
) -> None:
    """Years 1 and 9999 once overflowed while shifts and zones were worked out around the range
    (500, or a CSV stream cut off): the range rule refuses dates outside 1900-2999 first."""
    imported(client, planner)
    response = client.get(path, params=params, headers=planner)
    assert response.status_code == 422, response.text
    assert response.json()["code"] in ("INVALID_RANGE", "INVALID_PLANT")
    assert "dates are from 1900-01-01 to 2999-12-31" in response.text


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ("FREQ=SECONDLY", "at most 8784 times a year"),
        ("FREQ=MINUTELY;BYHOUR=6,7,8", "at most 8784 times a year"),
        ("RRULE:FREQ=MINUTELY\nEXRULE:FREQ=MINUTELY", "too costly to expand"),
    ],
)
def test_an_exception_recurring_more_than_hourly_is_refused_and_nothing_is_stored(
    client: httpx.Client, planner: dict, rule: str, says: str
) -> None:
    """Each occurrence is a window every generation cuts shifts with: a rule recurring every second
    would make millions in a worker's memory. Refused with the reason, by route and by import."""
    imported(client, planner)
    exception = {
        "resource": "P-01",
        "kind": "maintenance",
        "start": "2026-03-02T06:00",
        "end": "2026-03-02T06:01",
    }
    by_route = client.post("/exceptions", json={**exception, "rrule": rule}, headers=planner)
    by_import = client.post(
        "/resources/import", json={"exceptions": [{**exception, "rrule": rule}]}, headers=planner
    )
    for response in (by_route, by_import):
        assert response.status_code == 422, response.text
        assert says in response.text and "rrule" in response.text
    assert client.get("/exceptions", headers=planner).json() == []
    hourly = client.post("/exceptions", json={**exception, "rrule": "FREQ=HOURLY"}, headers=planner)
    assert hourly.status_code == 201, hourly.text


def test_an_exception_in_year_1_is_a_422_naming_the_field(client: httpx.Client, planner: dict) -> None:
    """Year 1 in Johannesburg (UTC+2) is before year 1 in UTC: converting it once crashed (500)."""
    imported(client, planner)
    exception = {
        "resource": "P-01",
        "kind": "maintenance",
        "start": "0001-01-01T00:00",
        "end": "0001-01-01T01:00",
    }
    response = client.post("/exceptions", json=exception, headers=planner)
    assert response.status_code == 422, response.text
    assert {e["field"] for e in response.json()["details"]["errors"]} == {"start", "end"}


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ("FREQ=SECONDLY", "at most one a day"),
        ("FREQ=MINUTELY", "at most one a day"),
        ("RRULE:FREQ=DAILY\nEXRULE:FREQ=DAILY", "too costly to expand"),
    ],
)
def test_a_holiday_rule_naming_more_than_a_date_a_day_is_refused(
    client: httpx.Client, planner: dict, rule: str, says: str
) -> None:
    """A calendar rule recurring every second was accepted, and reading two days of its holidays
    took seconds in an API thread (a year, minutes; a generation, a worker's memory)."""
    calendar = {"country": "ZA", "rules": [{"name": "often", "start": "2026-01-01", "rrule": rule}]}
    response = client.put("/holiday-calendars/often", json=calendar, headers=planner)
    assert response.status_code == 422, response.text
    assert says in response.text and "rules[0].rrule" in response.text
    assert client.get("/holiday-calendars/often", headers=planner).status_code == 404
    yearly = {"name": "Christmas Eve", "start": "2026-12-24", "rrule": "FREQ=YEARLY"}
    ok = client.put("/holiday-calendars/often", json={"country": "ZA", "rules": [yearly]}, headers=planner)
    assert ok.status_code == 200, ok.text
