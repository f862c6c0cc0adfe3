"""engine.tools.shift_patterns: built-in patterns and rotations, pattern documents and their checks."""

from __future__ import annotations

from datetime import date, time, timedelta

import pytest

from engine.tools.shift_patterns import BUILT_IN_NAMES, built_in, parse_pattern
from store.errors import InvalidPlant
from store.problems import Problems

MONDAY = date(2026, 1, 5)


def parsed(doc: dict) -> tuple:
    problems = Problems()
    pattern = parse_pattern(doc, problems, "pattern")
    return pattern, problems.items


@pytest.mark.parametrize(
    ("name", "hours"),
    [
        ("24x7", 168),
        ("two_shift", 80),
        ("day_only", 45),
        ("extended", 120),
        ("dupont", 168),
        ("pitman", 168),
        ("continental", 168),
    ],
)
def test_each_built_in_plans_its_weekly_hours(name: str, hours: float) -> None:
    """The built-ins' weekly hours are those the issue names (a week of shifts, nominal hours)."""
    pattern = built_in(name)
    assert pattern is not None
    assert pattern.weekly_hours == hours
    week = sum(s.minutes for d in range(28) for s in pattern.shifts_on(MONDAY + timedelta(days=d), MONDAY))
    assert week / 60 / 4 == hours


@pytest.mark.parametrize("name", ["dupont", "pitman", "continental"])
def test_rotations_have_four_crews_averaging_42_hours(name: str) -> None:
    pattern = built_in(name)
    assert pattern is not None and pattern.crews == ("A", "B", "C", "D")
    assert {crew: pattern.crew_weekly_hours(crew) for crew in pattern.crews} == dict.fromkeys("ABCD", 42.0)


@pytest.mark.parametrize("name", ["dupont", "pitman", "continental"])
def test_under_a_rotation_every_shift_of_every_day_has_exactly_one_crew(name: str) -> None:
    """The machine runs around the clock: each day's shifts are covered once, by one crew."""
    pattern = built_in(name)
    assert pattern is not None
    codes = {"dupont": ["D", "N"], "pitman": ["D", "N"], "continental": ["D", "A", "N"]}[name]
    for offset in range(pattern.cycle_days * 2):
        day = MONDAY + timedelta(days=offset)
        shifts = pattern.shifts_on(day, MONDAY)
        assert [s.shift_code for s in shifts] == codes
        assert all(s.crew in pattern.crews for s in shifts)
        workers = [c for c in pattern.crews if pattern.crew_shift_on(c, day, MONDAY) is not None]
        assert len(workers) == len(codes)


def test_rotation_shift_times_match_the_issue() -> None:
    dupont, continental = built_in("dupont"), built_in("continental")
    assert dupont is not None and continental is not None
    assert [(s.start, s.end, s.next_day) for s in dupont.shifts_on(MONDAY, MONDAY)] == [
        (time(6), time(18), False),
        (time(18), time(6), True),
    ]
    assert [(s.shift_code, s.start, s.end) for s in continental.shifts_on(MONDAY, MONDAY)] == [
        ("D", time(6), time(14)),
        ("A", time(14), time(22)),
        ("N", time(22), time(6)),
    ]


def test_dupont_crew_a_follows_the_dupont_cycle_from_the_anchor() -> None:
    """4 nights, 3 off, 3 days, 1 off, 3 nights, 3 off, 4 days, 7 off."""
    pattern = built_in("dupont")
    assert pattern is not None
    marks = "".join(
        (s.shift_code if (s := pattern.crew_shift_on("A", MONDAY + timedelta(days=i), MONDAY)) else "-")
        for i in range(28)
    )
    assert marks == "NNNN---DDD-NNN---DDDD-------"
    # The cycle counts from the anchor: a day before it is the cycle's last day.
    assert pattern.crew_shift_on("A", MONDAY - timedelta(days=1), MONDAY) is None


def test_a_weekly_pattern_reads_day_ranges_overnight_and_midnight_ends() -> None:
    pattern, problems = parsed(
        {
            "name": "nights",
            "kind": "weekly",
            "rules": [
                {"days": "fri-mon", "start": "22:00", "end": "06:00", "shift_code": "N"},
                {"days": ["wed"], "start": "00:00", "end": "24:00", "shift_code": "C", "crew": "A"},
            ],
        }
    )
    assert problems == []
    assert [d for d in range(7) if pattern.days[d]] == [0, 2, 4, 5, 6]
    (night,) = pattern.shifts_on(date(2026, 1, 9))  # a Friday
    assert (night.start, night.end, night.next_day, night.minutes) == (time(22), time(6), True, 480)
    (whole,) = pattern.shifts_on(date(2026, 1, 7))
    assert (whole.next_day, whole.minutes, whole.crew) == (True, 1440, "A")
    assert pattern.crews == ("A",)


def test_overlapping_rules_are_refused_naming_both() -> None:
    """Sunday night's overnight shift runs into Monday morning's."""
    pattern, problems = parsed(
        {
            "name": "clash",
            "kind": "weekly",
            "rules": [
                {"days": "mon-fri", "start": "06:00", "end": "14:00", "shift_code": "D"},
                {"days": "sun", "start": "22:00", "end": "07:00", "shift_code": "N"},
            ],
        }
    )
    assert pattern is None
    assert problems == [
        {
            "path": "pattern",
            "field": "rules[1]",
            "message": "overlaps rules[0] at 06:00 on mon: a resource cannot run two shifts at once",
        }
    ]


def test_rotation_documents_are_checked_field_by_field() -> None:
    pattern, problems = parsed(
        {
            "name": "bad",
            "kind": "rotation",
            "cycle_days": 3,
            "shifts": {"D": {"start": "06:00", "end": "18:00"}, "X": {"start": "17:00", "end": "25:00"}},
            "crews": {"A": "DD", "B": "D-Q"},
        }
    )
    assert pattern is None
    assert {(p["field"], p["message"]) for p in problems} == {
        ("shifts.X.end", "expected a time HH:MM (or 24:00), got '25:00'"),
        ("crews.A", "the roster has 2 days; the cycle has 3"),
        ("crews.B", "day 3: 'Q' is not a shift of this rotation (D, or '-')"),
    }


def test_rotation_shifts_that_overlap_are_refused() -> None:
    _, problems = parsed(
        {
            "name": "overlap",
            "kind": "rotation",
            "cycle_days": 2,
            "shifts": {"D": {"start": "06:00", "end": "18:00"}, "N": {"start": "17:00", "end": "06:00"}},
            "crews": {"A": "DN", "B": "ND"},
        }
    )
    assert [(p["field"], p["message"][:20]) for p in problems] == [("shifts.N", "overlaps shifts.D at")]


def test_two_crews_on_one_shift_run_it_once_naming_both() -> None:
    pattern, problems = parsed(
        {
            "name": "pair",
            "kind": "rotation",
            "cycle_days": 2,
            "shifts": {"D": {"start": "08:00", "end": "16:00"}},
            "crews": {"A": "D-", "B": "DD"},
        }
    )
    assert problems == []
    assert [(s.shift_code, s.crew) for s in pattern.shifts_on(MONDAY, MONDAY)] == [("D", "A+B")]
    assert pattern.for_crew("A").shifts_on(MONDAY + timedelta(days=1), MONDAY) == ()


def test_a_malformed_pattern_reports_every_problem() -> None:
    _, problems = parsed(
        {"name": "bad name!", "kind": "weekly", "rules": [{"days": "funday", "start": "6"}], "x": 1}
    )
    fields = {p["field"] for p in problems}
    assert {"name", "x", "rules[0].days", "rules[0].start", "rules[0].end", "rules[0].shift_code"} <= fields


def test_built_in_names_are_the_fixed_ones() -> None:
    assert BUILT_IN_NAMES == ("24x7", "two_shift", "day_only", "extended", "dupont", "pitman", "continental")


def test_problems_raise_one_invalid_plant_with_every_problem() -> None:
    problems = Problems()
    problems.add("resources[0]", "code", "bad code")
    problems.add("row 3", "parent", "missing", row=3)
    with pytest.raises(InvalidPlant) as raised:
        problems.raise_if_any("the CSV")
    assert raised.value.message == (
        "the CSV was refused, nothing was stored: resources[0], field 'code': bad code (and 1 more problem)"
    )
    assert raised.value.details["errors"][1] == {
        "path": "row 3",
        "field": "parent",
        "message": "missing",
        "row": 3,
    }
