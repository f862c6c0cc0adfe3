"""Events: publish a topic with a payload, which queues one run of every active task subscribed to
that topic (`schedule_kind: event`, `schedule_expr: <topic>`) with the event in its context."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection

from store import keyset, webhooks
from store.domain import TOPIC_PATTERN, iso_utc
from store.errors import InvalidInput, NotFound
from store.keyset import Page
from store.sql import load_queries

__all__ = ["get", "list_page", "public", "publish"]

Q = load_queries("store", "events.sql")

_TOPIC = re.compile(TOPIC_PATTERN)


def publish(
    conn: Connection,
    publisher_id: UUID,
    topic: str,
    payload: Any,
    *,
    subscribers_of: UUID | None,
    system: bool = False,
) -> dict[str, Any]:
    """Record the event, queue runs of the subscribed tasks owned by `subscribers_of` (None: anyone's),
    and deliveries to the publisher's webhook endpoints subscribed to the topic. Agents may not publish
    a system topic (store.webhooks.SYSTEM_EVENTS); Ordo announcing one of its own passes `system`.

    Returns the event with `runs`: [{run_id, task_id}, ...] and `webhook_deliveries` (a count)."""
    if not isinstance(topic, str) or not _TOPIC.match(topic):
        raise InvalidInput(
            f"invalid event topic {topic!r}: 1-200 characters, letters, digits and _ . : / - "
            "(not starting with . : / -), e.g. 'orders.created'",
            details={"path": "topic"},
            code="INVALID_EVENT",
        )
    if not system:
        webhooks.check_publishable(topic)
    row = (
        conn.execute(
            Q["publish"],
            {
                "publisher_id": publisher_id,
                "agent_id": subscribers_of,
                "topic": topic,
                "payload": json.dumps({} if payload is None else payload),
            },
        )
        .mappings()
        .one()
    )
    return dict(row)


def get(conn: Connection, event_id: UUID, *, agent_id: UUID | None = None) -> dict[str, Any]:
    row = conn.execute(Q["get_event"], {"id": event_id, "agent_id": agent_id}).mappings().one_or_none()
    if row is None:
        raise NotFound(f"event {event_id} not found", details={"event_id": str(event_id)})
    runs = conn.execute(Q["event_runs"], {"event_id": event_id}).mappings().all()
    return {**row, "runs": [{"run_id": r["run_id"], "task_id": r["task_id"]} for r in runs]}


def list_page(
    conn: Connection,
    *,
    agent_id: UUID | None = None,
    topic: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page:
    after_created, after_id = keyset.decode(cursor, datetime, UUID) if cursor else (None, None)
    rows = (
        conn.execute(
            Q["list_events"],
            {
                "agent_id": agent_id,
                "topic": topic,
                "after_created": after_created,
                "after_id": after_id,
                "limit": limit + 1,
            },
        )
        .mappings()
        .all()
    )
    return keyset.page([dict(r) for r in rows], limit, lambda r: (r["created_at"], r["id"]))


def public(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {
        "id": str(row["id"]),
        "agent_id": str(row["agent_id"]),
        "topic": row["topic"],
        "payload": row["payload"],
        "matched_tasks": row["matched_tasks"],
        "created_at": iso_utc(row["created_at"]),
    }
    if "runs" in row:
        out["runs"] = [{"run_id": r["run_id"], "task_id": str(r["task_id"])} for r in row["runs"]]
    if "webhook_deliveries" in row:
        out["webhook_deliveries"] = row["webhook_deliveries"]
    return out
