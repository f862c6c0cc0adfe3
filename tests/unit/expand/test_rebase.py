"""scheduler.expand.rebase: a rule restarted near the window yields what dateutil yields from DTSTART."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import islice, takewhile

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from scheduler.expand.rebase import RebasingRule
from scheduler.expand.recurrence import RecurrenceSchedule
from tests.unit.expand.support import CHI, FAST, NOW, UNIT, RuleCase, count_rules, rules, sched, utc


def test_long_lived_minutely_rule_is_rebased_near_the_window() -> None:
    """Expansion of a minutely rule with a DTSTART two years back starts within a minute of the window."""
    s = sched("rrule", "DTSTART;TZID=Europe/Chisinau:20240301T000000\nRRULE:FREQ=MINUTELY;INTERVAL=7", CHI)
    assert isinstance(s, RecurrenceSchedule)
    rule: RebasingRule = s._rules[0]
    w_lo = datetime(2026, 3, 1, 14, 0)
    first = next(rule.walls_from(w_lo))
    assert timedelta(0) <= w_lo - first < timedelta(minutes=7)
    got = s.between(NOW, NOW + timedelta(minutes=10))
    assert got and all((g - utc(2024, 2, 29, 22)) % timedelta(minutes=7) == timedelta(0) for g in got)


@pytest.mark.parametrize(
    "value",
    [
        "FREQ=WEEKLY;BYDAY=MO,FR;BYSETPOS=1",
        "FREQ=WEEKLY;BYDAY=MO,TH,FR;BYSETPOS=2",
        "FREQ=MONTHLY;BYDAY=MO,FR;BYSETPOS=1,-1",
        "FREQ=YEARLY;BYDAY=FR;BYSETPOS=2",
    ],
)
def test_rebase_restarts_at_a_whole_period_so_bysetpos_sees_the_full_set(value: str) -> None:
    """BYSETPOS picks from a whole period, except DTSTART's own week, which dateutil truncates at
    DTSTART: the rebase never restarts inside that first period, and restarts others at their first day."""
    case = RuleCase(value, datetime(2026, 1, 7, 9))  # a Wednesday
    points = (datetime(2026, 1, 7, 12), datetime(2026, 3, 6, 3), datetime(2027, 6, 4, 3))
    _assert_same_walls_from(case, points, 10)


@FAST
@given(
    rule=rules(),
    periods=st.one_of(st.integers(-3, 3), st.integers(-3, 3000)),
    frac=st.floats(0, 1),
    count_shift=st.one_of(st.none(), st.integers(-3, 12)),
)
def test_rebased_rule_yields_the_same_wall_times_as_dateutil_from_dtstart(
    rule: RuleCase, periods: int, frac: float, count_shift: int | None
) -> None:
    """The rebase property: from any point, a rule restarted at a period boundary (every part explicit,
    COUNT carried in a checkpoint, counted arithmetically when every period is alike) yields exactly
    what dateutil yields iterating from DTSTART. `count_shift` puts the COUNT's end near the point."""
    w_lo = rule.point(periods, frac)
    if count_shift is not None and rule.count is None:
        before = _before(rule, w_lo)
        assume(before + count_shift > 0)
        rule = rule.with_count(before + count_shift)
    # ask twice (a later point first would be unusual; an earlier one re-uses the checkpoint), then here
    _assert_same_walls_from(rule, (w_lo - UNIT[rule.freq] * 3, w_lo), 25)


@FAST
@given(
    rule=count_rules(),
    periods=st.one_of(st.integers(0, 3), st.integers(0, 2000)),
    frac=st.floats(0, 1),
    shift=st.integers(-2, 8),
)
def test_count_is_carried_exactly_to_any_point(rule: RuleCase, periods: int, frac: float, shift: int) -> None:
    """A COUNT ending near the point asked about: the checkpointed rule stops exactly where dateutil does."""
    w_lo = rule.point(periods, frac)
    before = _before(rule, w_lo)
    assume(before + shift > 0)
    _assert_same_walls_from(rule.with_count(before + shift), (w_lo - UNIT[rule.freq] * 2, w_lo), 12)


def _assert_same_walls_from(rule: RuleCase, points: tuple[datetime, ...], n: int) -> None:
    """From each point in turn (one compiled rule, so checkpoints carry over), the first n wall times
    at or after it are dateutil's."""
    compiled, reference = rule.compiled(), rule.reference()
    for point in points:
        got = list(islice((w for w in compiled.walls_from(point) if w >= point), n))
        assert got == list(islice((w for w in reference if w >= point), n))


def _before(rule: RuleCase, w: datetime) -> int:
    """How many occurrences dateutil yields before wall time w."""
    return sum(1 for _ in takewhile(lambda x: x < w, rule.reference()))
