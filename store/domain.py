"""Ordo's vocabulary, defined once: the closed sets of names that task documents, runs, tokens and
tables use, the defaults of a task document, and the limits every interface shares.

The JSON Schemas and response models (api/schemas.py, scheduler/task_document.py), the CLI's choices
and help, and the README all read these; the database's CHECK constraints (migrations/) spell the
same sets, and tests/unit/test_domain.py keeps the two in step. Imports nothing of Ordo, so every
layer, including the pure ones (engine/, scheduler/expand), may use it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal, get_args

__all__ = [
    "ADMIN",
    "DEFAULT_BACKOFF",
    "DELIVERY_STATES",
    "ENDED_STATES",
    "ENDPOINT_STATES",
    "HISTORY_STATES",
    "MISFIRE_POLICIES",
    "PREVIEW_MAX_COUNT",
    "RECORDED_STATES",
    "ROUTE_SCOPES",
    "RUN_ORIGINS",
    "RUN_STATES",
    "SCHEDULE_KINDS",
    "SECRET_OVERLAP_MAX_S",
    "TASK_DEFAULTS",
    "TASK_STATUSES",
    "TIME_BASED_KINDS",
    "TOKEN_NAME_MAX",
    "TOPIC_PATTERN",
    "DeliveryState",
    "EndedState",
    "EndpointState",
    "HistoryState",
    "MisfirePolicy",
    "RecordedState",
    "RunOrigin",
    "RunState",
    "ScheduleKind",
    "TaskStatus",
    "iso_utc",
]

# -- time -----------------------------------------------------------------------------------------


def iso_utc(value: datetime | None) -> str | None:
    """The one way Ordo writes an instant it stores: ISO 8601 in UTC with microseconds
    (2026-03-27T04:00:00.000000+00:00). store/runs.sql builds the same text in SQL. Occurrences listed
    by a preview are the exception: they are shown in the schedule's own zone, so DST is visible."""
    if value is None:
        return None
    if value.tzinfo is not UTC:  # most values are UTC already (the database session's zone)
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")


# -- tasks ----------------------------------------------------------------------------------------

ScheduleKind = Literal["cron", "rrule", "once", "event", "manual"]
SCHEDULE_KINDS: tuple[ScheduleKind, ...] = get_args(ScheduleKind)
# The kinds the scheduler expands into occurrences; event and manual tasks run only when triggered.
TIME_BASED_KINDS: tuple[ScheduleKind, ...] = ("cron", "rrule", "once")

TaskStatus = Literal["active", "paused", "canceled"]
TASK_STATUSES: tuple[TaskStatus, ...] = get_args(TaskStatus)

MisfirePolicy = Literal["run_once", "skip", "run_all"]
MISFIRE_POLICIES: tuple[MisfirePolicy, ...] = get_args(MisfirePolicy)

# An event topic: the event table's CHECK spells the same pattern.
TOPIC_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,199}$"

# What a task document's optional fields mean when they are left out. The retry policy is the
# backoff below: attempt n waits base_s * 2^(n-1), capped at cap_s, minus up to `jitter` of it.
DEFAULT_BACKOFF: dict[str, float] = {"base_s": 2.0, "cap_s": 600.0, "jitter": 0.2}
TASK_DEFAULTS: dict[str, object] = {
    "description": "",
    "schedule_expr": "",
    "timezone": "UTC",
    "status": "active",
    "priority": 5,
    "max_retries": 3,
    "timeout_s": 3600.0,
    "concurrency_key": None,
    "concurrency_limit": 1,
    "misfire_policy": "run_once",
    "misfire_grace_s": 3600,
}

# The most occurrences one preview returns, wherever it is asked for (`ordo preview`, `ordo task show`,
# POST /schedules/preview, GET /tasks/{id}/preview). A preview is computed whole inside one request, at
# a cost per occurrence that depends on the rule (a 5-minute cron line takes ~0.25 s per 1,000 on a
# busy 2-core machine, a sparse MINUTELY rule more), so an API caller must not be able to ask for ten
# times that; 1,000 daily runs already span almost three years.
PREVIEW_MAX_COUNT = 1000
# A token's label, for people (the API and `ordo token create --name`).
TOKEN_NAME_MAX = 200
# The longest a webhook's old secret may keep signing after a rotation (API and CLI).
SECRET_OVERLAP_MAX_S = 30 * 86400

# -- runs -----------------------------------------------------------------------------------------

# A run's state. `scheduled`: an occurrence the scheduler wrote ahead whose time has not come yet
# (stored as a queued due_work row with run_at in the future); every other state keeps the meaning
# SPEC.md gives it. Listings of history show every state but `scheduled`; upcoming runs are listed
# on their own (GET /runs/upcoming, `ordo runs --upcoming`).
HistoryState = Literal["queued", "running", "succeeded", "failed", "dead", "canceled", "skipped"]
HISTORY_STATES: tuple[HistoryState, ...] = get_args(HistoryState)
RunState = Literal["scheduled", HistoryState]
RUN_STATES: tuple[RunState, ...] = ("scheduled", *HISTORY_STATES)

# The state of an attempt's record (a task_run row): how the attempt went, `failed` meaning it will be
# retried. A run's final row holds one of the ended states; a worker never records `skipped` (the
# scheduler records missed occurrences).
RecordedState = Literal["succeeded", "failed", "dead", "canceled", "skipped"]
RECORDED_STATES: tuple[RecordedState, ...] = get_args(RecordedState)
EndedState = Literal["succeeded", "dead", "canceled", "skipped"]
ENDED_STATES: tuple[EndedState, ...] = get_args(EndedState)

RunOrigin = Literal["schedule", "manual", "event"]
RUN_ORIGINS: tuple[RunOrigin, ...] = get_args(RunOrigin)

# -- webhooks -------------------------------------------------------------------------------------

# An endpoint's state (`breaker_open`: its circuit breaker holds deliveries until a probe succeeds).
EndpointState = Literal["active", "paused", "breaker_open"]
ENDPOINT_STATES: tuple[EndpointState, ...] = get_args(EndpointState)
# A delivery's state: `failed` waits for its next attempt, `dead` gave up.
DeliveryState = Literal["pending", "delivering", "succeeded", "failed", "dead"]
DELIVERY_STATES: tuple[DeliveryState, ...] = get_args(DeliveryState)

# -- tokens ---------------------------------------------------------------------------------------

ADMIN = "admin"
# Scopes of the API's routes; tools add their own (catalogs/tools.json, e.g. tools:http).
ROUTE_SCOPES: tuple[str, ...] = (
    "tasks:read",
    "tasks:write",
    "runs:read",
    "events:publish",
    "availability:read",
    "availability:write",
    "webhooks:read",
    "webhooks:write",
    ADMIN,
)
