"""Schedule expansion: cron lines, RFC 5545 recurrences and one-off timestamps turned into UTC instants.

For every `schedule_kind` this package owns how a task's `schedule_expr` is validated
(`parse_schedule`), the form stored in the task row (`normalize_expr`), the instants a schedule
produces in a window (`Schedule.between`, `Schedule.next_at_or_after`) and `preview` (the next N
occurrences, at most `PREVIEW_MAX_COUNT`, computed in at most `PREVIEW_BUDGET_S`). It is pure: no
database, no environment, no wall clock (`now` is always an argument; a `Budget` bounds how long an
expansion may compute, never what it answers), so the same rule, zone and window always give the same
instants (STYLE idioms 3 and 4). One time rule holds for every kind: rules are expanded in local
wall-clock time and each wall time is the instant with `fold=0` (a gap time runs later by the gap, a
repeated time runs once, at its first occurrence).

Modules, from the entry points down:

* `kinds`       the five kinds and the entry points (parse, stored form, preview, the preview limit);
* `cron`        the cron dialect on APScheduler triggers, crontab meanings and DST behaviour restored;
* `once`        one ISO 8601 timestamp;
* `recurrence`  an RFC 5545 recurrence set: which zone and instant each DTSTART/RDATE/EXDATE/UNTIL means;
* `icalendar`   RFC 5545 text: content lines, properties, DATE and DATE-TIME values;
* `recur`       RECUR values (RRULE/EXRULE) with the parts derived from DTSTART made explicit;
* `rebase`      expanding a rule from any point without iterating its history (COUNT checkpoints);
* `feasibility` refusing rules that can never produce an occurrence;
* `expansion`   the `Schedule` interface and the memos that make a quiet tick cost a comparison;
* `budget`      bounding the work of one expansion (a preview, a task's turn in the tick);
* `walltime`    IANA zones and the wall-clock <-> UTC rule;
* `errors`      how bad input is reported.
"""

from __future__ import annotations

from scheduler.expand.budget import Budget, ScheduleTooCostly
from scheduler.expand.expansion import Schedule
from scheduler.expand.kinds import (
    PREVIEW_BUDGET_S,
    PREVIEW_MAX_COUNT,
    SCHEDULE_KINDS,
    Preview,
    normalize_expr,
    parse_schedule,
    preview,
    preview_within_budget,
    recurs_more_than,
)
from scheduler.expand.walltime import zone

__all__ = [
    "PREVIEW_BUDGET_S",
    "PREVIEW_MAX_COUNT",
    "SCHEDULE_KINDS",
    "Budget",
    "Preview",
    "Schedule",
    "ScheduleTooCostly",
    "normalize_expr",
    "parse_schedule",
    "preview",
    "preview_within_budget",
    "recurs_more_than",
    "zone",
]
