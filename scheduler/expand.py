"""Schedule expansion: cron lines, RFC 5545 recurrences and one-off timestamps turned into UTC instants.

This module owns, for every `schedule_kind`, how a task's `schedule_expr` is validated
(`parse_schedule`), the form stored in the task row (`normalize_expr`), the instants a schedule
produces in a window (`Schedule.between`, `Schedule.next_at_or_after`) and `preview` (the next N
occurrences, for `ordo preview` and the API). It is pure: no database, no environment, no wall clock
(`now` is always an argument), so the same rule, zone and window always give the same instants
(STYLE idioms 3 and 4).

Time semantics, one rule for every kind (RFC 5545 section 3.3.5 as applied to instances by 3.3.10):
rules are expanded in naive local wall-clock time in the schedule's zone, and each wall time becomes
an instant with `fold=0`, converted through UTC. That gives exactly:

* a wall time inside a spring-forward gap takes the UTC offset *before* the gap, so it lands later
  by the gap: daily 02:30 America/New_York on 2026-03-08 runs at 03:30-04:00;
* a wall time that occurs twice (fall-back) means its *first* occurrence: 01:30 on 2026-11-01 is
  01:30-04:00, once;
* a daily 08:00 Europe/Chisinau task runs at 08:00 local on both sides of each transition;
* wall times that map onto the same instant (02:30 shifted onto an existing 03:30) count once.

RRULE (python-dateutil `rrule`): `expr` is a bare RRULE value (`FREQ=DAILY;BYHOUR=8`, optionally
prefixed `RRULE:`) or an RFC 5545 block of DTSTART (`;TZID=`, `Z` = expanded in UTC, floating =
read in the task's zone, `VALUE=DATE` = local midnight), RRULE, EXRULE, RDATE and EXDATE lines
(`;TZID=`, `Z`, floating, `VALUE=DATE`, comma lists; folded lines and CRLF are accepted).
dateutil rejects `RDATE;TZID=...`, so the block is parsed here and only RRULE values go to dateutil.
A DTSTART TZID wins over the task's zone for expansion. A bare rule is anchored at local midnight of
`now`'s day (`normalize_expr` writes that DTSTART into the stored form, so expansion never depends on
when it runs). DTSTART is an instance only when it matches the rule (dateutil's reading; RFC 5545
calls an unsynchronised DTSTART undefined), except in a block without RRULE, where it is the first
instance. UNTIL in UTC is compared with instants; a floating UNTIL is read in the rule's zone; a
date-only UNTIL includes that whole local day. A date-only EXDATE removes every occurrence on that
local date; a date-only RDATE adds that date at DTSTART's time of day. Rules that can never produce
an occurrence (February 30, an unreachable BYHOUR, BYSETPOS beyond the set) are refused, because
dateutil would otherwise scan to the year 9999 looking for one.

Cron (APScheduler 3.11 `CronTrigger.from_crontab`): five fields, minute hour day month weekday, or
`@hourly`/`@daily`/`@midnight`/`@weekly`/`@monthly`/`@yearly`/`@annually`. Two crontab meanings that
APScheduler 3.x does not share are restored before the line reaches it: weekday numbers are crontab's
(0 or 7 = Sunday; APScheduler 3.x counts 0 = Monday), and when both day of month and weekday are
restricted a day matching *either* fires (Vixie cron), which is expanded as the union of two triggers.

What APScheduler does across DST when given the zone (measured with 3.11.3): a fixed time is kept
on both sides of a transition (08:00 Chisinau stays 08:00); a time in the gap fires with the pre-gap
offset (02:30 New York on 2026-03-08 = 07:30Z = 03:30 EDT) *only if the search starts before the gap*:
a search starting between 03:00 and 03:30 EDT (as the rolling 10-minute window that contains 07:30Z
does) sees hour 3, moves to the next day and silently skips that day's run, and `next_at_or_after`
would disagree with `between`. In the repeated hour it fires a fixed time twice (01:30 EDT and 01:30
EST). So cron lines are evaluated by APScheduler in UTC used as a wall clock (a zone without
transitions, where its walk is exact) and the wall times are localised here with the rule above: a gap
time fires once, shifted later by the gap; an ambiguous fixed time fires once, at its first
occurrence. One refinement, as cronie does for jobs that run every hour: when the hour field is `*`,
the repeated hour after fall-back fires again (01:00, 01:20, 01:40 EDT and then EST), so an
every-N-minutes job keeps running through the night instead of pausing for an hour.

Performance: dateutil iterates from DTSTART, so a rule without COUNT is rebased before each expansion
to a period boundary shortly before the window, a whole number of INTERVAL periods after DTSTART, with
the BYxxx values dateutil derived from DTSTART made explicit. A COUNT rule keeps a checkpoint (a period
boundary and the occurrences still left) that only moves forward; when every period holds the same
number of occurrences the COUNT used up is computed, not iterated. Each schedule remembers the last
empty stretch it saw and its last window, so a steady tick over a quiet window costs a comparison.
Compiled cron triggers and schedules without a `now`-dependent anchor are cached by expression, so
tasks with the same schedule share one object (safe: its memos are single tuples, replaced whole).
Known cost left: a rule whose INTERVAL phase never meets its day filters (YEARLY;INTERVAL=4 on 29
February from a common year) passes validation and costs one bounded scan (up to a few seconds) per
schedule object before it is known to be exhausted.
"""

from __future__ import annotations

import heapq
import re
from bisect import bisect_left
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import islice
from math import gcd
from typing import Any, Protocol, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from dateutil.rrule import DAILY, HOURLY, MINUTELY, MONTHLY, SECONDLY, WEEKLY, YEARLY, rrule, weekdays

from store.errors import InvalidSchedule

__all__ = [
    "SCHEDULE_KINDS",
    "Schedule",
    "normalize_expr",
    "parse_schedule",
    "preview",
    "zone",
]

SCHEDULE_KINDS = ("cron", "rrule", "once", "event", "manual")

_UTC = UTC
_DAY = timedelta(days=1)
_TINY = timedelta(microseconds=1)
# No zone is more than 14 h ahead of UTC; a wall time is at most this far after its instant.
_MAX_AHEAD = timedelta(hours=15)
_TOPIC_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,199}$")
_PREVIEW_MAX = 10_000
_EXPR = {"field": "schedule_expr"}


class Schedule(Protocol):
    """A compiled time-based schedule (cron, rrule or once). Instances are immutable in meaning and
    safe to share between threads; they only memoise the last empty stretch they found."""

    kind: str
    zone: ZoneInfo  # the zone wall times are read in (an RRULE's DTSTART TZID wins over the task's)

    def between(self, start: datetime, end: datetime) -> list[datetime]:
        """Occurrences in [start, end) as aware UTC datetimes, ascending. start/end are aware."""
        ...

    def next_at_or_after(self, t: datetime) -> datetime | None:
        """First occurrence >= t (aware UTC), or None when the rule is exhausted (COUNT/UNTIL/once passed)."""
        ...


# --------------------------------------------------------------------------------------------- zones


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`, or InvalidSchedule naming it."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidSchedule(
            "a time zone is required: an IANA name such as 'Europe/Chisinau' or 'UTC'",
            details={"field": "timezone"},
        )
    return _zone(name, {"field": "timezone", "value": name}, "")


def _zone(name: str, details: dict[str, str], where: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidSchedule(
            f"unknown time zone {name!r}{where}; use an IANA name such as 'Europe/Chisinau' or 'UTC'",
            details=details,
        ) from None


# --------------------------------------------------------------------- wall clock <-> UTC instants
# Internally an instant is a naive datetime in UTC (cheaper to compare than aware ones) and a wall
# time is a naive datetime in the schedule's zone.


def _utc_naive(t: datetime, what: str) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {t!r}")
    return t.astimezone(_UTC).replace(tzinfo=None)


def _offsets(tz: ZoneInfo) -> Callable[[datetime], timedelta]:
    """tz.utcoffset, which a ZoneInfo never answers with None (the stubs allow it for any tzinfo)."""
    return cast("Callable[[datetime], timedelta]", tz.utcoffset)


def _instant(tz: ZoneInfo, wall: datetime) -> datetime:
    """The instant of a wall time, fold=0: the pre-gap offset in a gap, the first of two in an overlap."""
    return wall - _offsets(tz)(wall)


def _offset_at(tz: ZoneInfo, instant: datetime) -> timedelta:
    return _offsets(tz)(tz.fromutc(instant.replace(tzinfo=tz)))


def _wall_floor(tz: ZoneInfo, t: datetime, both_folds: bool = False) -> datetime:
    """A wall time such that every wall time whose instant is >= t comes at or after it.

    A wall time w maps to w - offset, where offset is the one in force at its instant or, inside a
    gap, the one before the gap (at most a day earlier), so the smallest offset of the last day bounds
    it. With `both_folds` the second instant of a repeated wall time counts too; its offset is the one
    after a fall-back that may come within the next day.
    """
    offset = min(_offset_at(tz, t - _DAY), _offset_at(tz, t))
    if both_folds:
        offset = min(offset, _offset_at(tz, t + _DAY))
    return t + offset


def _instants(
    walls: Iterable[datetime],
    tz: ZoneInfo,
    t: datetime,
    until: datetime | None = None,
    both_folds: bool = False,
) -> Iterator[datetime]:
    """Instants >= t (and <= until) of ascending wall times, ascending and without duplicates.

    The mapping is monotonic except in a gap: a gap wall time is moved later by the gap, past wall
    times up to one gap length after it. Such an instant is held back until the walls have moved past
    it. With `both_folds`, a wall time in a repeated hour also yields its second instant, held back the
    same way until the repeated hour is over.
    """
    heap: list[tuple[datetime, datetime]] = []  # (instant, wall from which it is final)
    last = None
    utcoffset = _offsets(tz)
    for w in walls:
        off0 = utcoffset(w)
        off1 = utcoffset(w.replace(fold=1))
        i = w - off0
        if off0 == off1 and not heap:  # the common case: an ordinary wall time
            if i >= t:
                if until is not None and i > until:
                    return
                if i != last:
                    last = i
                    yield i
            continue
        if off1 > off0:  # in a gap: later by the gap length
            heapq.heappush(heap, (i, w + (off1 - off0)))
        else:
            heapq.heappush(heap, (i, w))
            if off1 < off0 and both_folds:  # repeated hour: also the second occurrence
                heapq.heappush(heap, (w - off1, w + (off0 - off1)))
        while heap and heap[0][1] <= w:
            i = heapq.heappop(heap)[0]
            if i >= t:
                if until is not None and i > until:
                    return
                if i != last:
                    last = i
                    yield i
    while heap:
        i = heapq.heappop(heap)[0]
        if i >= t:
            if until is not None and i > until:
                return
            if i != last:
                last = i
                yield i


# ------------------------------------------------------------------------------- shared behaviour


class _Expansion:
    """between / next_at_or_after over `_stream(t)` (ascending instants >= t), with a memo of the last
    empty stretch [lo, hi) seen (hi None: nothing at or after lo), so quiet windows cost nothing."""

    kind = ""
    zone: ZoneInfo

    def __init__(self) -> None:
        self._memo: tuple[datetime, datetime | None] | None = None
        # the last window and its answer: tasks sharing a schedule ask the same window in one tick
        self._last: tuple[datetime, datetime, list[datetime]] | None = None

    def _stream(self, t: datetime) -> Iterator[datetime]:
        raise NotImplementedError

    def between(self, start: datetime, end: datetime) -> list[datetime]:
        s, e = _utc_naive(start, "start"), _utc_naive(end, "end")
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
        for i in self._stream(s):
            if i >= e:
                after = i
                break
            out.append(i)
        self._memo = (out[-1] + _TINY if out else s, after)
        result = [i.replace(tzinfo=_UTC) for i in out]
        self._last = (s, e, result)
        return list(result)

    def next_at_or_after(self, t: datetime) -> datetime | None:
        s = _utc_naive(t, "t")
        memo = self._memo
        if memo is not None and memo[0] <= s and (memo[1] is None or s <= memo[1]):
            found = memo[1]
        else:
            found = next(self._stream(s), None)
            self._memo = (s, found)
        return None if found is None else found.replace(tzinfo=_UTC)

    def _first_instant(self) -> datetime | None:
        """Where the set begins, for a preview "from DTSTART on" (None: no lower bound of its own)."""
        return None


# ------------------------------------------------------------------------------------------- once


class _Once(_Expansion):
    kind = "once"

    def __init__(self, at: datetime, tz: ZoneInfo) -> None:
        super().__init__()
        self.at = at  # aware, as written
        self.zone = tz
        self._at = _utc_naive(at, "once")

    def _stream(self, t: datetime) -> Iterator[datetime]:
        if self._at >= t:
            yield self._at


def _parse_once(expr: str, tz: ZoneInfo) -> datetime:
    text = expr.strip()
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidSchedule(
            f"invalid once timestamp {text!r}: use ISO 8601 such as 2026-03-29T08:00:00+03:00 "
            "(without an offset it is read in the task's time zone)",
            details=_EXPR,
        ) from None
    if at.tzinfo is None:
        # Read in the task's zone with fold=0, like every other wall time here.
        at = _instant(tz, at).replace(tzinfo=_UTC).astimezone(tz)
    return at


# ------------------------------------------------------------------------------------------- cron

_CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_CRON_FIELDS = ("minute", "hour", "day", "month", "weekday")
_CRONTAB_DAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_APS_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # by crontab number; names mean the same
_CRON_PROBE_FROM = datetime(2000, 1, 1, tzinfo=_UTC)
_APS_PREFIX = re.compile(r"^Error validating expression '.*?': ")


@dataclass(frozen=True)
class _CronRule:
    line: str  # the normalised line
    triggers: tuple[CronTrigger, ...]  # evaluated in UTC used as a wall clock (see module docstring)
    every_hour: bool  # the hour field is '*': the repeated hour after fall-back fires again


class _Cron(_Expansion):
    kind = "cron"

    def __init__(self, rule: _CronRule, tz: ZoneInfo, lower: datetime | None = None) -> None:
        super().__init__()
        self.rule = rule
        self.zone = tz
        self._lower = lower  # preview's dtstart: a lower bound only

    def _stream(self, t: datetime) -> Iterator[datetime]:
        if self._lower is not None and t < self._lower:
            t = self._lower
        w_lo = _wall_floor(self.zone, t, self.rule.every_hour)
        triggers = self.rule.triggers
        if len(triggers) == 1:
            walls: Iterable[datetime] = _cron_walls(triggers[0], w_lo)
        else:
            walls = heapq.merge(*(_cron_walls(tr, w_lo) for tr in triggers))
        return _instants(walls, self.zone, t, None, self.rule.every_hour)

    def _first_instant(self) -> datetime | None:
        return self._lower


@lru_cache(maxsize=4096)
def _cron_schedule(expr: str, tz: ZoneInfo) -> _Cron:
    return _Cron(_compile_cron(expr), tz)


def _cron_walls(trigger: CronTrigger, w_lo: datetime) -> Iterator[datetime]:
    """Wall times >= w_lo matching the trigger, one get_next_fire_time per occurrence."""
    cur = w_lo.replace(tzinfo=_UTC)
    step = timedelta(seconds=1)
    while True:
        nxt = trigger.get_next_fire_time(None, cur)
        if nxt is None:
            return
        yield nxt.replace(tzinfo=None)
        cur = nxt + step


def _cron_error(line: str, message: str) -> InvalidSchedule:
    return InvalidSchedule(f"invalid cron line {line!r}: {message}", details=_EXPR)


def _crontab_weekdays(line: str, text: str) -> str:
    """The weekday field in APScheduler's terms: crontab numbers (0 or 7 = Sunday) become names."""
    if text == "*":
        return "*"
    days: set[int] = set()

    def value(token: str) -> int:
        if token.lower() in _CRONTAB_DAYS:
            return _CRONTAB_DAYS[token.lower()]
        if token.isdigit() and int(token) <= 7:
            return int(token)
        raise _cron_error(line, f"weekday field {text!r}: {token!r} is not a weekday (0-7 or sun-sat)")

    for item in text.split(","):
        rng, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise _cron_error(
                    line, f"weekday field {text!r}: step {step_text!r} must be a positive number"
                )
            step = int(step_text)
        if rng == "*":
            lo, hi = 0, 7
        elif "-" in rng:
            a, _, b = rng.partition("-")
            lo, hi = value(a), value(b)
            if lo > hi:
                raise _cron_error(line, f"weekday field {text!r}: range {rng!r} runs backwards")
        else:
            lo = value(rng)
            hi = 7 if slash else lo
        days.update(d % 7 for d in range(lo, hi + 1, step))
    return ",".join(_APS_DAYS[d] for d in sorted(days))


@lru_cache(maxsize=4096)
def _compile_cron(expr: str) -> _CronRule:
    line = " ".join(expr.split())
    if not line:
        raise InvalidSchedule(
            "cron line is empty: it must have 5 fields (minute hour day month weekday)", details=_EXPR
        )
    macro = _CRON_MACROS.get(line.lower())
    if line.startswith("@") and macro is None:
        raise _cron_error(line, f"unknown macro; use one of {', '.join(sorted(_CRON_MACROS))}")
    fields = (macro or line).split()
    if len(fields) != 5:
        raise InvalidSchedule(
            f"cron line must have 5 fields (minute hour day month weekday), got {len(fields)}", details=_EXPR
        )
    minute, hour, dom, month, dow = fields
    aps_dow = _crontab_weekdays(line, dow)
    # Vixie cron: when both day fields are restricted, a day matching either one fires.
    if not dom.startswith("*") and not dow.startswith("*"):
        texts = [f"{minute} {hour} {dom} {month} *", f"{minute} {hour} * {month} {aps_dow}"]
    else:
        texts = [f"{minute} {hour} {dom} {month} {aps_dow}"]
    try:
        triggers = tuple(CronTrigger.from_crontab(text, timezone=_UTC) for text in texts)
    except ValueError:
        for name, value in zip(_CRON_FIELDS[:4], fields[:4], strict=True):
            try:
                CronTrigger(**{name: value}, timezone=_UTC)
            except ValueError as exc:
                reason = _APS_PREFIX.sub("", str(exc))
                raise _cron_error(line, f"{name} field {value!r}: {reason}") from None
        raise _cron_error(line, "it cannot be read as minute hour day month weekday") from None
    # A line naming only days that do not exist (31 February) would otherwise be searched to 9999 on
    # every expansion; the search is bounded, so pay it once here (only a day of month can be missing).
    if not dom.startswith("*") and all(
        tr.get_next_fire_time(None, _CRON_PROBE_FROM) is None for tr in triggers
    ):
        raise _cron_error(line, "it never fires (no such day in the months it names)")
    return _CronRule(line=line.lower() if macro else line, triggers=triggers, every_hour=hour in ("*", "*/1"))


# ------------------------------------------------------------------------------------------ rrule

_FREQS = {
    "YEARLY": YEARLY,
    "MONTHLY": MONTHLY,
    "WEEKLY": WEEKLY,
    "DAILY": DAILY,
    "HOURLY": HOURLY,
    "MINUTELY": MINUTELY,
    "SECONDLY": SECONDLY,
}
_FREQ_HELP = "use SECONDLY, MINUTELY, HOURLY, DAILY, WEEKLY, MONTHLY or YEARLY"
_WEEKDAY_CODES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_BYDAY_RE = re.compile(r"^([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)$")
# name -> (dateutil keyword, smallest, largest, negatives allowed)
_LIST_PARTS = {
    "BYSECOND": ("bysecond", 0, 59, False),
    "BYMINUTE": ("byminute", 0, 59, False),
    "BYHOUR": ("byhour", 0, 23, False),
    "BYMONTHDAY": ("bymonthday", 1, 31, True),
    "BYYEARDAY": ("byyearday", 1, 366, True),
    "BYWEEKNO": ("byweekno", 1, 53, True),
    "BYMONTH": ("bymonth", 1, 12, False),
    "BYSETPOS": ("bysetpos", 1, 366, True),
    "BYEASTER": ("byeaster", 0, 366, True),  # a dateutil extension: days from Easter Sunday
}
_KNOWN_PARTS = {"FREQ", "INTERVAL", "COUNT", "UNTIL", "WKST", "BYDAY", *_LIST_PARTS}
_DT_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})(Z)?)?$")
_ISO_EXTENDED_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2})?Z?)?$")
_PROPERTIES = ("DTSTART", "RRULE", "EXRULE", "RDATE", "EXDATE")
_FEASIBILITY_PROBE_FROM = datetime(9600, 1, 1)  # 400 years (a whole Gregorian cycle) before 9999
_YEARS = (1800, 9000)  # DTSTART range: keeps every window computation clear of datetime's limits


class _DateutilRule(Protocol):
    """A constructed dateutil rrule with the fields it derives from DTSTART and the BYxxx parts
    (private attributes, stable since dateutil 2.7, not declared by the type stubs)."""

    _dtstart: datetime
    _freq: int
    _interval: int
    _wkst: int
    _count: int | None
    _until: datetime | None
    _bysetpos: tuple[int, ...] | None
    _bymonth: tuple[int, ...] | None
    _bymonthday: tuple[int, ...]
    _bynmonthday: tuple[int, ...]
    _byyearday: tuple[int, ...] | None
    _byweekno: tuple[int, ...] | None
    _byweekday: tuple[int, ...] | None
    _bynweekday: tuple[tuple[int, int], ...] | None
    _byeaster: tuple[int, ...] | None
    _byhour: Collection[int] | None
    _byminute: Collection[int] | None
    _bysecond: Collection[int] | None

    def __iter__(self) -> Iterator[datetime]: ...


def _rrule(freq: int, **kwargs: Any) -> _DateutilRule:
    return cast(_DateutilRule, rrule(cast(Any, freq), **kwargs))


def _rrule_error(message: str) -> InvalidSchedule:
    return InvalidSchedule(f"invalid RRULE: {message}", details=_EXPR)


@dataclass(frozen=True)
class _DateValue:
    wall: datetime  # the value as written (midnight for a date)
    is_date: bool
    is_utc: bool


@dataclass(frozen=True)
class _Property:
    name: str
    params: tuple[tuple[str, str], ...]
    value: str

    def param(self, key: str) -> str | None:
        for k, v in self.params:
            if k == key:
                return v
        return None


@dataclass(frozen=True)
class _Block:
    lines: tuple[str, ...]  # unfolded, stripped, bare values prefixed with RRULE:
    dtstart: _Property | None
    rrules: tuple[str, ...]
    exrules: tuple[str, ...]
    rdates: tuple[_Property, ...]
    exdates: tuple[_Property, ...]


def _unfold(text: str) -> list[str]:
    lines: list[str] = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if raw[:1] in (" ", "\t") and lines and raw.strip():
            lines[-1] += raw[1:].rstrip()  # RFC 5545 3.1: a continuation line starts with one blank
            continue
        line = raw.strip()
        if line:
            lines.append(line)
    return lines


def _split_property(line: str) -> _Property:
    colon = -1
    quoted = False
    for pos, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == ":" and not quoted:
            colon = pos
            break
    head = line[:colon] if colon >= 0 else ""
    if colon < 0 or "=" in head.split(";", 1)[0]:
        return _Property("RRULE", (), line)  # a bare RRULE value: FREQ=...;...
    name, *raw_params = head.split(";")
    params = []
    for raw in raw_params:
        key, eq, value = raw.partition("=")
        if not eq:
            raise _rrule_error(f"parameter {raw!r} in {line!r} is not NAME=VALUE")
        params.append((key.strip().upper(), value.strip().strip('"')))
    return _Property(name.strip().upper(), tuple(params), line[colon + 1 :].strip())


@lru_cache(maxsize=4096)
def _parse_block(expr: str) -> _Block:
    lines = _unfold(expr)
    if not lines:
        raise _rrule_error("the rule is empty; give e.g. FREQ=DAILY;BYHOUR=8")
    props = [_split_property(line) for line in lines]
    dtstart = None
    out_lines: list[str] = []
    for prop, line in zip(props, lines, strict=True):
        if prop.name not in _PROPERTIES:
            raise _rrule_error(f"line {line!r} is not one of {', '.join(_PROPERTIES)}")
        if prop.name == "DTSTART":
            if dtstart is not None:
                raise _rrule_error("DTSTART is given twice")
            dtstart = prop
        if prop.name in ("RRULE", "EXRULE") and not prop.value:
            raise _rrule_error(f"{prop.name} has no value")
        out_lines.append(
            f"RRULE:{line}" if prop.name == "RRULE" and not line.upper().startswith("RRULE") else line
        )
    rrules = tuple(p.value for p in props if p.name == "RRULE")
    rdates = tuple(p for p in props if p.name == "RDATE")
    if not rrules and not rdates and dtstart is None:
        raise _rrule_error("the block has no RRULE, RDATE or DTSTART line")
    return _Block(
        lines=tuple(out_lines),
        dtstart=dtstart,
        rrules=rrules,
        exrules=tuple(p.value for p in props if p.name == "EXRULE"),
        rdates=rdates,
        exdates=tuple(p for p in props if p.name == "EXDATE"),
    )


def _parse_date_value(text: str, what: str) -> _DateValue:
    raw = text.strip()
    if _ISO_EXTENDED_RE.match(raw):  # tolerate 2026-03-29T08:00:00 for 20260329T080000
        raw = raw.replace("-", "").replace(":", "")
        if "T" in raw and len(raw.split("T")[1].rstrip("Z")) == 4:
            raw = raw.replace("Z", "") + "00" + ("Z" if raw.endswith("Z") else "")
    m = _DT_RE.match(raw)
    if not m:
        raise _rrule_error(
            f"{what} value {text!r} is not a date (YYYYMMDD) or date-time (YYYYMMDDTHHMMSS[Z])"
        )
    year, month, day, hour, minute, second, z = m.groups()
    try:
        wall = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    except ValueError as exc:
        raise _rrule_error(f"{what} value {text!r}: {exc}") from None
    return _DateValue(wall=wall, is_date=hour is None, is_utc=bool(z))


def _property_zone(prop: _Property, default: ZoneInfo) -> ZoneInfo:
    tzid = prop.param("TZID")
    if tzid is None:
        return default
    return _zone(tzid.lstrip("/"), _EXPR, f" in {prop.name};TZID")


def _int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _rrule_error(f"{name}={text}: {text!r} is not an integer") from None


@dataclass(frozen=True)
class _RuleSpec:
    freq: int
    kwargs: tuple[tuple[str, object], ...]  # for dateutil's rrule(), without dtstart and until
    until: _DateValue | None


@lru_cache(maxsize=4096)
def _parse_rule_value(value: str) -> _RuleSpec:
    text = value.strip()
    if text.upper().startswith("RRULE:"):
        text = text[6:]
    if text.upper().startswith("EXRULE:"):
        text = text[7:]
    parts: dict[str, str] = {}
    for raw in text.strip().strip(";").split(";"):
        name, eq, val = raw.partition("=")
        name = name.strip().upper()
        if not eq or not name:
            raise _rrule_error(f"{raw.strip()!r} is not NAME=VALUE (e.g. FREQ=DAILY;BYHOUR=8)")
        if name not in _KNOWN_PARTS:
            raise _rrule_error(f"{name} is not an RRULE part; use FREQ, INTERVAL, COUNT, UNTIL, WKST, BYxxx")
        if name in parts:
            raise _rrule_error(f"{name} is given twice")
        parts[name] = val.strip()
    if "FREQ" not in parts:
        raise _rrule_error("FREQ is required (e.g. FREQ=DAILY;BYHOUR=8)")
    freq_name = parts.pop("FREQ").upper()
    if freq_name not in _FREQS:
        raise _rrule_error(f"FREQ={freq_name} is not a frequency; {_FREQ_HELP}")
    kwargs: dict[str, object] = {}
    for name in ("INTERVAL", "COUNT"):
        if name in parts:
            number = _int(name, parts.pop(name))
            if number < 1:
                raise _rrule_error(f"{name} must be 1 or more")
            kwargs[name.lower()] = number
    until = None
    if "UNTIL" in parts:
        if "count" in kwargs:
            raise _rrule_error("COUNT and UNTIL cannot both be given (RFC 5545 3.3.10)")
        until = _parse_date_value(parts.pop("UNTIL"), "UNTIL")
    wkst = parts.pop("WKST", "MO").upper()  # RFC 5545 default; dateutil would use calendar's global
    if wkst not in _WEEKDAY_CODES:
        raise _rrule_error(f"WKST={wkst} is not a weekday; use MO, TU, WE, TH, FR, SA or SU")
    kwargs["wkst"] = _WEEKDAY_CODES.index(wkst)
    if "BYDAY" in parts:
        days = []
        for item in parts.pop("BYDAY").split(","):
            m = _BYDAY_RE.match(item.strip().upper())
            n = int(m.group(1)) if m and m.group(1) else 0
            if not m or not -53 <= n <= 53:
                raise _rrule_error(
                    f"BYDAY {item!r} is not a weekday; use MO, TU, WE, TH, FR, SA, SU, "
                    "optionally with an ordinal such as 1MO or -1FR"
                )
            wd = weekdays[_WEEKDAY_CODES.index(m.group(2))]
            days.append(wd(n) if n else wd)
        kwargs["byweekday"] = tuple(days)
    for name, raw in parts.items():
        keyword, lo, hi, signed = _LIST_PARTS[name]
        values = []
        for item in raw.split(","):
            v = _int(name, item.strip())
            if not (lo <= v <= hi or (signed and -hi <= v <= -max(lo, 1))):
                span = f"{lo}..{hi}" + (f" or -{hi}..-{max(lo, 1)}" if signed else "")
                raise _rrule_error(f"{name}={raw}: {v} is out of range ({span})")
            values.append(v)
        kwargs[keyword] = tuple(values)
    return _RuleSpec(freq=_FREQS[freq_name], kwargs=tuple(kwargs.items()), until=until)


def _rebuild(rr: _DateutilRule, dtstart: datetime, count: int | None) -> _DateutilRule:
    """`rr` restarted at `dtstart` (a boundary of its period grid), every BYxxx value explicit, so that
    nothing dateutil derives from DTSTART changes."""
    byweekday = [weekdays[d] for d in rr._byweekday or ()]
    byweekday += [weekdays[d](n) for d, n in rr._bynweekday or ()]
    bymonthday = tuple(rr._bymonthday) + tuple(rr._bynmonthday)
    return _rrule(
        rr._freq,
        dtstart=dtstart,
        interval=rr._interval,
        wkst=rr._wkst,
        count=count,
        until=rr._until,
        bysetpos=rr._bysetpos,
        bymonth=rr._bymonth,
        bymonthday=bymonthday or None,
        byyearday=rr._byyearday,
        byeaster=rr._byeaster,
        byweekno=rr._byweekno,
        byweekday=byweekday or None,
        byhour=rr._byhour,
        byminute=rr._byminute,
        bysecond=rr._bysecond,
    )


_UNITS = {HOURLY: timedelta(hours=1), MINUTELY: timedelta(minutes=1), SECONDLY: timedelta(seconds=1)}


def _grid_origin(rr: _DateutilRule) -> datetime:
    """The start of DTSTART's own period (for WEEKLY: the WKST day of its week)."""
    d: datetime = rr._dtstart
    freq = rr._freq
    if freq == YEARLY:
        return datetime(d.year, 1, 1)
    if freq == MONTHLY:
        return datetime(d.year, d.month, 1)
    if freq == WEEKLY:
        return datetime.combine(d.date() - timedelta(days=(d.weekday() - rr._wkst) % 7), time())
    if freq == DAILY:
        return datetime.combine(d.date(), time())
    if freq == HOURLY:
        return d.replace(minute=0, second=0, microsecond=0)
    if freq == MINUTELY:
        return d.replace(second=0, microsecond=0)
    return d.replace(microsecond=0)


def _boundary(rr: _DateutilRule, k: int) -> datetime:
    """The start of the k-th period dateutil visits after DTSTART's own (k * INTERVAL units on)."""
    origin = _grid_origin(rr)
    steps = k * rr._interval
    freq = rr._freq
    if freq == YEARLY:
        return origin.replace(year=origin.year + steps)
    if freq == MONTHLY:
        months = origin.year * 12 + origin.month - 1 + steps
        return datetime(months // 12, months % 12 + 1, 1)
    if freq == WEEKLY:
        return origin + timedelta(days=7 * steps)
    if freq == DAILY:
        return origin + timedelta(days=steps)
    return origin + _UNITS[freq] * steps


def _period_start(rr: _DateutilRule, w: datetime) -> tuple[int, datetime] | None:
    """(k, start) of the latest period boundary of `rr`'s grid (k whole INTERVALs after DTSTART's own
    period) that is <= w, with k >= 1 because dateutil truncates DTSTART's own period at DTSTART
    (for WEEKLY even before BYSETPOS picks); None if w is still in that first period."""
    if w <= rr._dtstart:
        return None
    origin = _grid_origin(rr)
    freq = rr._freq
    if freq == YEARLY:
        units = w.year - origin.year
    elif freq == MONTHLY:
        units = (w.year - origin.year) * 12 + w.month - origin.month
    elif freq == WEEKLY:
        units = (w - origin).days // 7
    elif freq == DAILY:
        units = (w - origin).days
    else:
        units = (w - origin) // _UNITS[freq]
    k = units // rr._interval
    return (k, _boundary(rr, k)) if k > 0 else None


def _size(values: Collection[int] | None) -> int:
    return len(values or ())


def _per_period(rr: _DateutilRule) -> int | None:
    """Occurrences in every period after DTSTART's own when that number is fixed (no day filters,
    no BYSETPOS, no filter on a unit the frequency steps through); None otherwise."""
    if (
        rr._bysetpos
        or rr._bymonth
        or rr._bymonthday
        or rr._bynmonthday
        or rr._byyearday
        or rr._byweekno
        or rr._bynweekday
        or rr._byeaster
    ):
        return None
    freq = rr._freq
    times = _size(rr._byhour) * _size(rr._byminute) * _size(rr._bysecond)  # all derived below HOURLY
    if freq == WEEKLY:
        return _size(rr._byweekday) * times
    if rr._byweekday:
        return None
    if freq == DAILY:
        return times
    if freq == HOURLY and not rr._byhour:
        return _size(rr._byminute) * _size(rr._bysecond)
    if freq == MINUTELY and not rr._byhour and not rr._byminute:
        return _size(rr._bysecond)
    if freq == SECONDLY and not (rr._byhour or rr._byminute or rr._bysecond):
        return 1
    return None


class _Rule:
    """One RRULE (or EXRULE) line compiled against a DTSTART wall time, expandable from any point."""

    __slots__ = ("_checkpoint", "_first", "_per_period", "_rebased", "rule", "until")

    def __init__(self, rule: _DateutilRule, until: datetime | None) -> None:
        self.rule = rule
        self.until = until  # instant (naive UTC), inclusive; dateutil's own until is a generous wall bound
        self._rebased: tuple[datetime, _DateutilRule] | None = None
        # COUNT rules: (period index, period start, rule restarted there with the occurrences left, left)
        self._checkpoint: tuple[int, datetime, _DateutilRule | None, int] = (
            0,
            rule._dtstart,
            rule,
            rule._count or 0,
        )
        self._per_period = _per_period(rule) if rule._count else None
        self._first: int | None = None  # occurrences in DTSTART's own period, counted once

    def walls_from(self, w_lo: datetime) -> Iterator[datetime]:
        """Ascending wall times of the rule, from a point at or before w_lo (never from further back
        than one period of the rule, whatever the age of DTSTART)."""
        rr = self.rule
        found = _period_start(rr, w_lo)
        if found is None:
            return iter(rr)
        k, start = found
        if rr._count is None:
            cached = self._rebased
            if cached is None or cached[0] != start:
                cached = (start, _rebuild(rr, start, None))
                self._rebased = cached
            return iter(cached[1])
        ck_k, ck_start, ck_rule, ck_left = self._checkpoint
        if ck_start > w_lo:  # asked about the past (a preview): begin again from DTSTART
            ck_k, ck_start, ck_rule, ck_left = 0, rr._dtstart, rr, rr._count
        if k <= ck_k or ck_rule is None:
            return iter(ck_rule) if ck_rule is not None else iter(())
        left = ck_left - self._used(ck_k, ck_rule, k, start)
        restarted = _rebuild(rr, start, left) if left > 0 else None
        self._checkpoint = (k, start, restarted, left)
        return iter(restarted) if restarted is not None else iter(())

    def _used(self, ck_k: int, ck_rule: _DateutilRule, k: int, start: datetime) -> int:
        """Occurrences between the checkpoint (period ck_k) and period k: they use up the COUNT."""
        m = self._per_period
        if m is not None:  # every period alike: arithmetic instead of O(history) iteration
            if ck_k > 0:
                return (k - ck_k) * m
            if self._first is None:
                first_end = _boundary(self.rule, 1)
                self._first = sum(1 for _ in _takewhile_before(self.rule, first_end))
            return self._first + (k - 1) * m
        return sum(1 for _ in _takewhile_before(ck_rule, start))


def _takewhile_before(walls: Iterable[datetime], end: datetime) -> Iterator[datetime]:
    for w in walls:
        if w >= end:
            return
        yield w


def _check_feasible(rr: _DateutilRule) -> None:
    """Refuse rules that can never produce an occurrence: dateutil would scan to the year 9999."""
    freq, n = rr._freq, rr._interval
    day_filters = (
        rr._bymonthday or rr._bynmonthday or rr._byyearday or rr._byweekno or rr._bynweekday or rr._byeaster
    )
    never = "the rule never produces an occurrence"
    d = rr._dtstart
    bymonth = rr._bymonth
    if freq == MONTHLY and n > 1:  # every n months from DTSTART's month reaches one coset of months only
        g = gcd(n, 12)
        reachable = tuple(m for m in bymonth or range(1, 13) if (m - d.month) % g == 0)
        if not reachable:
            raise _rrule_error(f"{never} (INTERVAL={n} from DTSTART's month never reaches its BYMONTH)")
        bymonth = reachable
    # Day filters (31 April, week 1 in June, ...): probe the last 400 years dateutil can reach, a whole
    # Gregorian cycle, at the rule's own granularity for YEARLY/MONTHLY/WEEKLY (ordinal BYDAY and
    # BYSETPOS depend on it), else per day.
    if day_filters or (rr._bysetpos and freq <= WEEKLY):
        same = freq in (YEARLY, MONTHLY, WEEKLY)
        byweekday = [weekdays[wd] for wd in rr._byweekday or ()]
        if same:
            byweekday += [weekdays[wd](k) for wd, k in rr._bynweekday or ()]
        else:
            byweekday += [weekdays[wd] for wd, _ in rr._bynweekday or ()]
        probe = _rrule(
            freq if same else YEARLY,
            dtstart=_FEASIBILITY_PROBE_FROM,
            wkst=rr._wkst,
            count=1,
            bysetpos=rr._bysetpos if same else None,
            bymonth=bymonth,
            bymonthday=(tuple(rr._bymonthday) + tuple(rr._bynmonthday)) or None,
            byyearday=rr._byyearday,
            byeaster=rr._byeaster,
            byweekno=rr._byweekno,
            byweekday=byweekday or None,
            byhour=rr._byhour if same else 0,
            byminute=rr._byminute if same else 0,
            bysecond=rr._bysecond if same else 0,
        )
        if next(iter(probe), None) is None:
            raise _rrule_error(f"{never} (no date satisfies its BYxxx parts, e.g. 30 February)")
    # DAILY with an INTERVAL that is a multiple of 7 always lands on DTSTART's weekday.
    if freq == DAILY and rr._byweekday and n % 7 == 0 and d.weekday() not in rr._byweekday:
        raise _rrule_error(f"{never} (every {n} days from DTSTART is always a {_WEEKDAY_CODES[d.weekday()]})")
    # BYSETPOS beyond the set of one period (finer than WEEKLY: one day's or one hour's times).
    if rr._bysetpos and freq >= DAILY:
        size = {
            DAILY: len(rr._byhour or ()) * len(rr._byminute or ()) * len(rr._bysecond or ()),
            HOURLY: len(rr._byminute or ()) * len(rr._bysecond or ()),
            MINUTELY: len(rr._bysecond or ()),
            SECONDLY: 1,
        }[freq]
        if not any(-size <= p <= size for p in rr._bysetpos):
            raise _rrule_error(f"{never} (BYSETPOS is beyond the {size} instance(s) of each period)")
    # MINUTELY/SECONDLY with BYHOUR/BYMINUTE: only times of day congruent to DTSTART's modulo the step
    # are reachable (dateutil raises mid-iteration or spins otherwise).
    if freq in (MINUTELY, SECONDLY) and (rr._byhour or (freq == SECONDLY and rr._byminute)):
        unit = 60 if freq == MINUTELY else 1
        g = gcd(n * unit, 86400)
        s0 = (d.hour * 3600 + d.minute * 60 + (d.second if freq == SECONDLY else 0)) % g
        hours = rr._byhour or range(24)
        minutes = rr._byminute or range(60)
        seconds = (rr._bysecond or range(60)) if freq == SECONDLY else (0,)
        if not any((h * 3600 + m * 60 + s) % g == s0 for h in hours for m in minutes for s in seconds):
            raise _rrule_error(f"{never} (INTERVAL={n} from DTSTART never reaches its BYHOUR/BYMINUTE)")


def _compile_rule(value: str, dtstart: datetime, tz: ZoneInfo) -> _Rule:
    spec = _parse_rule_value(value)
    until_instant = None
    until_wall = None
    if spec.until is not None:
        u = spec.until
        try:
            if u.is_utc:
                until_instant = u.wall
            elif u.is_date:  # a date-only UNTIL keeps that whole local day
                until_instant = _instant(tz, u.wall + _DAY) - _TINY
            else:
                until_instant = _instant(tz, u.wall)
            # dateutil compares wall times; give it a bound no earlier than any wall time whose instant
            # is <= UNTIL, and cut at the instant in _instants.
            until_wall = until_instant + _MAX_AHEAD
        except OverflowError:  # UNTIL at the end of the calendar bounds nothing
            until_instant = until_wall = None
    kwargs = dict(spec.kwargs)
    try:
        rr = _rrule(spec.freq, dtstart=dtstart, until=until_wall, **kwargs)
    except ValueError as exc:
        raise _rrule_error(str(exc)) from None
    _check_feasible(rr)
    return _Rule(rr, until_instant)


class _Recurrence(_Expansion):
    kind = "rrule"

    def __init__(
        self,
        tz: ZoneInfo,
        dtstart: datetime,
        rules: list[_Rule],
        exrules: list[_Rule],
        rdates: list[datetime],
        exdates: frozenset[datetime],
        exdays: frozenset[date],
    ) -> None:
        super().__init__()
        self.zone = tz
        self.dtstart = dtstart  # wall time in self.zone
        self._rules = rules
        self._exrules = exrules
        self._rdates = sorted(set(rdates))
        self._exdates = exdates
        self._exdays = exdays

    def _first_instant(self) -> datetime | None:
        # Wall times >= DTSTART can map up to a gap length before its instant; RDATEs may precede it.
        first = _instant(self.zone, self.dtstart) - _DAY
        return min(first, self._rdates[0]) if self._rdates else first

    def _stream(self, t: datetime) -> Iterator[datetime]:
        tz = self.zone
        w_lo = _wall_floor(tz, t)
        streams: list[Iterator[datetime]] = [
            _instants(rule.walls_from(w_lo), tz, t, rule.until) for rule in self._rules
        ]
        if self._rdates:
            streams.append(islice(self._rdates, bisect_left(self._rdates, t), None))
        merged = streams[0] if len(streams) == 1 else heapq.merge(*streams)
        if not (self._exrules or self._exdates or self._exdays or len(streams) > 1):
            return merged
        return self._filtered(merged, t, w_lo)

    def _filtered(self, merged: Iterator[datetime], t: datetime, w_lo: datetime) -> Iterator[datetime]:
        tz = self.zone
        ex: Iterator[datetime] | None = None
        next_ex = None
        if self._exrules:
            ex = heapq.merge(*(_instants(r.walls_from(w_lo), tz, t, r.until) for r in self._exrules))
            next_ex = next(ex, None)
        last = None
        for i in merged:
            if i == last:
                continue
            last = i
            if i in self._exdates:
                continue
            if self._exdays and tz.fromutc(i.replace(tzinfo=tz)).date() in self._exdays:
                continue
            if ex is not None:
                while next_ex is not None and next_ex < i:
                    next_ex = next(ex, None)
                if next_ex == i:
                    continue
            yield i


def _date_values(prop: _Property) -> list[_DateValue]:
    kind = (prop.param("VALUE") or "").upper()
    if kind == "PERIOD":
        raise _rrule_error(f"{prop.name};VALUE=PERIOD is not supported; list the start times instead")
    values = [_parse_date_value(v, prop.name) for v in prop.value.split(",") if v.strip()]
    if not values:
        raise _rrule_error(f"{prop.name} has no value")
    return values


def _compile_recurrence(
    block: _Block, tz: ZoneInfo, anchor: datetime | None, override: datetime | None
) -> _Recurrence:
    """`anchor`: DTSTART wall time for a block without one; `override`: preview's dtstart (aware or
    naive, naive read in the expansion zone)."""
    if block.dtstart is not None:
        value = _parse_date_value(block.dtstart.value, "DTSTART")
        # a UTC DTSTART recurs in UTC (RFC 5545 3.3.5, form 2); a TZID wins over the task's zone
        exp_zone = ZoneInfo("UTC") if value.is_utc else _property_zone(block.dtstart, tz)
        start = value.wall
    else:
        exp_zone = tz
        assert anchor is not None
        start = anchor
    if override is not None:
        if override.tzinfo is not None:
            start = override.astimezone(exp_zone).replace(tzinfo=None, fold=0)
        else:
            start = override
    start = start.replace(microsecond=0)
    if not _YEARS[0] <= start.year <= _YEARS[1]:
        raise _rrule_error(f"DTSTART {start:%Y-%m-%dT%H:%M:%S} is outside the years {_YEARS[0]}..{_YEARS[1]}")
    rules = [_compile_rule(v, start, exp_zone) for v in block.rrules]
    exrules = [_compile_rule(v, start, exp_zone) for v in block.exrules]
    rdates: list[datetime] = []
    for prop in block.rdates:
        pz = _property_zone(prop, exp_zone)
        for v in _date_values(prop):
            if v.is_utc:
                rdates.append(v.wall)
            elif v.is_date:  # at DTSTART's time of day
                rdates.append(_instant(exp_zone, datetime.combine(v.wall.date(), start.time())))
            else:
                rdates.append(_instant(pz, v.wall))
    if not rules and (block.dtstart is not None or override is not None):
        rdates.append(_instant(exp_zone, start))  # without a rule, DTSTART is the first instance
    exdates: set[datetime] = set()
    exdays: set[date] = set()
    for prop in block.exdates:
        pz = _property_zone(prop, exp_zone)
        for v in _date_values(prop):
            if v.is_utc:
                exdates.add(v.wall)
            elif v.is_date:
                exdays.add(v.wall.date())
            else:
                exdates.add(_instant(pz, v.wall))
    return _Recurrence(exp_zone, start, rules, exrules, rdates, frozenset(exdates), frozenset(exdays))


@lru_cache(maxsize=4096)
def _compile_anchored(expr: str, tz: ZoneInfo, anchor: datetime | None) -> _Recurrence:
    return _compile_recurrence(_parse_block(expr), tz, anchor, None)


def _local_midnight(tz: ZoneInfo, now: datetime) -> datetime:
    return datetime.combine(now.astimezone(tz).date(), time())


# ------------------------------------------------------------------------------------- public API


def _check_kind(kind: str, expr: str | None) -> str:
    if kind not in SCHEDULE_KINDS:
        raise InvalidSchedule(
            f"unknown schedule kind {kind!r}; use one of {', '.join(SCHEDULE_KINDS)}",
            details={"field": "schedule_kind"},
        )
    if expr is None:
        expr = ""
    if not isinstance(expr, str):
        raise InvalidSchedule(f"schedule_expr must be text, got {type(expr).__name__}", details=_EXPR)
    return expr


def _compile(
    kind: str, expr: str, tz: ZoneInfo, *, now: datetime, dtstart: datetime | None = None
) -> _Expansion | None:
    if kind == "cron":
        if dtstart is None:
            return _cron_schedule(expr, tz)
        return _Cron(_compile_cron(expr), tz, _lower_bound(dtstart, tz))
    if kind == "rrule":
        block = _parse_block(expr)
        anchor = None if block.dtstart is not None else _local_midnight(tz, now)
        if dtstart is None:
            return _compile_anchored(expr, tz, anchor)
        return _compile_recurrence(block, tz, anchor, dtstart)
    if kind == "once":
        return _Once(_parse_once(expr, tz), tz)
    if kind == "event":
        if not _TOPIC_RE.match(expr):
            raise InvalidSchedule(
                f"invalid event topic {expr!r}: 1-200 characters, letters, digits and _ . : / - "
                "(not starting with . : / -), e.g. 'orders.created'",
                details=_EXPR,
            )
        return None
    if expr.strip():  # manual
        raise InvalidSchedule(
            f"a manual schedule takes no expression, got {expr!r}; leave schedule_expr empty", details=_EXPR
        )
    return None


def _lower_bound(t: datetime, tz: ZoneInfo) -> datetime:
    if t.tzinfo is None:
        return _instant(tz, t)
    return _utc_naive(t, "dtstart")


def parse_schedule(kind: str, expr: str, timezone: str, *, now: datetime) -> Schedule | None:
    """Validate and compile. cron/rrule/once -> Schedule; event -> None (expr must be a topic
    matching ^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,199}$); manual -> None (expr must be '').
    A bare RRULE (no DTSTART line) is anchored at local midnight of `now`'s day in `timezone`.
    The time zone is validated for every kind. Raises InvalidSchedule."""
    expr = _check_kind(kind, expr)
    _utc_naive(now, "now")
    return _compile(kind, expr, zone(timezone), now=now)


def normalize_expr(kind: str, expr: str, timezone: str, *, now: datetime) -> str:
    """The form stored in the task row: for a bare RRULE, a block with an explicit
    DTSTART;TZID=<timezone>:<local midnight of now's day> line so expansion never depends on when it runs;
    cron lines whitespace-normalised; once timestamps as ISO 8601 with offset; others unchanged.
    Validates like parse_schedule, and additionally rejects `once` earlier than now."""
    expr = _check_kind(kind, expr)
    now_utc = _utc_naive(now, "now")
    tz = zone(timezone)
    compiled = _compile(kind, expr, tz, now=now)
    if isinstance(compiled, _Cron):
        return compiled.rule.line
    if isinstance(compiled, _Once):
        if compiled._at < now_utc:
            raise InvalidSchedule(
                f"once at {compiled.at.isoformat()} is in the past (now is "
                f"{now.astimezone(compiled.at.tzinfo).isoformat()})",
                details=_EXPR,
            )
        return compiled.at.isoformat()
    if kind == "rrule":
        block = _parse_block(expr)
        if block.dtstart is not None:
            return expr
        midnight = _local_midnight(tz, now)
        return "\n".join((f"DTSTART;TZID={tz.key}:{midnight:%Y%m%dT%H%M%S}", *block.lines))
    return expr


def preview(
    kind: str,
    expr: str,
    timezone: str,
    *,
    count: int,
    now: datetime,
    dtstart: datetime | None = None,
    after: datetime | None = None,
) -> list[datetime]:
    """Next `count` occurrences as aware datetimes in the schedule's zone (so isoformat() gives
    e.g. 2026-03-29T08:00:00+03:00). `after` given: occurrences >= after. `dtstart` given and no
    `after`: from DTSTART on, as RFC 5545 defines the set. Neither: from now. `dtstart` overrides/sets
    the DTSTART of an rrule (and for cron/once it is only a lower bound). Naive `dtstart`/`after` are
    read in the schedule's zone. event and manual schedules have no occurrences: []."""
    expr = _check_kind(kind, expr)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= _PREVIEW_MAX:
        raise InvalidSchedule(
            f"count must be between 1 and {_PREVIEW_MAX}, got {count!r}", details={"field": "count"}
        )
    now_utc = _utc_naive(now, "now")
    tz = zone(timezone)
    if dtstart is not None and not isinstance(dtstart, datetime):
        raise InvalidSchedule(f"dtstart must be a date-time, got {dtstart!r}", details={"field": "dtstart"})
    sched = _compile(kind, expr, tz, now=now, dtstart=dtstart)
    if sched is None:
        return []
    if after is not None:
        t = _lower_bound(after, sched.zone)
        if isinstance(sched, _Cron | _Once) and dtstart is not None:
            t = max(t, _lower_bound(dtstart, sched.zone))
    elif dtstart is not None:
        t = sched._first_instant() or _lower_bound(dtstart, sched.zone)
    else:
        t = now_utc
    out_zone = sched.zone
    return [i.replace(tzinfo=_UTC).astimezone(out_zone) for i in islice(sched._stream(t), count)]
