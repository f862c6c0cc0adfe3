"""The `Schedule` interface (`between`, `next_at_or_after`) and the one implementation every
time-based kind shares: both answered from a kind's ascending stream of instants, with memos so a
steady scheduler tick over a quiet window costs a comparison.

A kind only says how to stream its instants from a point (`stream`). The memos are single tuples
replaced whole, so a compiled schedule can be cached and shared between tasks and threads.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from scheduler.expand.budget import Budget, ScheduleTooCostly
from scheduler.expand.walltime import TINY, utc_naive

__all__ = ["CACHE_SIZE", "Expansion", "Schedule"]

# Parsed expressions and compiled schedules kept per process (each cache keyed by expression): tasks
# with the same schedule share one object, and a tick over 10,000 tasks parses each expression once.
CACHE_SIZE = 4096


class Schedule(Protocol):
    """A compiled time-based schedule (cron, rrule or once). Instances are immutable in meaning and
    safe to share between threads; they only memoise the last empty stretch they found."""

    kind: str
    zone: ZoneInfo  # the zone wall times are read in (an RRULE's DTSTART TZID wins over the task's)

    def between(self, start: datetime, end: datetime, budget: Budget | None = None) -> list[datetime]:
        """Occurrences in [start, end) as aware UTC datetimes, ascending. start/end are aware.
        With a budget: ScheduleTooCostly once it is spent, with the occurrences `found` before its
        `resume` point."""
        ...

    def next_at_or_after(self, t: datetime, budget: Budget | None = None) -> datetime | None:
        """First occurrence >= t (aware UTC), or None when the rule is exhausted (COUNT/UNTIL/once
        passed). With a budget: ScheduleTooCostly once it is spent (none before its `resume` point)."""
        ...


class Expansion(ABC):
    """between / next_at_or_after over `stream(t)` (ascending instants >= t), with a memo of the last
    empty stretch [lo, hi) seen (hi None: nothing at or after lo), so quiet windows cost nothing."""

    kind = ""
    zone: ZoneInfo

    def __init__(self) -> None:
        self._memo: tuple[datetime, datetime | None] | None = None
        # the last window and its answer: tasks sharing a schedule ask the same window in one tick
        self._last: tuple[datetime, datetime, list[datetime]] | None = None

    @abstractmethod
    def stream(self, t: datetime, budget: Budget | None = None) -> Iterator[datetime]:
        """Ascending instants (naive UTC) >= t, t a naive UTC instant; with a budget, metered
        (budget.metered: ScheduleTooCostly once it is spent)."""

    def first_instant(self) -> datetime | None:
        """Where the set begins, for a preview "from DTSTART on" (None: no lower bound of its own)."""
        return None

    def between(self, start: datetime, end: datetime, budget: Budget | None = None) -> list[datetime]:
        s, e = utc_naive(start, "start"), utc_naive(end, "end")
        if e <= s:
            return []
        memo = self._memo
        if memo is not None and memo[0] <= s and (memo[1] is None or e <= memo[1]):
            return []
        last = self._last
        if last is not None and last[0] == s and last[1] == e:
            return list(last[2])
        out: list[datetime] = []
        after = None
        try:
            for i in self.stream(s, budget):
                if i >= e:
                    after = i
                    break
                out.append(i)
        except ScheduleTooCostly as exc:
            exc.found = [i.replace(tzinfo=UTC) for i in out]
            raise
        self._memo = (out[-1] + TINY if out else s, after)
        result = [i.replace(tzinfo=UTC) for i in out]
        self._last = (s, e, result)
        return list(result)

    def next_at_or_after(self, t: datetime, budget: Budget | None = None) -> datetime | None:
        s = utc_naive(t, "t")
        memo = self._memo
        if memo is not None and memo[0] <= s and (memo[1] is None or s <= memo[1]):
            found = memo[1]
        else:
            found = next(self.stream(s, budget), None)
            self._memo = (s, found)
        return None if found is None else found.replace(tzinfo=UTC)
