"""engine.tools.availability: shifts in real time (DST), holidays, exceptions cutting shifts,
inheritance through the plant, previews, and stored rows as solver calendars."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from engine.tools.availability import (
    Assignment,
    ExceptionRule,
    Node,
    PatternSpan,
    Plant,
    ResourcePlan,
    calendars_from_rows,
    checked_preview,
    compute_shifts,
    parse_exception,
    preview,
)
from engine.tools.holiday_calendars import HolidayCalendar
from engine.tools.shift_patterns import Pattern, built_in
from store.errors import InvalidPlant
from store.problems import Problems

CHISINAU, NEW_YORK, JOBURG = "Europe/Chisinau", "America/New_York", "Africa/Johannesburg"


def pattern(name: str) -> Pattern:
    found = built_in(name)
    assert found is not None
    return found


def plan(name: str, zone: str, first: date, last: date, **kwargs) -> ResourcePlan:
    return ResourcePlan(zone, (PatternSpan(first, last, pattern(name), first),), **kwargs)


def hours_by_day(rows) -> dict[date, float]:
    out: dict[date, float] = {}
    for r in rows:
        out[r.shift_date] = out.get(r.shift_date, 0) + (r.end - r.start).total_seconds() / 3600
    return out


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "short", "long"),
    [(CHISINAU, date(2026, 3, 29), date(2026, 10, 25)), (NEW_YORK, date(2026, 3, 8), date(2026, 11, 1))],
)
def test_a_24x7_day_lasts_as_long_as_the_local_day(zone: str, short: date, long: date) -> None:
    """23 real hours on the spring-forward day, 25 on the fall-back day, 24 otherwise."""
    for day, hours in ((short, 23), (long, 25), (short + timedelta(days=1), 24)):
        rows = compute_shifts(plan("24x7", zone, day, day), day, day)
        assert hours_by_day(rows) == {day: hours}
        (row,) = rows
        tz = ZoneInfo(zone)
        assert (row.start.astimezone(tz).hour, row.end.astimezone(tz).hour) == (0, 0)


@pytest.mark.parametrize(
    ("zone", "night_before_short", "night_before_long"),
    [(CHISINAU, date(2026, 3, 28), date(2026, 10, 24)), (NEW_YORK, date(2026, 3, 7), date(2026, 10, 31))],
)
def test_a_night_shift_across_a_transition_has_7_or_9_real_hours(
    zone: str, night_before_short: date, night_before_long: date
) -> None:
    """Continental's 22:00-06:00 shift belongs to the day it starts; its real length follows the clock."""
    for day, hours in ((night_before_short, 7), (night_before_long, 9)):
        rows = compute_shifts(plan("continental", zone, day, day), day, day)
        night = next(r for r in rows if r.shift_code == "N")
        assert (night.end - night.start).total_seconds() / 3600 == hours
        assert night.shift_date == day


def test_a_holiday_stops_every_shift_of_its_date_and_names_it() -> None:
    calendar = HolidayCalendar("za", "ZA")
    rows = compute_shifts(
        plan("24x7", JOBURG, date(2025, 4, 26), date(2025, 4, 29), calendar=calendar),
        date(2025, 4, 26),
        date(2025, 4, 29),
    )
    assert [(r.shift_date.day, r.status, r.capacity_pct, r.note) for r in rows] == [
        (26, "available", 100, None),
        (27, "holiday", 0, "Freedom Day"),
        (28, "holiday", 0, "Freedom Day (observed)"),
        (29, "available", 100, None),
    ]


def maintenance(**overrides) -> ExceptionRule:
    problems = Problems()
    doc = {
        "kind": "maintenance",
        "start": "2026-01-05T06:00",
        "end": "2026-01-05T10:00",
        "rrule": "FREQ=MONTHLY;BYDAY=1MO",
        **overrides,
    }
    rule = parse_exception(doc, JOBURG, problems, "exception")
    assert problems.items == [] and rule is not None
    return rule


def test_a_recurring_maintenance_window_cuts_the_shift_it_covers() -> None:
    """First Monday of each month 06:00-10:00: the day shift keeps operating from 10:00 to 14:00."""
    rows = compute_shifts(
        plan("two_shift", JOBURG, date(2026, 1, 1), date(2026, 3, 31), exceptions=(maintenance(),)),
        date(2026, 2, 1),
        date(2026, 2, 3),
    )
    tz = ZoneInfo(JOBURG)
    cut = [
        (
            r.shift_date.day,
            r.shift_code,
            r.start.astimezone(tz).hour,
            r.end.astimezone(tz).hour,
            r.status,
            r.exception,
        )
        for r in rows
    ]
    assert cut == [
        (2, "D", 6, 10, "maintenance", 0),
        (2, "D", 10, 14, "available", None),
        (2, "A", 14, 22, "available", None),
        (3, "D", 6, 14, "available", None),
        (3, "A", 14, 22, "available", None),
    ]


def test_the_lowest_capacity_wins_where_exceptions_overlap() -> None:
    reduced = maintenance(
        impact="reduced", capacity_pct=60, start="2026-02-02T08:00", end="2026-02-02T12:00", rrule=None
    )
    shutdown = maintenance(kind="shutdown", start="2026-02-02T11:00", end="2026-02-02T15:00", rrule=None)
    rows = compute_shifts(
        plan("two_shift", JOBURG, date(2026, 2, 2), date(2026, 2, 2), exceptions=(reduced, shutdown)),
        date(2026, 2, 2),
        date(2026, 2, 2),
    )
    tz = ZoneInfo(JOBURG)
    assert [
        (r.start.astimezone(tz).hour, r.end.astimezone(tz).hour, r.status, r.capacity_pct) for r in rows
    ] == [
        (6, 8, "available", 100),
        (8, 11, "maintenance", 60),
        (11, 14, "shutdown", 0),
        (14, 15, "shutdown", 0),
        (15, 22, "available", 100),
    ]


def test_exception_documents_are_checked() -> None:
    problems = Problems()
    parse_exception(
        {
            "kind": "lunch",
            "impact": "reduced",
            "start": "2026-01-05T10:00",
            "end": "2026-01-05T06:00",
            "x": 1,
        },
        JOBURG,
        problems,
        "exceptions[0]",
    )
    parse_exception(
        {
            "kind": "breakdown",
            "start": "2026-01-05T06:00",
            "end": "2026-01-05T07:00",
            "rrule": "FREQ=SOMETIMES",
        },
        JOBURG,
        problems,
        "exceptions[1]",
    )
    found = {(p["path"], p["field"]) for p in problems.items}
    assert found == {
        ("exceptions[0]", "x"),
        ("exceptions[0]", "kind"),
        ("exceptions[0]", "capacity_pct"),
        ("exceptions[0]", "end"),
        ("exceptions[1]", "rrule"),
    }
    ends_before = next(p for p in problems.items if p["field"] == "end")
    assert (
        ends_before["message"] == "the exception ends (2026-01-05T06:00) before it starts (2026-01-05T10:00)"
    )


def test_inheritance_takes_the_own_assignment_else_the_nearest_ancestors() -> None:
    """An area runs two_shift; one line overrides with 24x7 from a Monday; the machines inherit."""
    nodes = {
        "e": Node("e", "E", "enterprise", None, "UTC"),
        "s": Node("s", "S", "site", "e", JOBURG),
        "a": Node("a", "A", "area", "s"),
        "l1": Node("l1", "L1", "work_center", "a"),
        "l2": Node("l2", "L2", "work_center", "a"),
        "m1": Node("m1", "M1", "work_unit", "l1", requires_scheduling=True),
        "m2": Node("m2", "M2", "work_unit", "l2", requires_scheduling=True),
    }
    assignments = [
        Assignment("a", "two_shift", date(2026, 1, 1)),
        Assignment("l1", "24x7", date(2026, 1, 12)),
        Assignment("m2", "day_only", date(2026, 1, 5), date(2026, 1, 7)),
    ]
    plant = Plant(nodes, assignments)
    first, last = date(2026, 1, 5), date(2026, 1, 18)
    m1, _ = plant.plan("m1", first, last)
    m2, _ = plant.plan("m2", first, last)
    assert [(s.first, s.last, s.pattern.name) for s in m1.spans] == [
        (date(2026, 1, 5), date(2026, 1, 11), "two_shift"),
        (date(2026, 1, 12), date(2026, 1, 18), "24x7"),
    ]
    assert [(s.first, s.last, s.pattern.name) for s in m2.spans] == [
        (date(2026, 1, 5), date(2026, 1, 7), "day_only"),
        (date(2026, 1, 8), date(2026, 1, 18), "two_shift"),
    ]
    assert m1.zone == JOBURG
    assert plant.schedulable() == ["m1", "m2"]
    assert plant.schedulable(["l2"]) == ["m2"]


def test_a_later_own_assignment_wins_over_an_earlier_open_one() -> None:
    nodes = {"m": Node("m", "M", "work_unit", requires_scheduling=True)}
    plant = Plant(
        nodes,
        [
            Assignment("m", "two_shift", date(2026, 1, 1)),
            Assignment("m", "dupont", date(2026, 1, 10), anchor=date(2026, 1, 3)),
        ],
    )
    spans, _ = plant.plan("m", date(2026, 1, 5), date(2026, 1, 20))
    assert [(s.first, s.pattern.name, s.anchor) for s in spans.spans] == [
        (date(2026, 1, 5), "two_shift", date(2026, 1, 1)),
        (date(2026, 1, 10), "dupont", date(2026, 1, 3)),
    ]


def test_exceptions_of_ancestors_apply_in_their_own_zone() -> None:
    site_shutdown = ExceptionRule("shutdown", "no_operation", 0, utc(2026, 1, 6, 0), utc(2026, 1, 7, 0))
    nodes = {
        "s": Node("s", "S", "site", None, JOBURG),
        "m": Node("m", "M", "work_unit", "s", requires_scheduling=True),
    }
    plant = Plant(
        nodes, [Assignment("m", "two_shift", date(2026, 1, 1))], exceptions=[("x1", "s", site_shutdown)]
    )
    resource_plan, exception_ids = plant.plan("m", date(2026, 1, 5), date(2026, 1, 7))
    assert exception_ids == ("x1",)
    assert resource_plan.exceptions[0].zone == JOBURG
    statuses = {
        (r.shift_date.day, r.status)
        for r in compute_shifts(resource_plan, date(2026, 1, 5), date(2026, 1, 7))
    }
    assert statuses == {(5, "available"), (6, "shutdown"), (7, "available")}


def test_a_missing_pattern_is_a_clear_error() -> None:
    plant = Plant(
        {"m": Node("m", "M", "work_unit", requires_scheduling=True)},
        [Assignment("m", "gone", date(2026, 1, 1))],
    )
    with pytest.raises(InvalidPlant, match="follows pattern 'gone', which does not exist"):
        plant.plan("m", date(2026, 1, 1), date(2026, 1, 2))


def test_preview_has_the_fixed_shape() -> None:
    out = preview(pattern("two_shift"), NEW_YORK, date(2026, 7, 2), 3, calendar=HolidayCalendar("us", "US"))
    assert list(out) == ["days", "total_hours"]
    assert [(d["date"], d["planned_hours"], d["holiday"]) for d in out["days"]] == [
        ("2026-07-02", 16.0, None),
        ("2026-07-03", 0.0, "Independence Day (observed)"),
        ("2026-07-04", 0.0, "Independence Day"),
    ]
    assert out["days"][0]["shifts"][0] == {
        "start": "2026-07-02T06:00:00-04:00",
        "end": "2026-07-02T14:00:00-04:00",
        "shift_code": "D",
        "crew": None,
    }
    assert out["total_hours"] == 16.0


def test_preview_of_one_crew_shows_its_roster() -> None:
    out = preview(pattern("dupont"), CHISINAU, date(2026, 1, 1), 7, crew="A")
    assert [len(d["shifts"]) for d in out["days"]] == [1, 1, 1, 1, 0, 0, 0]
    assert {s["crew"] for d in out["days"] for s in d["shifts"]} == {"A"}
    assert out["total_hours"] == 48.0


def test_checked_preview_names_every_bad_argument() -> None:
    with pytest.raises(InvalidPlant) as raised:
        checked_preview(pattern("two_shift"), "Mars/Base", date(2026, 1, 1), 3, holidays="ZA-ZZ", crew="A")
    fields = [e["field"] for e in raised.value.details["errors"]]
    assert fields == ["timezone", "holidays", "crew"]
    assert "was refused:" in raised.value.message and "nothing was stored" not in raised.value.message


def test_stored_rows_become_solver_calendars() -> None:
    """Available rows open windows (touching ones merge); holidays and maintenance do not; a reduced
    exception opens only on request; a resource without open rows is never open, not always."""
    rows = [
        {
            "code": "P1",
            "starts_at": utc(2026, 2, 2, 4),
            "ends_at": utc(2026, 2, 2, 8),
            "status": "maintenance",
            "capacity_pct": 0,
        },
        {
            "code": "P1",
            "starts_at": utc(2026, 2, 2, 8),
            "ends_at": utc(2026, 2, 2, 12),
            "status": "available",
            "capacity_pct": 100,
        },
        {
            "code": "P1",
            "starts_at": utc(2026, 2, 2, 12),
            "ends_at": utc(2026, 2, 2, 20),
            "status": "available",
            "capacity_pct": 100,
        },
        {
            "code": "P1",
            "starts_at": utc(2026, 2, 3, 4),
            "ends_at": utc(2026, 2, 3, 8),
            "status": "maintenance",
            "capacity_pct": 50,
        },
        {
            "code": "P2",
            "starts_at": utc(2026, 2, 2, 0),
            "ends_at": utc(2026, 2, 3, 0),
            "status": "holiday",
            "capacity_pct": 0,
        },
    ]
    assert calendars_from_rows(["P1", "P2", "P3"], rows) == {
        "P1": [{"start": "2026-02-02T08:00:00Z", "end": "2026-02-02T20:00:00Z"}],
        "P2": [],
        "P3": [],
    }
    with_reduced = calendars_from_rows(["P1"], rows[:4], include_reduced=True)
    assert with_reduced["P1"][-1] == {"start": "2026-02-03T04:00:00Z", "end": "2026-02-03T08:00:00Z"}
