"""Holiday calendars: public holidays by country and subdivision (the `holidays` library, never
hand-typed dates), plus a plant's own dates and recurring days (RRULE, through the scheduler's RFC
5545 code).

When a public holiday falls on a weekend and the country observes it on another day (ZA: Freedom Day
on Sunday 27 April 2025 is observed on Monday 28 April; US: Independence Day on Saturday 4 July 2026
is observed on Friday 3 July), the calendar's `observed` setting says which dates stop the plant:
`both` (default) the holiday and its observed day, `actual` only the holiday itself, `observed_only`
the observed day instead of the holiday. Dates are the plant's local dates.

Pure: no database. Country tables are cached per (country, subdivision, year).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import holidays

from scheduler.expand import ScheduleTooCostly, parse_schedule, recurs_more_than
from scheduler.expand.budget import COSTLY_BECAUSE
from store.errors import InvalidSchedule
from store.problems import Problems

__all__ = ["OBSERVED_SETTINGS", "HolidayCalendar", "parse_calendar", "parse_region"]

OBSERVED_SETTINGS = ("both", "actual", "observed_only")
_MAX_ENTRIES = 1000
_LANGUAGE = "en_US"  # holiday names in English where the country's table has them
_OBSERVANCE_REACH = timedelta(days=7)  # an observed day lies within a week of its holiday


@dataclass(frozen=True)
class HolidayCalendar:
    name: str
    country: str | None = None
    subdivision: str | None = None
    observed: str = "both"
    custom_dates: tuple[tuple[date, str], ...] = ()
    rules: tuple[tuple[str, str], ...] = ()  # (RFC 5545 block with DTSTART, name)
    definition: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def dates(self, start: date, end: date) -> dict[date, str]:
        """Holidays from `start` to `end` (both included): date -> name ('; ' between several)."""
        found: dict[date, list[str]] = {}
        if self.country:
            for year in range(start.year, end.year + 1):
                for day, names in _public_holidays(self.country, self.subdivision, self.observed, year):
                    if start <= day <= end:
                        found.setdefault(day, []).extend(names)
        for day, name in self.custom_dates:
            if start <= day <= end:
                found.setdefault(day, []).append(name)
        for block, name in self.rules:
            for day in _rule_dates(block, start, end):
                found.setdefault(day, []).append(name)
        return {day: "; ".join(dict.fromkeys(names)) for day, names in sorted(found.items())}

    def describe(self) -> dict[str, Any]:
        return dict(self.definition)


def parse_region(text: str) -> tuple[str, str | None]:
    """`ZA` -> ("ZA", None); `US-CA` -> ("US", "CA"); `FR-Alsace-Moselle` keeps the rest whole."""
    country, _, subdivision = text.strip().partition("-")
    return country.upper(), (subdivision or None)


def parse_calendar(
    doc: Any, problems: Problems, path: str, *, name: str | None = None
) -> HolidayCalendar | None:
    """Check a calendar document; problems go to `problems`. None if invalid."""
    if not isinstance(doc, Mapping):
        problems.add(
            path, None, "a holiday calendar is an object with country, subdivision, observed, dates, rules"
        )
        return None
    before = problems.count
    known = {"name", "country", "subdivision", "observed", "dates", "rules", "description"}
    for key in doc:
        if key not in known:
            problems.add(path, str(key), f"unknown field; a holiday calendar has {', '.join(sorted(known))}")
    if name is None or "name" in doc:
        name = problems.name(doc.get("name"), path, expected=name)
    country, subdivision = _region(doc, problems, path)
    observed = doc.get("observed", "both")
    if observed not in OBSERVED_SETTINGS:
        problems.add(
            path, "observed", f"observed must be one of {', '.join(OBSERVED_SETTINGS)}, not {observed!r}"
        )
    description = doc.get("description", "")
    if not isinstance(description, str) or len(description) > 2000:
        problems.add(path, "description", "description must be text of at most 2000 characters")
    custom = _custom_dates(doc.get("dates", []), problems, path)
    rules = _rules(doc.get("rules", []), problems, path)
    if not country and not custom and not rules and problems.count == before:
        problems.add(path, "country", "a calendar needs a country, dates or rules")
    if problems.count > before or name is None:
        return None
    definition = {
        "name": name,
        "country": country,
        "subdivision": subdivision,
        "observed": observed,
        "dates": [{"date": d.isoformat(), "name": n} for d, n in custom],
        "rules": list(doc.get("rules", [])),
        "description": description,
    }
    return HolidayCalendar(
        name=name,
        country=country,
        subdivision=subdivision,
        observed=observed,
        custom_dates=tuple(custom),
        rules=tuple(rules),
        definition=MappingProxyType(definition),
    )


def _region(doc: Mapping[str, Any], problems: Problems, path: str) -> tuple[str | None, str | None]:
    country, subdivision = doc.get("country"), doc.get("subdivision")
    if country is None:
        if subdivision is not None:
            problems.add(path, "subdivision", "a subdivision needs its country")
        return None, None
    if not isinstance(country, str) or not country.strip():
        problems.add(path, "country", "country is an ISO 3166 code such as 'ZA' or 'US'")
        return None, None
    if subdivision is not None and not isinstance(subdivision, str):
        problems.add(path, "subdivision", "subdivision is a code such as 'CA' (US) or 'GP' (ZA)")
        return None, None
    if subdivision is None and "-" in country:
        country, subdivision = parse_region(country)
    country = country.strip().upper()
    error = region_error(country, subdivision)
    if error is not None:
        problems.add(path, error[0], error[1])
        return None, None
    return country, subdivision


def region_error(country: str, subdivision: str | None) -> tuple[str, str] | None:
    """(field, message) when the holidays library has no table for this country or subdivision."""
    supported = holidays.list_supported_countries()
    if country not in supported:
        return (
            "country",
            f"unknown country {country!r}: use an ISO 3166 code the holidays library knows (ZA, US, DE, ...)",
        )
    if subdivision is not None:
        try:
            holidays.country_holidays(country, subdiv=subdivision, years=2000)
        except NotImplementedError:
            known = ", ".join(supported[country]) or "none"
            return "subdivision", f"{country} has no subdivision {subdivision!r}; known subdivisions: {known}"
    return None


def _custom_dates(value: Any, problems: Problems, path: str) -> list[tuple[date, str]]:
    if not isinstance(value, list) or len(value) > _MAX_ENTRIES:
        problems.add(
            path, "dates", f"dates is a list (at most {_MAX_ENTRIES}) of {{date, name}} or 'YYYY-MM-DD'"
        )
        return []
    out = []
    for i, item in enumerate(value):
        where = f"dates[{i}]"
        raw, label = (
            (item, "Plant holiday")
            if isinstance(item, str)
            else (
                (item.get("date"), item.get("name", "Plant holiday"))
                if isinstance(item, Mapping)
                else (None, None)
            )
        )
        day = _date(raw)
        if day is None:
            problems.add(path, where, f"expected a date YYYY-MM-DD (or {{date, name}}), got {item!r}")
        elif not isinstance(label, str) or not 1 <= len(label) <= 200:
            problems.add(path, f"{where}.name", "a holiday name is text of 1-200 characters")
        else:
            out.append((day, label))
    return out


def _rules(value: Any, problems: Problems, path: str) -> list[tuple[str, str]]:
    if not isinstance(value, list) or len(value) > _MAX_ENTRIES:
        problems.add(path, "rules", f"rules is a list (at most {_MAX_ENTRIES}) of {{rrule, name, start}}")
        return []
    out = []
    for i, item in enumerate(value):
        where = f"rules[{i}]"
        if not isinstance(item, Mapping):
            problems.add(path, where, "a holiday rule is an object with rrule, name and start")
            continue
        rule, label, start = item.get("rrule"), item.get("name", "Plant holiday"), item.get("start")
        if not isinstance(label, str) or not 1 <= len(label) <= 200:
            problems.add(path, f"{where}.name", "a holiday name is text of 1-200 characters")
            continue
        block = rrule_block(rule, start, problems, path, where)
        if block is not None:
            out.append((block, label))
    return out


def rrule_block(rule: Any, start: Any, problems: Problems, path: str, where: str) -> str | None:
    """An RFC 5545 block for a recurring holiday: DTSTART is the `start` date (a rule without one
    would depend on the day it was read), then the rule's lines. Checked by the scheduler's code."""
    if not isinstance(rule, str) or not rule.strip():
        problems.add(
            path, f"{where}.rrule", "rrule is an RFC 5545 rule such as FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=24"
        )
        return None
    if "DTSTART" in rule.upper():
        problems.add(path, f"{where}.rrule", "give the first date in start, not as a DTSTART line")
        return None
    first = _date(start)
    if first is None:
        problems.add(path, f"{where}.start", f"start is the rule's first date YYYY-MM-DD, got {start!r}")
        return None
    lines = [line.strip() for line in rule.strip().splitlines() if line.strip()]
    if not any(":" in line for line in lines):
        lines = [f"RRULE:{lines[0]}", *lines[1:]]
    block = "\n".join([f"DTSTART;VALUE=DATE:{first:%Y%m%d}", *lines])
    begin = datetime.combine(first, time(), UTC)
    try:
        schedule = parse_schedule("rrule", block, "UTC", now=begin)
        # A holiday is a date: a rule naming several times a day (every second, every minute) would
        # have every read and generation walk them all.
        if schedule is not None and recurs_more_than(schedule, 366, begin, begin + timedelta(days=366)):
            problems.add(path, f"{where}.rrule", "a holiday rule names dates: at most one a day")
            return None
    except InvalidSchedule as e:
        problems.add(path, f"{where}.rrule", e.message)
        return None
    except ScheduleTooCostly:
        problems.add(path, f"{where}.rrule", f"the rule is too costly to expand: {COSTLY_BECAUSE}")
        return None
    return block


def _rule_dates(block: str, start: date, end: date) -> list[date]:
    schedule = _compiled(block)
    lo = datetime.combine(start, time(), UTC)
    hi = datetime.combine(end + timedelta(days=1), time(), UTC)
    return [instant.date() for instant in schedule.between(lo, hi)]


@lru_cache(maxsize=256)
def _compiled(block: str) -> Any:
    # A date-valued DTSTART read in UTC: every occurrence is midnight UTC of its date.
    return parse_schedule("rrule", block, "UTC", now=datetime(2000, 1, 1, tzinfo=UTC))


def _date(value: Any) -> date | None:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


@lru_cache(maxsize=512)
def _public_holidays(
    country: str, subdivision: str | None, observed: str, year: int
) -> tuple[tuple[date, tuple[str, ...]], ...]:
    """The dates of `year` that stop the plant, with their names, under the observed setting."""
    actual = _table(country, subdivision, year, observed=False)
    if observed == "actual":
        return tuple((day, tuple(names)) for day, names in sorted(actual.items()))
    # The observed table of the neighbouring years too: 1 January 2022 (a Saturday) is observed in
    # the US on 31 December 2021, which only the 2021 table lists.
    full: dict[date, list[str]] = {}
    actual_around: dict[date, list[str]] = {}
    for y in (year - 1, year, year + 1):
        for day, names in _table(country, subdivision, y, observed=True).items():
            full.setdefault(day, []).extend(names)
        for day, names in _table(country, subdivision, y, observed=False).items():
            actual_around.setdefault(day, []).extend(names)
    result: dict[date, list[str]] = {}
    moved: dict[date, set[str]] = {}  # actual dates whose holiday is observed elsewhere -> those names
    for day, names in full.items():
        kept = actual_around.get(day, [])
        for name in names:
            if name in kept:
                result.setdefault(day, []).append(name)
                continue
            result.setdefault(day, []).append(name)  # an observed day
            original = _observed_original(name, day, actual_around)
            if original is not None:
                moved.setdefault(original[0], set()).add(original[1])
    if observed == "observed_only":
        for day, names in moved.items():
            remaining = [n for n in result.get(day, []) if n not in names]
            if remaining:
                result[day] = remaining
            else:
                result.pop(day, None)
    return tuple((day, tuple(result[day])) for day in sorted(result) if day.year == year)


def _observed_original(name: str, day: date, actual: Mapping[date, list[str]]) -> tuple[date, str] | None:
    """The holiday an observed day stands for: the nearest actual holiday whose name the observed
    day's name contains ("Freedom Day (observed)" -> "Freedom Day", a day earlier)."""
    best: tuple[int, int, date, str] | None = None
    for offset in range(-_OBSERVANCE_REACH.days, _OBSERVANCE_REACH.days + 1):
        other = day + timedelta(days=offset)
        for candidate in actual.get(other, []):
            if candidate != name and candidate in name:
                key = (abs(offset), -len(candidate), other, candidate)
                if best is None or key < best:
                    best = key
    return None if best is None else (best[2], best[3])


def _table(country: str, subdivision: str | None, year: int, *, observed: bool) -> dict[date, list[str]]:
    return {day: list(names) for day, names in _table_cached(country, subdivision, year, observed)}


@lru_cache(maxsize=1024)
def _table_cached(
    country: str, subdivision: str | None, year: int, observed: bool
) -> tuple[tuple[date, tuple[str, ...]], ...]:
    probe = holidays.country_holidays(country, subdiv=subdivision, years=year, observed=observed)
    language = _LANGUAGE if _LANGUAGE in getattr(probe, "supported_languages", ()) else None
    table = holidays.country_holidays(
        country, subdiv=subdivision, years=year, observed=observed, language=language
    )
    return tuple((day, tuple(table.get_list(day))) for day in sorted(table))
