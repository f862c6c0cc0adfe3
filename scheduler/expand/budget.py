"""Bounding the work of one expansion: a time budget checked as a schedule's stream examines instants.

What a rule costs is not what it yields. `FREQ=SECONDLY;BYHOUR=3;BYMINUTE=0;BYSECOND=0` yields once a
day but dateutil walks the day second by second to find it (~80 ms per occurrence); an EXRULE equal
to its RRULE yields nothing at all and is walked to the year 9999. A preview of such a rule inside an
API request, or its expansion inside the scheduler's tick, must stop instead of running for minutes
(and, in the tick, holding back every other task's occurrences).

A `Budget` is a deadline. A stream given one checks it before each instant it examines (yielded, or
dropped by EXRULE/EXDATE) and, once it is spent, raises `ScheduleTooCostly` carrying `resume`: every
occurrence before it has already been yielded, so an expansion can continue from there later and
miss nothing. The first instant a stream examines is never refused, so each call makes progress. The
check sits between instants: one instant that dateutil takes long to find (a sub-daily rule whose
day filters match once in decades) can overrun the budget by its own cost.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from store.errors import OrdoError

__all__ = ["COSTLY_BECAUSE", "Budget", "ScheduleTooCostly", "metered"]

# Why a rule costs more than it yields, for the messages that refuse or cut one short.
COSTLY_BECAUSE = (
    "its rule makes the expansion examine far more instants than it keeps (an EXRULE or EXDATE removing "
    "almost everything, a COUNT with a long history to count, a sub-daily rule with an INTERVAL narrowed "
    "to rare days); write the rule at the frequency it fires"
)


class ScheduleTooCostly(OrdoError):
    """Expanding a schedule took more work than its budget allows. `resume` (aware UTC): every
    occurrence before it has been produced (`found`, when the caller collected them)."""

    code, status = "SCHEDULE_TOO_COSTLY", 422

    def __init__(
        self,
        message: str,
        *,
        resume: datetime | None,
        found: list[datetime] | None = None,
        details: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message, details=details)
        self.resume = resume
        self.found = found or []


class Budget:
    """A deadline for expanding one schedule (monotonic clock), shared by the calls one job makes."""

    __slots__ = ("_deadline", "seconds")

    def __init__(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError(f"a budget is a positive number of seconds, got {seconds!r}")
        self.seconds = seconds
        self._deadline = time.monotonic() + seconds

    def spent(self) -> bool:
        return time.monotonic() >= self._deadline

    def exceeded(self, resume: datetime | None) -> ScheduleTooCostly:
        """The error for a stream stopped before `resume` (naive UTC; None: where the stream began,
        filled in by the stream)."""
        return ScheduleTooCostly(
            f"expanding the schedule took more than {self.seconds:g} s",
            resume=None if resume is None else resume.replace(tzinfo=UTC),
            details={"budget_s": self.seconds},
        )


def metered(items: Iterable[datetime], budget: Budget | None) -> Iterator[datetime]:
    """`items` (ascending instants, naive UTC) until the budget is spent: then ScheduleTooCostly
    resuming at the first instant not yet yielded. The first instant always passes, so every call
    moves on."""
    iterator = iter(items)
    first = next(iterator, None)
    if first is None:
        return
    yield first
    if budget is None:
        yield from iterator
        return
    for i in iterator:
        if budget.spent():
            raise budget.exceeded(i)
        yield i
