"""The `once` kind: a single ISO 8601 timestamp.

With an offset it is that instant; without one it is a wall time in the task's zone, read like every
other wall time (fold=0: a time in a spring-forward gap runs later by the gap, a repeated time runs at
its first occurrence).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from scheduler.expand.budget import Budget
from scheduler.expand.errors import expr_error
from scheduler.expand.expansion import Expansion
from scheduler.expand.walltime import YEARS, instant, utc_naive

__all__ = ["OnceSchedule", "parse_once"]


class OnceSchedule(Expansion):
    kind = "once"

    def __init__(self, at: datetime, tz: ZoneInfo) -> None:
        super().__init__()
        self.at = at  # aware, as written
        self.zone = tz
        self.at_utc = utc_naive(at, "once")

    def stream(self, t: datetime, budget: Budget | None = None) -> Iterator[datetime]:
        # One instant: nothing to meter.
        if self.at_utc >= t:
            yield self.at_utc


def parse_once(expr: str, tz: ZoneInfo) -> datetime:
    """The timestamp `expr` as an aware datetime (a naive one in `tz`), or InvalidSchedule."""
    text = expr.strip()
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise expr_error(
            f"invalid once timestamp {text!r}: use ISO 8601 such as 2026-03-29T08:00:00+03:00 "
            "(without an offset it is read in the task's time zone)"
        ) from None
    if not YEARS[0] <= at.year <= YEARS[1]:  # (9999-12-31T23:59-14:00 is past the end of datetime in UTC)
        raise expr_error(f"once timestamp {text!r} is outside the years {YEARS[0]}..{YEARS[1]}")
    if at.tzinfo is None:
        at = instant(tz, at).replace(tzinfo=UTC).astimezone(tz)
    return at
