"""Request and response bodies of the HTTP API.

Task documents are not modelled field by field here: `TaskCreate`/`TaskPatch` carry the JSON object
as sent, documented with the JSON Schema of `scheduler.task_document.TASK_SCHEMA` (the payload with
`engine.PIPELINE_SCHEMA`), and validated only by `scheduler.task_document.validate`, the CLI's code
path, so the API and `ordo task add` accept and refuse exactly the same documents. Every closed set of
names (schedule kinds, statuses, run states, scopes) comes from store.domain. Every JSON value that
reaches PostgreSQL first passes `safe_json` (engine.values.unstorable, the CLI's rule too): no NUL
characters or unpaired surrogates (text cannot hold them), no NaN or infinity (jsonb cannot), no
integer beyond 64 bits (a run could not carry it), and a bounded nesting depth.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel, WithJsonSchema
from pydantic.json_schema import GetJsonSchemaHandler, JsonSchemaValue
from pydantic_core import CoreSchema

from engine import PIPELINE_SCHEMA
from engine.values import text_problem, unstorable
from scheduler.task_document import BATCH_MAX, TASK_SCHEMA
from store.domain import (
    PREVIEW_MAX_COUNT,
    ROUTE_SCOPES,
    SECRET_OVERLAP_MAX_S,
    TOKEN_NAME_MAX,
    TOPIC_PATTERN,
    DeliveryState,
    EndpointState,
    MisfirePolicy,
    RecordedState,
    RunOrigin,
    RunState,
    ScheduleKind,
    TaskStatus,
)

__all__ = [
    "MAX_JSON_DEPTH",
    "AgentCreate",
    "AgentDetail",
    "AgentPage",
    "AgentPublic",
    "AuditEntry",
    "AuditPage",
    "DeliveryPage",
    "DeliveryPublic",
    "ErrorBody",
    "EventCreate",
    "EventPage",
    "EventPublic",
    "Health",
    "Me",
    "Preview",
    "Readiness",
    "RunDetail",
    "RunNow",
    "RunPage",
    "RunPublic",
    "ScheduleDraft",
    "SecretRotation",
    "Status",
    "TaskBatch",
    "TaskBatchCreated",
    "TaskCreate",
    "TaskPage",
    "TaskPatch",
    "TaskPreview",
    "TaskPublic",
    "Text",
    "TokenCreate",
    "TokenCreated",
    "TokenPublic",
    "ToolPublic",
    "WebhookCreate",
    "WebhookCreated",
    "WebhookPage",
    "WebhookPatch",
    "WebhookPublic",
    "safe_json",
    "safe_text",
]

MAX_JSON_DEPTH = 64


def safe_text(value: str) -> str:
    if problem := text_problem(value):
        raise ValueError(problem)
    return value


def safe_json(value: Any) -> Any:
    """Check a decoded JSON value (engine.values.unstorable); return it unchanged."""
    if found := unstorable(value, MAX_JSON_DEPTH):
        path, problem = found
        raise ValueError(f"{path}: {problem}" if path else problem)
    return value


Text = Annotated[str, AfterValidator(safe_text)]
JsonObject = Annotated[dict[str, Any], AfterValidator(safe_json)]
JsonValue = Annotated[Any, AfterValidator(safe_json)]
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
OptionalTimestamp = Annotated[str | None, WithJsonSchema({"type": ["string", "null"], "format": "date-time"})]
AnyJson = Annotated[Any, WithJsonSchema({})]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Open(BaseModel):
    # Response shapes produced by store/: fields added there pass through instead of being dropped.
    model_config = ConfigDict(extra="allow")


class ErrorBody(BaseModel):
    """Every error: a stable machine-readable code, a sentence for people, and details (the field path
    of a validation error, the missing scope, ...)."""

    code: str = Field(examples=["INVALID_SCHEDULE"])
    message: str = Field(examples=["schedule_expr: RRULE FREQ=DAILY;BYHOUR=25: BYHOUR must be 0-23"])
    details: dict[str, Any] = Field(examples=[{"path": "schedule_expr"}])


# -- tasks ----------------------------------------------------------------------------------------


def _document_schema(*, patch: bool) -> dict[str, Any]:
    schema = copy.deepcopy(TASK_SCHEMA)
    payload = copy.deepcopy(PIPELINE_SCHEMA)
    for key in ("$schema", "title"):
        schema.pop(key, None)
        payload.pop(key, None)
    payload["description"] = (
        "params and the pipeline: steps run in order, each `uses` a catalog tool (GET /tools) `with` "
        "input where `${expr}` is JMESPath over {params, steps, run, task, event, now}."
    )
    schema["properties"]["payload"] = payload
    if patch:
        schema.pop("required", None)
        schema["description"] = (
            "Fields to change. The result is merged into the task and validated as a whole; `payload` "
            "is replaced, `backoff` is merged."
        )
    else:
        schema["description"] = "A task document, the same as `ordo task add` accepts."
    return schema


class _Document(RootModel[JsonObject]):
    document_schema: ClassVar[dict[str, Any]] = {}

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return copy.deepcopy(cls.document_schema)


class TaskCreate(_Document):
    document_schema = _document_schema(patch=False)


class TaskPatch(_Document):
    document_schema = _document_schema(patch=True)


class Backoff(BaseModel):
    base_s: float
    cap_s: float
    jitter: float


class TaskPublic(_Open):
    id: str = Field(json_schema_extra={"format": "uuid"})
    agent_id: str = Field(json_schema_extra={"format": "uuid"})
    title: str
    description: str
    schedule_kind: ScheduleKind
    schedule_expr: str
    schedule_text: str = Field(
        description="The schedule in words, in its time zone: 'Every weekday at 05:30 (Europe/Chisinau)'."
    )
    timezone: str
    payload: dict[str, Any]
    status: TaskStatus
    priority: int
    max_retries: int
    timeout_s: float
    backoff: Backoff
    concurrency_key: str | None
    concurrency_limit: int
    misfire_policy: MisfirePolicy
    misfire_grace_s: int
    next_fire_at: OptionalTimestamp = Field(
        description="The schedule's next occurrence at or after now; null for paused, canceled, event "
        "and manual tasks and for schedules with nothing left."
    )
    version: int
    created_at: Timestamp
    updated_at: Timestamp


class TaskBatch(_Strict):
    tasks: list[TaskCreate] = Field(
        min_length=1,
        max_length=BATCH_MAX,
        description=f"Up to {BATCH_MAX} task documents, stored together or not at all.",
    )


class TaskBatchCreated(BaseModel):
    ids: list[str] = Field(description="The created tasks' ids, in the order of `tasks`.")


class TaskPage(BaseModel):
    items: list[TaskPublic]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class _PreviewBudget(BaseModel):
    complete: bool = Field(
        description="false: computing the occurrences asked for took longer than a preview may "
        "(see `cut_short`); `occurrences` are those found first."
    )
    cut_short: ErrorBody | None = Field(
        description="Why the preview stopped early (code SCHEDULE_TOO_COSTLY), or null."
    )


class TaskPreview(_PreviewBudget):
    task_id: str
    occurrences: list[Timestamp] = Field(
        description="Next occurrences, ISO 8601 with the UTC offset of the task's zone."
    )


class RunNow(_Strict):
    params: JsonObject | None = Field(
        default=None, description="Merged over the task's params for this run only."
    )


# -- runs -----------------------------------------------------------------------------------------


class StepRecord(_Open):
    id: str | None = None
    uses: str | None = None
    state: str | None = Field(default=None, description="ok, skipped, failed, timed_out, ...")
    started_at: OptionalTimestamp = None
    duration_ms: float | None = None
    output: AnyJson = None
    error: AnyJson = None


class Attempt(BaseModel):
    attempt: int
    state: str
    worker_id: str | None
    started_at: OptionalTimestamp = Field(
        description="Null when the run ended before this attempt started (canceled while waiting)."
    )
    finished_at: Timestamp
    duration_ms: float | None
    steps: list[StepRecord]
    output: AnyJson
    error: AnyJson


class RunPublic(_Open):
    id: int
    task_id: str = Field(json_schema_extra={"format": "uuid"})
    task_title: str | None
    state: RunState = Field(
        description="`scheduled`: written ahead, its time has not come (GET /runs/upcoming); `queued`: due; "
        "`running`; `succeeded`; `failed`: will be retried; `dead`: no retries left; `canceled`; `skipped`."
    )
    attempt: int
    max_attempts: int
    origin: RunOrigin
    priority: int
    scheduled_for: Timestamp
    run_at: OptionalTimestamp = Field(description="When a pending run is due (null once it ended).")
    created_at: Timestamp
    started_at: OptionalTimestamp
    finished_at: OptionalTimestamp
    worker_id: str | None
    event_id: str | None
    cancel_requested: bool
    error: AnyJson
    steps: list[StepRecord] = Field(
        description="In listings (GET /runs), a step output larger than 16 KiB as JSON is shown as "
        '{"truncated": true, "bytes": N}; GET /runs/{id} has it whole.'
    )
    output: AnyJson = Field(
        description="In listings (GET /runs), an output larger than 16 KiB as JSON is shown as "
        '{"truncated": true, "bytes": N}; GET /runs/{id} has it whole.'
    )


class RunDetail(RunPublic):
    attempts: list[Attempt]


class RunPage(BaseModel):
    items: list[RunPublic]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


# -- events ---------------------------------------------------------------------------------------


class EventCreate(_Strict):
    topic: str = Field(pattern=TOPIC_PATTERN, examples=["orders.created"])
    payload: JsonValue = Field(default=None, description="Any JSON; tasks read it as ${event.payload...}.")


class EventRun(BaseModel):
    run_id: int
    task_id: str


class EventPublic(BaseModel):
    id: str
    agent_id: str
    topic: str
    payload: AnyJson
    matched_tasks: int
    created_at: Timestamp
    runs: list[EventRun] | None = Field(
        default=None, description="The runs this event queued (on publish and GET /events/{id})."
    )
    webhook_deliveries: int | None = Field(
        default=None, description="On publish: deliveries queued to the publisher's subscribed webhooks."
    )


class EventPage(BaseModel):
    items: list[EventPublic]
    next_cursor: str | None


# -- webhooks -------------------------------------------------------------------------------------


class WebhookCreate(_Strict):
    url: str = Field(
        max_length=2048,
        examples=["https://mes.example.com/ordo/webhooks"],
        description="Where signed POSTs go (Standard Webhooks v1). Not followed through redirects.",
    )
    events: list[str] = Field(
        max_length=100,
        examples=[["plan.ready", "run.dead"]],
        description=(
            "Topics to receive: those the agent publishes (POST /events, event.publish, webhook.notify) "
            "and system events about its runs and tasks: run.succeeded, run.failed, run.dead, "
            "task.paused, availability.changed."
        ),
    )
    secret: str | None = Field(
        default=None,
        description="`whsec_` + base64 of 24-64 bytes; generated when omitted. Returned only now.",
    )
    description: Text = Field(default="", max_length=1000)


class WebhookPatch(_Strict):
    url: str | None = Field(default=None, max_length=2048)
    events: list[str] | None = Field(default=None, max_length=100)
    description: Text | None = Field(default=None, max_length=1000)
    state: Literal["active", "paused"] | None = Field(
        default=None, description="paused holds deliveries; active resumes them and closes the breaker."
    )


class SecretRotation(_Strict):
    secret: str | None = Field(default=None, description="The new secret; generated when omitted.")
    overlap_s: float | None = Field(
        default=None,
        ge=0,
        le=SECRET_OVERLAP_MAX_S,
        description="How long the old secret keeps signing too (default ORDO_WEBHOOK_SECRET_OVERLAP_S).",
    )


class BreakerPublic(BaseModel):
    state: Literal["closed", "open", "half_open"]
    consecutive_failures: int
    opened_at: OptionalTimestamp
    next_probe_at: OptionalTimestamp


class WebhookPublic(BaseModel):
    id: str = Field(json_schema_extra={"format": "uuid"})
    agent_id: str = Field(json_schema_extra={"format": "uuid"})
    url: str
    events: list[str]
    description: str
    state: EndpointState
    paused_reason: Literal["owner", "gone"] | None = Field(
        description="owner: paused by its owner; gone: the receiver answered 410 Gone."
    )
    breaker: BreakerPublic
    previous_secret_expires_at: OptionalTimestamp = Field(
        description="After a rotation, until when the previous secret signs too."
    )
    created_at: Timestamp
    updated_at: Timestamp


class WebhookCreated(WebhookPublic):
    secret: str = Field(description="The signing secret. Shown only in this response; store it now.")


class WebhookPage(BaseModel):
    items: list[WebhookPublic]
    next_cursor: str | None


class DeliveryAttempt(BaseModel):
    attempt: int
    started_at: Timestamp
    latency_ms: float | None
    status_code: int | None
    response_excerpt: str | None = Field(description="The first 1,024 bytes of the answer, as text.")
    error: AnyJson
    outcome: Literal["succeeded", "failed", "dead"]
    worker_id: str | None


class DeliveryPublic(BaseModel):
    id: int
    endpoint_id: str
    webhook_id: str = Field(description="The webhook-id header: the same on every attempt and redelivery.")
    type: str
    data: AnyJson
    state: DeliveryState
    attempts: int
    next_attempt_at: OptionalTimestamp
    last_status: int | None
    last_error: AnyJson
    created_at: Timestamp
    updated_at: Timestamp
    attempt_log: list[DeliveryAttempt]


class DeliveryPage(BaseModel):
    items: list[DeliveryPublic]
    next_cursor: str | None


# -- agents and tokens ----------------------------------------------------------------------------


class AgentCreate(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$", examples=["planner-bot"])


class AgentPublic(BaseModel):
    id: str
    name: str
    created_at: Timestamp
    disabled_at: OptionalTimestamp


class TokenCreate(_Strict):
    scopes: list[Annotated[str, Field(max_length=100)]] = Field(
        max_length=64,
        examples=[["tasks:read", "tasks:write", "runs:read"]],
        description=f"Route scopes ({', '.join(ROUTE_SCOPES)}) and tool scopes (GET /tools).",
    )
    name: Text = Field(
        default="", max_length=TOKEN_NAME_MAX, description="A label for people: where the token is used."
    )
    expires_in_s: int | None = Field(
        default=None, ge=60, le=10 * 366 * 86400, description="Lifetime; none: until revoked."
    )


class TokenPublic(BaseModel):
    id: str
    agent_id: str
    prefix: str = Field(
        description="The public part of the token, to recognise it; the secret is never shown again."
    )
    name: str
    scopes: list[str]
    created_at: Timestamp
    expires_at: OptionalTimestamp
    last_used_at: OptionalTimestamp
    revoked_at: OptionalTimestamp


class TokenCreated(TokenPublic):
    token: str = Field(description="The bearer token. Shown only in this response; store it now.")


class AgentDetail(AgentPublic):
    tokens: list[TokenPublic]


class AgentPage(BaseModel):
    items: list[AgentPublic]
    next_cursor: str | None


class Me(BaseModel):
    agent: AgentPublic
    token_id: str | None
    scopes: list[str]
    admin: bool


# -- tools, schedules, audit, health --------------------------------------------------------------


class ToolPublic(BaseModel):
    address: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    timeout_s: float
    scopes: list[str]
    runs: str
    allowed: bool = Field(
        description="Whether the caller's tasks may use this tool (it holds the tool's scopes)."
    )


class ScheduleDraft(_Strict):
    kind: ScheduleKind
    expr: Text = Field(
        default="", max_length=10000, examples=["FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=5;BYMINUTE=30"]
    )
    timezone: Text = Field(default="UTC", min_length=1, max_length=64, examples=["Europe/Chisinau"])
    dtstart: Annotated[datetime | None, Field(strict=False)] = Field(
        default=None,
        description=(
            "ISO 8601 date-time; RRULE DTSTART (cron/once: a lower bound). "
            "Without an offset it is read in `timezone`."
        ),
    )
    count: int = Field(default=10, ge=1, le=PREVIEW_MAX_COUNT)


class Preview(_PreviewBudget):
    occurrences: list[Timestamp] = Field(description="ISO 8601 with the UTC offset of the schedule's zone.")


class AuditEntry(BaseModel):
    id: int
    at: Timestamp
    agent_id: str
    token_id: str | None
    action: str
    target_type: str
    target_id: str
    details: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_cursor: str | None


class Health(BaseModel):
    status: Literal["ok"]


class Check(BaseModel):
    ok: bool
    detail: str


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, Check]


# -- GET /status (store.status.overview) -----------------------------------------------------------

Band = Literal["low", "normal", "high"]


class StatusQueue(BaseModel):
    due: int = Field(description="Runs due now and waiting for a worker (what KEDA scales on).")
    due_by_priority_band: dict[Band, int] = Field(description="low: priority 1-3, normal 4-6, high 7-9.")
    leased: int = Field(description="Runs a worker holds a lease on (running now).")
    lag_s: float = Field(description="How long the oldest due run has waited since it became due.")
    lag_s_by_priority_band: dict[Band, float]


class StatusWorker(BaseModel):
    id: str
    host: str
    pid: int
    concurrency: int
    busy: int = Field(description="Runs it holds a lease on now.")
    state: Literal["running", "stopping", "stopped"]
    alive: bool = Field(description="Running with a recent heartbeat.")
    started_at: str
    last_seen_at: str
    last_seen_s: float


class StatusWorkers(BaseModel):
    alive: int
    slots: int = Field(description="Concurrency of the live workers.")
    busy: int
    lost: int = Field(description="Went quiet in the last hour without a clean stop.")
    processes: list[StatusWorker] = Field(description="Workers heard from in the last hour.")


class StatusScheduler(BaseModel):
    leader: str | None = Field(description="host:pid of the leading scheduler; null if none ever led.")
    leader_since: str | None
    last_tick_at: str | None
    last_tick_age_s: float | None
    ok: bool = Field(description="The leader ticked recently.")


class StatusWebhooks(BaseModel):
    endpoints_by_state: dict[EndpointState, int]
    breakers_open: list[str] = Field(description="Ids of endpoints whose circuit breaker is open.")


class Status(BaseModel):
    at: str = Field(description="The database's clock when this was read.")
    queue: StatusQueue
    runs_last_hour: dict[RecordedState, int] = Field(
        description="Attempts finished in the last hour, by outcome (failed: will be retried)."
    )
    workers: StatusWorkers
    scheduler: StatusScheduler
    webhooks: StatusWebhooks
