"""scheduler.expand.feasibility: a rule that can never produce an occurrence is refused with the reason;
its nearest feasible neighbour is accepted and does produce one."""

from __future__ import annotations

import pytest

from scheduler.expand import parse_schedule
from store.errors import InvalidSchedule
from tests.unit.expand.support import NOW, utc

DTSTART = "DTSTART:20260301T000000"  # a Sunday, at midnight, in March

# (refused rule, reason, accepted neighbour)
NEAR_MISSES = [
    ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "30 February", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29"),
    ("FREQ=DAILY;BYMONTH=4;BYMONTHDAY=31", "30 February", "FREQ=DAILY;BYMONTH=5;BYMONTHDAY=31"),
    ("FREQ=YEARLY;BYWEEKNO=1;BYMONTH=6", "30 February", "FREQ=YEARLY;BYWEEKNO=1;BYMONTH=12"),
    ("FREQ=MONTHLY;BYDAY=MO;BYSETPOS=6", "30 February", "FREQ=MONTHLY;BYDAY=MO;BYSETPOS=5"),
    ("FREQ=MONTHLY;INTERVAL=6;BYMONTH=4", "never reaches its BYMONTH", "FREQ=MONTHLY;INTERVAL=6;BYMONTH=9"),
    (  # every 4 months from March reaches March, July and November: of its months only November
        "FREQ=MONTHLY;INTERVAL=4;BYMONTH=2,11;BYMONTHDAY=31",
        "30 February",
        "FREQ=MONTHLY;INTERVAL=4;BYMONTH=2,7;BYMONTHDAY=31",
    ),
    ("FREQ=DAILY;INTERVAL=7;BYDAY=TU", "always a SU", "FREQ=DAILY;INTERVAL=7;BYDAY=SU,TU"),
    ("FREQ=DAILY;BYHOUR=8,9;BYSETPOS=3", "beyond the 2 instance(s)", "FREQ=DAILY;BYHOUR=8,9;BYSETPOS=-2"),
    (
        "FREQ=MINUTELY;INTERVAL=1440;BYHOUR=5",
        "never reaches its BYHOUR",
        "FREQ=MINUTELY;INTERVAL=1440;BYHOUR=0",
    ),
    (
        "FREQ=SECONDLY;INTERVAL=120;BYMINUTE=1",
        "never reaches its BYHOUR/BYMINUTE",
        "FREQ=SECONDLY;INTERVAL=120;BYMINUTE=2",
    ),
]


@pytest.mark.parametrize(("refused", "reason", "accepted"), NEAR_MISSES, ids=[n[0] for n in NEAR_MISSES])
def test_rule_that_never_occurs_is_refused_and_its_neighbour_occurs(
    refused: str, reason: str, accepted: str
) -> None:
    """Refused with the reason when the task is created (dateutil would scan to 9999 on every tick);
    one part away, the rule is accepted and has an occurrence."""
    with pytest.raises(InvalidSchedule) as err:
        parse_schedule("rrule", f"{DTSTART}\nRRULE:{refused}", "UTC", now=NOW)
    assert "the rule never produces an occurrence" in err.value.message
    assert reason in err.value.message
    assert err.value.details["field"] == "schedule_expr"

    schedule = parse_schedule("rrule", f"{DTSTART}\nRRULE:{accepted}", "UTC", now=NOW)
    assert schedule is not None and schedule.next_at_or_after(utc(2026, 3, 1)) is not None
