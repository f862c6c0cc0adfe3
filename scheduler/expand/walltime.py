"""Wall clock <-> UTC: IANA zones, and the one rule that turns a wall time into an instant.

Every schedule kind is expanded in naive local wall-clock time in its zone (RFC 5545 section 3.3.5 as
applied to recurrence instances by 3.3.10), and each wall time becomes an instant with `fold=0`,
converted through UTC. That gives exactly:

* a wall time inside a spring-forward gap takes the UTC offset *before* the gap, so it lands later
  by the gap: daily 02:30 America/New_York on 2026-03-08 runs at 03:30-04:00;
* a wall time that occurs twice (fall-back) means its *first* occurrence: 01:30 on 2026-11-01 is
  01:30-04:00, once;
* a daily 08:00 Europe/Chisinau task runs at 08:00 local on both sides of each transition;
* wall times that map onto the same instant (02:30 shifted onto an existing 03:30) count once.

Representation: internally an instant is a naive datetime in UTC (cheaper to compare than aware
ones) and a wall time is a naive datetime in the schedule's zone.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, time, timedelta
from typing import cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from store.errors import InvalidSchedule

__all__ = [
    "DAY",
    "MAX_AHEAD",
    "TINY",
    "YEARS",
    "as_instant",
    "instant",
    "instants",
    "local_midnight",
    "lookup_zone",
    "offset_at",
    "utc_naive",
    "wall_floor",
    "zone",
]

DAY = timedelta(days=1)
TINY = timedelta(microseconds=1)
# No zone is more than 14 h ahead of UTC; a wall time is at most this far after its instant.
MAX_AHEAD = timedelta(hours=15)
# The years a schedule may start in (an RRULE's DTSTART, a once timestamp): every window computation
# around them stays clear of datetime's limits (years 1 and 9999).
YEARS = (1800, 9000)


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`, or InvalidSchedule naming it."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidSchedule(
            "a time zone is required: an IANA name such as 'Europe/Chisinau' or 'UTC'",
            details={"field": "timezone"},
        )
    return lookup_zone(name, {"field": "timezone", "value": name}, "")


def lookup_zone(name: str, details: dict[str, str], where: str) -> ZoneInfo:
    """The IANA zone `name`; an unknown one is refused with `details`, `where` saying where it was
    written (a task's zone, or a TZID parameter inside an RRULE block)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidSchedule(
            f"unknown time zone {name!r}{where}; use an IANA name such as 'Europe/Chisinau' or 'UTC'",
            details=details,
        ) from None


def utc_naive(t: datetime, what: str) -> datetime:
    """An aware datetime as an instant; a naive one is a programming error (ValueError naming `what`)."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {t!r}")
    return t.astimezone(UTC).replace(tzinfo=None)


def as_instant(t: datetime, tz: ZoneInfo) -> datetime:
    """An aware datetime as an instant, or a naive one read as a wall time in `tz`."""
    if t.tzinfo is None:
        return instant(tz, t)
    return utc_naive(t, "dtstart")


def local_midnight(tz: ZoneInfo, now: datetime) -> datetime:
    """Wall-clock midnight of `now`'s local day in `tz` (the anchor of a rule without DTSTART)."""
    return datetime.combine(now.astimezone(tz).date(), time())


def _offsets(tz: ZoneInfo) -> Callable[[datetime], timedelta]:
    """tz.utcoffset, which a ZoneInfo never answers with None (the stubs allow it for any tzinfo)."""
    return cast("Callable[[datetime], timedelta]", tz.utcoffset)


def instant(tz: ZoneInfo, wall: datetime) -> datetime:
    """The instant of a wall time, fold=0: the pre-gap offset in a gap, the first of two in an overlap."""
    return wall - _offsets(tz)(wall)


def offset_at(tz: ZoneInfo, t: datetime) -> timedelta:
    """The UTC offset in force at instant `t`."""
    return _offsets(tz)(tz.fromutc(t.replace(tzinfo=tz)))


def wall_floor(tz: ZoneInfo, t: datetime, both_folds: bool = False) -> datetime:
    """A wall time such that every wall time whose instant is >= t comes at or after it.

    A wall time w maps to w - offset, where offset is the one in force at its instant or, inside a
    gap, the one before the gap (at most a day earlier), so the smallest offset of the last day bounds
    it. With `both_folds` the second instant of a repeated wall time counts too; its offset is the one
    after a fall-back that may come within the next day.
    """
    offset = min(offset_at(tz, t - DAY), offset_at(tz, t))
    if both_folds:
        offset = min(offset, offset_at(tz, t + DAY))
    return t + offset


def instants(
    walls: Iterable[datetime],
    tz: ZoneInfo,
    t: datetime,
    until: datetime | None = None,
    both_folds: bool = False,
) -> Iterator[datetime]:
    """Instants >= t (and <= until) of ascending wall times, ascending and without duplicates."""
    last = None
    for i in _ascending_instants(walls, tz, both_folds):
        if i < t or i == last:
            continue
        if until is not None and i > until:
            return
        last = i
        yield i


def _ascending_instants(walls: Iterable[datetime], tz: ZoneInfo, both_folds: bool) -> Iterator[datetime]:
    """The instants of ascending wall times, in ascending order (equal ones may repeat).

    The mapping is monotonic except in a gap: a gap wall time is moved later by the gap, past wall
    times up to one gap length after it. Such an instant is held back until the walls have moved past
    it. With `both_folds`, a wall time in a repeated hour also yields its second instant, held back the
    same way until the repeated hour is over.
    """
    heap: list[tuple[datetime, datetime]] = []  # (instant, wall from which it is final)
    utcoffset = _offsets(tz)
    for w in walls:
        off0 = utcoffset(w)
        off1 = utcoffset(w.replace(fold=1))
        if off0 == off1 and not heap:  # the common case: an ordinary wall time
            yield w - off0
            continue
        if off1 > off0:  # in a gap: later by the gap length
            heapq.heappush(heap, (w - off0, w + (off1 - off0)))
        else:
            heapq.heappush(heap, (w - off0, w))
            if off1 < off0 and both_folds:  # repeated hour: also the second occurrence
                heapq.heappush(heap, (w - off1, w + (off0 - off1)))
        while heap and heap[0][1] <= w:
            yield heapq.heappop(heap)[0]
    while heap:
        yield heapq.heappop(heap)[0]
