"""Schedule drafts: the next occurrences of a cron line, RRULE or timestamp before a task exists."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import Clock, TasksRead
from api.errors import responses
from api.schemas import Preview, ScheduleDraft
from scheduler.expand import Preview as Occurrences
from scheduler.expand import preview_within_budget

__all__ = ["preview_json", "router"]

router = APIRouter(prefix="/schedules", tags=["schedules"])


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
    return preview_json(result)


def preview_json(result: Occurrences) -> dict[str, Any]:
    """The fields every preview answer has (POST /schedules/preview, GET /tasks/{id}/preview)."""
    return {
        "occurrences": [o.isoformat() for o in result.occurrences],
        "complete": result.cut_short is None,
        "cut_short": None if result.cut_short is None else result.cut_short.to_dict(),
    }
