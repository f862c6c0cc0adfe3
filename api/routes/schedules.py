"""Schedule drafts: the next occurrences of a cron line, RRULE or timestamp before a task exists."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import CheckedRoute, Clock, TasksRead
from api.errors import responses
from api.schemas import Preview, ScheduleDraft
from scheduler.expand import preview_within_budget

__all__ = ["router"]

router = APIRouter(prefix="/schedules", tags=["schedules"], route_class=CheckedRoute)


@router.post("/preview", response_model=Preview, responses=responses(400, 401, 403, 413, 415, 422, 429, 503))
def preview_schedule(body: ScheduleDraft, caller: TasksRead, now: Clock) -> Any:
    """Expand a draft schedule exactly as a task would: `{"occurrences": [ISO 8601 with offset, ...],
    "complete": true, "cut_short": null}`. An invalid rule is refused with the reason (422
    INVALID_SCHEDULE). A rule too costly to expand within about a second gives the occurrences found
    by then with `complete: false` and the reason in `cut_short` (422 SCHEDULE_TOO_COSTLY if it found
    none)."""
    result = preview_within_budget(
        body.kind, body.expr, body.timezone, count=body.count, now=now, dtstart=body.dtstart
    )
    return result.as_json()
