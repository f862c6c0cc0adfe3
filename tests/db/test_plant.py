"""Plant data and generated availability in a real PostgreSQL: imports all or nothing, inheritance
over the five ISA-95 levels, holidays and the observed setting, exceptions, DST, atomic and diffed
regeneration, the schedule.generate tool in a worker, and stored availability as solver calendars."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
import structlog

from engine import ToolContext, ToolRegistry, call_tool
from engine.tools import plant
from scheduler.service import SchedulerConfig, SchedulerService
from store import plant as store_plant
from store import runs as store_runs
from store.db import Database
from store.errors import InvalidPlant, ToolError
from store.tasks import LOCAL_AGENT_ID
from tests.helpers import add_task, rows, running_worker, scalar, wait_for

JOBURG = "Africa/Johannesburg"


def apply(db: Database, document: Any = None, *, csv_text: str | None = None) -> dict[str, Any]:
    with db.tx() as conn:
        summary, _ = plant.apply_document(conn, LOCAL_AGENT_ID, document=document, csv_text=csv_text)
    return summary


def generate(db: Database, start: date, end: date, **kwargs: Any) -> dict[str, Any]:
    return plant.run_generation(db, LOCAL_AGENT_ID, start, end, **kwargs)


def report(db: Database, start: date, end: date, refs: list[str] | None = None, shifts: bool = False) -> dict:
    with db.tx() as conn:
        targets = plant.report_targets(conn, refs, agent_id=LOCAL_AGENT_ID, owner=LOCAL_AGENT_ID)
        out = plant.availability_report(conn, targets, start, end, shifts=shifts)
    return {r["code"]: r for r in out["resources"]}


def day_hours(resource: dict) -> dict[str, float]:
    return {d["date"]: d["planned_hours"] for d in resource["days"]}


def site(code: str, zone: str, calendar: str | None = None, machines: tuple[str, ...] = ("M1",)) -> dict:
    return {
        "code": code,
        "level": "site",
        "timezone": zone,
        "holiday_calendar": calendar,
        "children": [{"code": m, "level": "work_unit"} for m in machines],
    }


# -- importing ------------------------------------------------------------------------------------


def test_an_import_with_a_bad_row_stores_nothing_and_names_every_problem(db: Database) -> None:
    csv_text = (
        "code,level,parent,timezone\n"
        "ACME,enterprise,,\n"
        "JHB,site,ACME,Africa/Johannesburg\n"
        "P-01,work_unit,L9,\n"
        "P-02,work_unit,JHB,Mars/Base\n"
    )
    with pytest.raises(InvalidPlant) as raised:
        apply(db, csv_text=csv_text)
    assert [(e["row"], e["field"]) for e in raised.value.details["errors"]] == [
        (5, "timezone"),
        (4, "parent"),
    ]
    assert "row 5, field 'timezone'" in raised.value.message
    assert scalar(db, "SELECT count(*) FROM resource") == 0

    fixed = csv_text.replace("L9", "JHB").replace("Mars/Base", "")
    assert apply(db, csv_text=fixed)["resources"] == {"created": 4, "updated": 0, "unchanged": 0}
    assert apply(db, csv_text=fixed)["resources"] == {"created": 0, "updated": 0, "unchanged": 4}
    assert [r["path"] for r in rows(db, "SELECT path FROM resource ORDER BY path")] == [
        "ACME",
        "ACME/JHB",
        "ACME/JHB/P-01",
        "ACME/JHB/P-02",
    ]


def test_an_import_that_would_close_a_cycle_is_refused_and_the_tree_stays(db: Database) -> None:
    apply(db, {"resources": [site("S", JOBURG, machines=("M1",))]})
    apply(db, {"resources": [{"code": "A", "level": "area", "parent": "S"}]})
    with pytest.raises(InvalidPlant, match="cycle"):
        apply(db, {"resources": [{"code": "S", "parent": "A"}]})
    assert scalar(db, "SELECT parent_id FROM resource WHERE code = 'S'") is None


def test_moving_a_subtree_rewrites_its_paths(db: Database) -> None:
    apply(db, {"resources": [site("S1", JOBURG, machines=()), site("S2", JOBURG, machines=())]})
    apply(
        db,
        {
            "resources": [
                {
                    "code": "A",
                    "level": "area",
                    "parent": "S1",
                    "children": [{"code": "M", "level": "work_unit"}],
                }
            ]
        },
    )
    apply(db, {"resources": [{"code": "A", "parent": "S2"}]})
    assert scalar(db, "SELECT path FROM resource WHERE code = 'M'") == "S2/A/M"


# -- what generation computes ---------------------------------------------------------------------


def test_inheritance_over_five_levels_with_overrides_and_effective_dates(db: Database) -> None:
    """Enterprise day_only; the site two_shift from February; the area 24x7 for one week; one
    machine extended from 11 February; the work center has none of its own."""
    apply(
        db,
        {
            "resources": [
                {
                    "code": "ACME",
                    "level": "enterprise",
                    "timezone": JOBURG,
                    "children": [
                        {
                            "code": "JHB",
                            "level": "site",
                            "children": [
                                {
                                    "code": "PRESS",
                                    "level": "area",
                                    "children": [
                                        {
                                            "code": "L1",
                                            "level": "work_center",
                                            "children": [
                                                {"code": "M1", "level": "work_unit"},
                                                {"code": "M2", "level": "work_unit"},
                                            ],
                                        }
                                    ],
                                }
                            ],
                        }
                    ],
                }
            ],
            "assignments": [
                {"resource": "ACME", "pattern": "day_only", "effective_from": "2026-01-01"},
                {"resource": "JHB", "pattern": "two_shift", "effective_from": "2026-02-01"},
                {
                    "resource": "PRESS",
                    "pattern": "24x7",
                    "effective_from": "2026-02-09",
                    "effective_to": "2026-02-15",
                },
                {"resource": "M2", "pattern": "extended", "effective_from": "2026-02-11"},
            ],
        },
    )
    out = generate(db, date(2026, 1, 26), date(2026, 2, 20))
    assert (out["resources"], out["fresh"]) == (2, True)
    got = report(db, date(2026, 1, 26), date(2026, 2, 20))
    m1, m2 = day_hours(got["M1"]), day_hours(got["M2"])
    assert m1["2026-01-30"] == 9  # Friday: the enterprise's day_only
    assert m1["2026-01-31"] == 0  # Saturday
    assert m1["2026-02-02"] == 16  # the site's two_shift from February
    assert m1["2026-02-14"] == 24  # the area's 24x7 week (a Saturday)
    assert m1["2026-02-16"] == 16  # back to the site's
    assert m2["2026-02-10"] == 24  # the area's week still
    assert m2["2026-02-12"] == 20  # its own extended, over the area's week
    assert m2["2026-02-15"] == 0  # extended has no Sunday shift
    assert m2["2026-02-16"] == 20


def test_za_freedom_day_and_its_observed_monday_stop_a_24x7_plant(db: Database) -> None:
    apply(
        db,
        {
            "holiday_calendars": [{"name": "za", "country": "ZA"}],
            "resources": [site("JHB", JOBURG, "za")],
            "assignments": [{"resource": "JHB", "pattern": "24x7", "effective_from": "2025-01-01"}],
        },
    )
    generate(db, date(2025, 4, 26), date(2025, 4, 29))
    days = {d["date"]: d for d in report(db, date(2025, 4, 26), date(2025, 4, 29))["M1"]["days"]}
    assert [(days[d]["status"], days[d]["operating_hours"], days[d]["holiday"]) for d in sorted(days)] == [
        ("operating", 24.0, None),
        ("holiday", 0.0, "Freedom Day"),
        ("holiday", 0.0, "Freedom Day (observed)"),
        ("operating", 24.0, None),
    ]
    assert days["2025-04-27"]["holiday_hours"] == 24.0


def test_us_independence_day_2026_under_each_observed_setting(db: Database) -> None:
    settings = ("both", "actual", "observed_only")
    apply(
        db,
        {
            "holiday_calendars": [{"name": f"us_{s}", "country": "US", "observed": s} for s in settings],
            "resources": [site(f"S_{s}", "America/New_York", f"us_{s}", (f"M_{s}",)) for s in settings],
            "assignments": [
                {"resource": f"S_{s}", "pattern": "24x7", "effective_from": "2026-01-01"} for s in settings
            ],
        },
    )
    generate(db, date(2026, 7, 2), date(2026, 7, 5))
    got = report(db, date(2026, 7, 2), date(2026, 7, 5))
    holidays = {s: [d["date"] for d in got[f"M_{s}"]["days"] if d["status"] == "holiday"] for s in settings}
    assert holidays == {
        "both": ["2026-07-03", "2026-07-04"],
        "actual": ["2026-07-04"],
        "observed_only": ["2026-07-03"],
    }


def test_a_recurring_maintenance_window_cuts_a_stored_shift(db: Database) -> None:
    apply(
        db,
        {
            "resources": [site("JHB", JOBURG, machines=("PRESS-1", "PRESS-2"))],
            "assignments": [{"resource": "JHB", "pattern": "two_shift", "effective_from": "2026-01-01"}],
            "exceptions": [
                {
                    "resource": "PRESS-1",
                    "kind": "maintenance",
                    "start": "2026-01-05T06:00",
                    "end": "2026-01-05T10:00",
                    "rrule": "FREQ=MONTHLY;BYDAY=1MO",
                    "description": "monthly service",
                }
            ],
        },
    )
    generate(db, date(2026, 2, 1), date(2026, 3, 31))
    exception_id = scalar(db, "SELECT id FROM availability_exception")
    got = report(db, date(2026, 2, 2), date(2026, 2, 2), shifts=True)
    (day,) = got["PRESS-1"]["days"]
    assert [
        (s["start"][11:16], s["end"][11:16], s["status"], s["exception_id"], s["note"]) for s in day["shifts"]
    ] == [
        ("06:00", "10:00", "maintenance", str(exception_id), "monthly service"),
        ("10:00", "14:00", "available", None, None),
        ("14:00", "22:00", "available", None, None),
    ]
    assert (day["planned_hours"], day["operating_hours"], day["maintenance_hours"]) == (16.0, 12.0, 4.0)
    assert got["PRESS-2"]["days"][0]["maintenance_hours"] == 0.0
    # Two first Mondays in the range: 8 maintenance hours on PRESS-1 in all.
    assert report(db, date(2026, 2, 1), date(2026, 3, 31))["PRESS-1"]["totals"]["maintenance_hours"] == 8.0


@pytest.mark.parametrize(
    ("zone", "short", "long"),
    [("Europe/Chisinau", "2026-03-29", "2026-10-25"), ("America/New_York", "2026-03-08", "2026-11-01")],
)
def test_dst_days_are_stored_in_real_hours(db: Database, zone: str, short: str, long: str) -> None:
    apply(
        db,
        {
            "resources": [site("S", zone, machines=("C24", "CONT"))],
            "assignments": [
                {"resource": "C24", "pattern": "24x7", "effective_from": "2026-01-01"},
                {"resource": "CONT", "pattern": "continental", "effective_from": "2026-01-01"},
            ],
        },
    )
    generate(db, date(2026, 3, 1), date(2026, 11, 30))
    got = report(db, date(2026, 3, 1), date(2026, 11, 30), shifts=True)
    c24 = day_hours(got["C24"])
    assert (c24[short], c24[long]) == (23.0, 25.0)
    nights = {
        d["date"]: s["hours"] for d in got["CONT"]["days"] for s in d["shifts"] if s["shift_code"] == "N"
    }
    before = lambda iso: (date.fromisoformat(iso) - timedelta(days=1)).isoformat()  # noqa: E731
    assert (nights[before(short)], nights[before(long)], nights[short]) == (7.0, 9.0, 8.0)


# -- storing --------------------------------------------------------------------------------------


def two_shift_plant(db: Database, machines: int) -> None:
    apply(
        db,
        {
            "resources": [site("S", JOBURG, machines=tuple(f"M{i:03d}" for i in range(machines)))],
            "assignments": [{"resource": "S", "pattern": "two_shift", "effective_from": "2026-01-01"}],
        },
    )


def test_a_regeneration_keeps_unchanged_rows_and_logs_each_change(db: Database) -> None:
    two_shift_plant(db, 2)
    first = generate(db, date(2026, 3, 2), date(2026, 3, 6))
    assert first["changes"] == {
        "added": 20,
        "removed": 0,
        "changed": 0,
        "resources_changed": 2,
        "resources": first["changes"]["resources"],
        "truncated": False,
    }
    again = generate(db, date(2026, 3, 2), date(2026, 3, 6))
    assert (
        again["fresh"],
        again["rows"],
        again["changes"]["added"],
        again["changes"]["resources_changed"],
    ) == (
        False,
        20,
        0,
        0,
    )
    apply(
        db,
        {
            "exceptions": [
                {
                    "resource": "M000",
                    "kind": "breakdown",
                    "start": "2026-03-04T12:00",
                    "end": "2026-03-04T16:00",
                }
            ]
        },
    )
    third = generate(db, date(2026, 3, 2), date(2026, 3, 6))
    counts = third["changes"]
    assert (counts["added"], counts["removed"], counts["changed"], counts["resources_changed"]) == (
        2,
        0,
        2,
        1,
    )
    # The rows no generation touched keep the generation that wrote them.
    assert (
        scalar(db, "SELECT count(*) FROM availability WHERE generation_id = :g", g=first["generation_id"])
        == 18
    )
    with db.tx() as conn:
        page = plant.change_page(conn, third["generation_id"], LOCAL_AGENT_ID, cursor=None, limit=10)
    assert [(i["code"], i["start"], i["change"]) for i in page["items"]] == [
        ("M000", "2026-03-04T04:00:00Z", "changed"),  # the day shift now ends at the breakdown
        ("M000", "2026-03-04T10:00:00Z", "added"),  # the breakdown's part of the day shift
        ("M000", "2026-03-04T12:00:00Z", "changed"),  # the afternoon shift starts broken down
        ("M000", "2026-03-04T14:00:00Z", "added"),  # and runs again after it
    ]
    changed = next(i for i in page["items"] if i["start"] == "2026-03-04T12:00:00Z")
    assert (changed["old"]["status"], changed["new"]["status"], changed["new"]["end"]) == (
        "available",
        "breakdown",
        "2026-03-04T14:00:00Z",
    )


def test_regenerate_false_only_fills_dates_without_availability(db: Database) -> None:
    two_shift_plant(db, 1)
    generate(db, date(2026, 3, 2), date(2026, 3, 3))
    apply(db, {"assignments": [{"resource": "S", "pattern": "24x7", "effective_from": "2026-03-01"}]})
    out = generate(db, date(2026, 3, 2), date(2026, 3, 4), regenerate=False)
    assert out["changes"]["added"] == 1  # only 4 March, under the new pattern
    hours = day_hours(report(db, date(2026, 3, 2), date(2026, 3, 4))["M000"])
    assert hours == {"2026-03-02": 16.0, "2026-03-03": 16.0, "2026-03-04": 24.0}


def test_generations_past_the_history_retention_are_pruned_but_each_plants_latest_stays(
    db: Database,
) -> None:
    """The scheduler's retention removes old generations with their change logs, keeps each plant's
    latest whatever its age, and leaves the generated availability alone."""
    two_shift_plant(db, 2)
    first = generate(db, date(2026, 3, 2), date(2026, 3, 6))
    breakdown = {
        "resource": "M000",
        "kind": "breakdown",
        "start": "2026-03-04T12:00",
        "end": "2026-03-04T16:00",
    }
    apply(db, {"exceptions": [breakdown]})
    second = generate(db, date(2026, 3, 2), date(2026, 3, 6))  # logs its changes shift by shift
    third = generate(db, date(2026, 3, 9), date(2026, 3, 9))
    now = datetime(2026, 6, 1, tzinfo=UTC)
    ages = {first["generation_id"]: 91, second["generation_id"]: 91, third["generation_id"]: 89}
    for generation_id, days in ages.items():
        scalar(
            db,
            "UPDATE availability_generation SET created_at = :at WHERE id = :id RETURNING id",
            at=now - timedelta(days=days),
            id=generation_id,
        )
    stored_rows = scalar(db, "SELECT count(*) FROM availability")
    assert scalar(
        db, "SELECT count(*) FROM availability_change WHERE generation_id = :g", g=second["generation_id"]
    )

    scheduler = SchedulerService(
        db,
        SchedulerConfig(availability_history_days=90, prune_every_s=0),
        structlog.get_logger("test"),
        "retention",
    )
    try:
        scheduler.tick(now=now)
        assert generation_ids(db) == [third["generation_id"]]
        assert scalar(db, "SELECT count(*) FROM availability_change") == 0
        assert (
            scalar(db, "SELECT DISTINCT generation_id FROM availability_change_summary")
            == third["generation_id"]
        )
        assert scalar(db, "SELECT count(*) FROM availability") == stored_rows

        # Past the retention too, the plant's latest generation still answers "what changed last".
        scheduler.tick(now=now + timedelta(days=30))
        assert generation_ids(db) == [third["generation_id"]]
    finally:
        scheduler.step_down()


def generation_ids(db: Database) -> list[int]:
    return [r["id"] for r in rows(db, "SELECT id FROM availability_generation ORDER BY id")]


def test_a_generation_abandoned_midway_stores_nothing(db: Database) -> None:
    two_shift_plant(db, 3)

    def give_up() -> None:
        raise ToolError("the run was canceled; nothing was stored", code="CANCELED", retryable=False)

    with pytest.raises(ToolError):
        generate(db, date(2026, 3, 2), date(2026, 3, 6), check=give_up)
    assert scalar(db, "SELECT count(*) FROM availability") == 0
    assert scalar(db, "SELECT count(*) FROM availability_generation") == 0


def test_a_concurrent_reader_sees_the_old_range_or_the_new_one_never_a_mix(db: Database) -> None:
    """While the range is regenerated back and forth between two patterns (each write a COPY in
    chunks), a reader's totals are always all one or all the other, across every resource."""
    machines = 40
    two_shift_plant(db, machines)
    start, end = date(2026, 3, 2), date(2026, 4, 26)
    generate(db, start, end)
    weeks = 8
    valid = {80.0 * weeks, 168.0 * weeks}
    stop = threading.Event()
    seen: Counter[tuple[float, ...]] = Counter()
    failures: list[BaseException] = []

    def read() -> None:
        try:
            while not stop.is_set():
                got = report(db, start, end)
                seen[tuple(sorted({r["totals"]["planned_hours"] for r in got.values()}))] += 1
        except BaseException as e:  # surfaced by the assertion below
            failures.append(e)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        for pattern in ("24x7", "two_shift", "24x7", "two_shift", "24x7"):
            apply(
                db, {"assignments": [{"resource": "S", "pattern": pattern, "effective_from": "2026-01-01"}]}
            )
            out = generate(db, start, end)
            assert out["changes"]["changed"] + out["changes"]["added"] > 0
            time.sleep(0.05)
    finally:
        stop.set()
        reader.join(30)
    assert not failures
    assert sum(seen.values()) > 5
    for totals, _ in seen.items():
        assert len(totals) == 1 and totals[0] in valid, f"a reader saw a mix: {totals}"


# -- in a pipeline, and for the solver ------------------------------------------------------------


def test_schedule_generate_runs_in_a_task_and_its_range_chains_into_the_next_step(db: Database) -> None:
    two_shift_plant(db, 2)
    task = add_task(
        db,
        timezone=JOBURG,
        payload={
            "params": {"days": 7},
            "pipeline": [
                {
                    "id": "avail",
                    "uses": "schedule.generate",
                    "with": {"days": "${params.days}"},
                    "save_as": "avail",
                },
                {
                    "id": "say",
                    "uses": "echo.message",
                    "with": {
                        "message": "from ${steps.avail.start} to ${steps.avail.end}",
                        "data": "${steps.avail.changes}",
                    },
                },
            ],
        },
    )
    with db.tx() as conn:
        (run_id,) = store_runs.enqueue(conn, task["id"])
    with running_worker(db):
        wait_for(
            lambda: scalar(db, "SELECT state FROM task_run WHERE run_id = :id AND final", id=run_id),
            timeout=30,
        )
    with db.tx() as conn:
        run = store_runs.get(conn, run_id)
    assert run["state"] == "succeeded", run
    avail, say = run["steps"]
    assert (avail["output"]["resources"], avail["output"]["rows"]) == (2, 20)
    first = date.fromisoformat(avail["output"]["start"])
    assert avail["output"]["end"] == (first + timedelta(days=6)).isoformat()
    assert say["output"]["message"] == f"from {avail['output']['start']} to {avail['output']['end']}"
    assert say["output"]["data"]["added"] == 20
    assert scalar(db, "SELECT run_id FROM availability_generation") == run_id


def test_schedule_generate_outside_a_worker_fails_permanently() -> None:
    tool = ToolRegistry.load()["schedule.generate"]
    with pytest.raises(ToolError) as raised:
        call_tool(tool, {"days": 1}, ToolContext.standalone(datetime.now(UTC), 10))
    assert (raised.value.code, raised.value.retryable) == ("DATABASE_REQUIRED", False)


def test_stored_availability_becomes_solver_calendars_keyed_by_code(db: Database) -> None:
    apply(
        db,
        {
            "holiday_calendars": [{"name": "za", "country": "ZA"}],
            "resources": [site("JHB", JOBURG, "za", ("P1", "P2"))],
            "assignments": [
                {"resource": "JHB", "pattern": "two_shift", "effective_from": "2025-01-01"},
                {"resource": "P2", "pattern": "24x7", "effective_from": "2025-01-01"},
            ],
            "exceptions": [
                {
                    "resource": "P1",
                    "kind": "maintenance",
                    "start": "2025-04-29T06:00",
                    "end": "2025-04-29T10:00",
                }
            ],
        },
    )
    generate(db, date(2025, 4, 27), date(2025, 4, 29))
    with db.tx() as conn:
        calendars = plant.read_calendars(conn, LOCAL_AGENT_ID, date(2025, 4, 27), date(2025, 4, 29))
        only_p1 = plant.read_calendars(
            conn, LOCAL_AGENT_ID, date(2025, 4, 27), date(2025, 4, 29), resources=["P1"]
        )
    assert calendars == {
        # Monday 28 April is Freedom Day observed; on the 29th maintenance takes 06:00-10:00.
        "P1": [{"start": "2025-04-29T08:00:00Z", "end": "2025-04-29T20:00:00Z"}],
        "P2": [{"start": "2025-04-28T22:00:00Z", "end": "2025-04-29T22:00:00Z"}],
    }
    assert list(only_p1) == ["P1"]


def test_resources_without_a_pattern_are_reported_as_unplanned(db: Database) -> None:
    two_shift_plant(db, 1)
    apply(db, {"resources": [site("S2", JOBURG, machines=("LONELY",))]})
    out = generate(db, date(2026, 3, 2), date(2026, 3, 3))
    assert out["unplanned"] == {"count": 1, "codes": ["LONELY"]}
    assert out["rows"] == 4


def test_an_unknown_resource_in_a_generation_is_a_clear_error(db: Database) -> None:
    two_shift_plant(db, 1)
    with pytest.raises(Exception, match="no resource 'GHOST'"):
        generate(db, date(2026, 3, 2), date(2026, 3, 3), resources=["GHOST"])
    assert scalar(db, "SELECT count(*) FROM availability_generation") == 0


def test_deleting_a_resource_removes_its_availability(db: Database) -> None:
    two_shift_plant(db, 2)
    generate(db, date(2026, 3, 2), date(2026, 3, 3))
    with db.tx() as conn:
        (row,) = store_plant.resolve(conn, ["M000"], agent_id=LOCAL_AGENT_ID, owner=LOCAL_AGENT_ID)
        store_plant.delete_resource(conn, row)
    assert scalar(db, "SELECT count(*) FROM availability WHERE resource_id = :id", id=row["id"]) == 0
    assert scalar(db, "SELECT count(*) FROM availability") == 4
    assert isinstance(row["id"], UUID)


def test_a_solver_problem_reads_the_task_owners_stored_calendars(db: Database) -> None:
    """solver.solve's availability input: stored shifts become calendars; inline calendars win."""
    two_shift_plant(db, 2)
    generate(db, date(2026, 3, 2), date(2026, 3, 2))
    ctx = ToolContext(
        now=datetime.now(UTC), deadline=time.monotonic() + 30, task={"agent_id": str(LOCAL_AGENT_ID)}, db=db
    )
    inline = [{"start": "2026-03-02T00:00:00Z", "end": "2026-03-03T00:00:00Z"}]
    problem = {
        "jobs": [],
        "availability": {"start": "2026-03-02", "end": "2026-03-02"},
        "calendars": {"M001": inline},
    }
    out = plant.with_stored_calendars(problem, ctx)
    assert "availability" not in out
    assert out["calendars"] == {
        "M000": [{"start": "2026-03-02T04:00:00Z", "end": "2026-03-02T20:00:00Z"}],
        "M001": inline,
    }
    assert plant.with_stored_calendars({"jobs": []}, ctx) == {"jobs": []}
    with pytest.raises(ToolError) as raised:
        plant.with_stored_calendars(problem, ToolContext.standalone(datetime.now(UTC), 5))
    assert raised.value.code == "DATABASE_REQUIRED"


def test_generate_then_solve_and_validate_in_the_stored_shifts(db: Database) -> None:
    """The flagship chain: schedule.generate, then solver.solve and schedule.validate reading the
    same stored calendars through `availability`: three 8-hour operations on a two-shift machine
    fill Monday's 06:00-22:00 and Tuesday's first shift."""
    two_shift_plant(db, 1)
    jobs = [
        {
            "id": "order-1",
            "operations": [
                {"id": f"op{i}", "machines": [{"machine": "M000", "duration": 480}]} for i in range(3)
            ],
        }
    ]
    window = {"start": "${steps.avail.start}", "end": "${steps.avail.end}"}
    task = add_task(
        db,
        timezone=JOBURG,
        payload={
            "params": {"jobs": jobs},
            "pipeline": [
                {
                    "id": "avail",
                    "uses": "schedule.generate",
                    "with": {"start": "2026-03-02", "days": 2},
                    "save_as": "avail",
                },
                {
                    "id": "plan",
                    "uses": "solver.solve",
                    "with": {"jobs": "${params.jobs}", "availability": window, "time_limit_s": 10},
                    "save_as": "plan",
                },
                {
                    "id": "check",
                    "uses": "schedule.validate",
                    "with": {
                        "problem": {"jobs": "${params.jobs}", "availability": window},
                        "plan": "${steps.plan}",
                    },
                },
            ],
        },
    )
    with db.tx() as conn:
        (run_id,) = store_runs.enqueue(conn, task["id"])
    with running_worker(db):
        wait_for(
            lambda: scalar(db, "SELECT state FROM task_run WHERE run_id = :id AND final", id=run_id),
            timeout=60,
        )
    with db.tx() as conn:
        run = store_runs.get(conn, run_id)
    assert run["state"] == "succeeded", run
    _, solved, checked = run["steps"]
    spans = sorted((a["start"], a["end"]) for a in solved["output"]["assignments"])
    assert spans == [  # 06:00-14:00, 14:00-22:00 and Tuesday 06:00-14:00 in Johannesburg (UTC+2)
        ("2026-03-02T04:00:00+00:00", "2026-03-02T12:00:00+00:00"),
        ("2026-03-02T12:00:00+00:00", "2026-03-02T20:00:00+00:00"),
        ("2026-03-03T04:00:00+00:00", "2026-03-03T12:00:00+00:00"),
    ]
    assert checked["output"]["valid"] is True
