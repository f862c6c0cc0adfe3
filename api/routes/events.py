"""Events: publish a topic (every subscribed active task runs once with the event in its context) and
list what was published."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query

from api.deps import CheckedRoute, Cursor, Db, EventsPublish, IdempotencyKey, Limit, Reads
from api.errors import responses
from api.idempotent import remember, replayed
from api.responses import json_body
from api.schemas import EventCreate, EventPage, EventPublic
from store import audit
from store import events as store_events
from store.domain import TOPIC_PATTERN

__all__ = ["router"]

router = APIRouter(prefix="/events", tags=["events"], route_class=CheckedRoute)


@router.post(
    "",
    status_code=202,
    response_model=EventPublic,
    responses=responses(400, 401, 403, 409, 413, 415, 422, 429, 503),
)
def publish_event(
    body: EventCreate,
    caller: EventsPublish,
    db: Db,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Publish an event: one run of every active task subscribed to the topic (`schedule_kind: event`,
    `schedule_expr: <topic>`) owned by the caller (by anyone, for admins), with `${event.payload...}`
    in its context. With an Idempotency-Key, publishing the same event again triggers nothing new."""
    doc = body.model_dump()
    with db.tx() as conn:
        if replay := replayed(conn, caller, idempotency_key, "POST /events", doc, location="/events"):
            return replay
        event = store_events.publish(
            conn, caller.agent_id, body.topic, body.payload, subscribers_of=caller.owner
        )
        out = store_events.public(event)
        audit.record(
            conn,
            caller,
            "event.publish",
            "event",
            event["id"],
            {"topic": body.topic, "runs": len(out["runs"])},
        )
        remember(conn, caller, idempotency_key, 202, out)
    return json_body(out, 202, {"Location": f"/events/{out['id']}"})


@router.get("", response_model=EventPage, responses=responses(400, 401, 403, 422, 429, 503))
async def list_events(
    caller: EventsPublish,
    reads: Reads,
    topic: Annotated[str | None, Query(pattern=TOPIC_PATTERN)] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Any:
    """Events the caller published (everyone's for admins), newest first."""
    page = await reads.run(
        store_events.list_page, agent_id=caller.owner, topic=topic, cursor=cursor, limit=limit
    )
    return json_body({"items": [store_events.public(r) for r in page.items], "next_cursor": page.next_cursor})


@router.get("/{event_id}", response_model=EventPublic, responses=responses(401, 403, 404, 422, 429, 503))
async def get_event(event_id: UUID, caller: EventsPublish, reads: Reads) -> Any:
    """One event with the runs it queued."""
    event = await reads.run(store_events.get, event_id, agent_id=caller.owner)
    return json_body(store_events.public(event))
