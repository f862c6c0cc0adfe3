"""engine.tools.holiday_calendars: public holidays from the holidays library, the observed setting,
custom dates and RRULE holidays."""

from __future__ import annotations

from datetime import date

import pytest

from engine.tools.holiday_calendars import HolidayCalendar, parse_calendar, parse_region
from store.problems import Problems


@pytest.mark.parametrize(
    ("observed", "expected"),
    [
        ("both", {date(2025, 4, 27): "Freedom Day", date(2025, 4, 28): "Freedom Day (observed)"}),
        ("actual", {date(2025, 4, 27): "Freedom Day"}),
        ("observed_only", {date(2025, 4, 28): "Freedom Day (observed)"}),
    ],
)
def test_za_freedom_day_2025_falls_on_sunday_and_is_observed_on_monday(observed: str, expected: dict) -> None:
    calendar = HolidayCalendar("za", "ZA", observed=observed)
    assert calendar.dates(date(2025, 4, 26), date(2025, 4, 29)) == expected


@pytest.mark.parametrize(
    ("observed", "expected"),
    [
        ("both", {date(2026, 7, 3): "Independence Day (observed)", date(2026, 7, 4): "Independence Day"}),
        ("actual", {date(2026, 7, 4): "Independence Day"}),
        ("observed_only", {date(2026, 7, 3): "Independence Day (observed)"}),
    ],
)
def test_us_independence_day_2026_is_a_saturday_observed_on_friday(observed: str, expected: dict) -> None:
    calendar = HolidayCalendar("us", "US", observed=observed)
    assert calendar.dates(date(2026, 7, 1), date(2026, 7, 6)) == expected


def test_an_observed_day_in_the_previous_year_is_found() -> None:
    """1 January 2022 was a Saturday: the US observed it on Friday 31 December 2021."""
    calendar = HolidayCalendar("us", "US", observed="observed_only")
    assert calendar.dates(date(2021, 12, 30), date(2022, 1, 3)) == {
        date(2021, 12, 31): "New Year's Day (observed)"
    }


def test_subdivisions_add_their_own_holidays() -> None:
    national = HolidayCalendar("us", "US").dates(date(2026, 3, 30), date(2026, 4, 1))
    california = HolidayCalendar("ca", "US", "CA").dates(date(2026, 3, 30), date(2026, 4, 1))
    assert date(2026, 3, 31) not in national
    assert california[date(2026, 3, 31)] == "Cesar Chavez Day"


def test_custom_dates_and_rrule_holidays_join_the_public_ones() -> None:
    problems = Problems()
    calendar = parse_calendar(
        {
            "name": "acme",
            "country": "ZA",
            "dates": ["2026-12-24", {"date": "2026-12-31", "name": "Year-end closure"}],
            "rules": [
                {"rrule": "FREQ=YEARLY;BYMONTH=8;BYDAY=1FR", "name": "Founders' Day", "start": "2020-01-01"}
            ],
        },
        problems,
        "calendar",
    )
    assert problems.items == []
    assert calendar is not None
    assert calendar.dates(date(2026, 8, 1), date(2026, 8, 10)) == {
        date(2026, 8, 7): "Founders' Day",
        date(2026, 8, 9): "National Women's Day",
        date(2026, 8, 10): "National Women's Day (observed)",
    }
    assert calendar.dates(date(2026, 12, 24), date(2026, 12, 31)) == {
        date(2026, 12, 24): "Plant holiday",
        date(2026, 12, 25): "Christmas Day",
        date(2026, 12, 26): "Day of Goodwill",
        date(2026, 12, 31): "Year-end closure",
    }


def test_unknown_countries_subdivisions_and_impossible_rules_are_refused() -> None:
    problems = Problems()
    parse_calendar({"name": "a", "country": "XX"}, problems, "calendars[0]")
    parse_calendar(
        {
            "name": "b",
            "country": "US",
            "subdivision": "ZZ",
            "observed": "sometimes",
            "rules": [{"rrule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "start": "2020-01-01"}],
        },
        problems,
        "calendars[1]",
    )
    found = {(p["path"], p["field"]): p["message"] for p in problems.items}
    assert found[("calendars[0]", "country")].startswith("unknown country 'XX'")
    assert found[("calendars[1]", "subdivision")].startswith(
        "US has no subdivision 'ZZ'; known subdivisions: AK"
    )
    assert (
        found[("calendars[1]", "observed")]
        == "observed must be one of both, actual, observed_only, not 'sometimes'"
    )
    assert "never produces an occurrence" in found[("calendars[1]", "rules[0].rrule")]


def test_regions_read_country_and_subdivision() -> None:
    assert parse_region("za") == ("ZA", None)
    assert parse_region("US-CA") == ("US", "CA")
    assert parse_region("FR-Alsace-Moselle") == ("FR", "Alsace-Moselle")
