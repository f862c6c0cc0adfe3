"""scheduler.expand.once: one ISO 8601 timestamp, with an offset or read in the task's zone."""

from __future__ import annotations

import pytest

from scheduler.expand import normalize_expr
from store.errors import InvalidSchedule
from tests.unit.expand.support import CHI, NOW, NY, local, sched, utc


def test_once_with_offset_and_naive() -> None:
    """once takes ISO 8601 with offset, or a naive time read in the task's zone (fold=0)."""
    s = sched("once", "2026-04-01T08:00:00+03:00", "UTC")
    assert s.between(utc(2026, 4, 1), utc(2026, 4, 2)) == [utc(2026, 4, 1, 5)]
    assert s.next_at_or_after(utc(2026, 4, 1, 5)) == utc(2026, 4, 1, 5)
    assert s.next_at_or_after(utc(2026, 4, 1, 5, 0, 1)) is None
    assert sched("once", "2026-03-08T02:30", NY).next_at_or_after(NOW) == local(NY, 2026, 3, 8, 3, 30)
    assert normalize_expr("once", " 2026-04-01T08:00 ", CHI, now=NOW) == "2026-04-01T08:00:00+03:00"
    assert normalize_expr("once", "2026-04-01T05:00:00Z", CHI, now=NOW) == "2026-04-01T05:00:00+00:00"


def test_once_in_the_past_is_refused_when_stored_but_parses_as_exhausted() -> None:
    """normalize_expr refuses a past once; an already stored one simply never fires again."""
    with pytest.raises(InvalidSchedule) as err:
        normalize_expr("once", "2020-01-01T00:00:00+00:00", "UTC", now=NOW)
    assert err.value.message.startswith("once at 2020-01-01T00:00:00+00:00 is in the past")
    assert err.value.details["field"] == "schedule_expr"
    assert sched("once", "2020-01-01T00:00:00+00:00").next_at_or_after(NOW) is None
