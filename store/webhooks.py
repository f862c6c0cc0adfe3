"""Webhook endpoints (register, list, change, rotate the secret, delete), what to announce to them, and
their delivery log (list, redeliver). Delivering is the workers' job (workers/deliverer.py).

An agent sees and changes only its own endpoints (another agent's are 404); `agent_id=None` means an
admin, who sees every agent's. Documents are checked above the store (engine/webhook_endpoint.py);
the secret is made there too. Nothing here returns a secret except `create` and `rotate`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection

from store import keyset
from store.domain import DELIVERY_STATES, iso_utc
from store.errors import Conflict, InvalidWebhook, NotFound
from store.keyset import Page
from store.sql import load_queries

__all__ = [
    "DELIVERY_STATES",
    "SYSTEM_EVENTS",
    "announce",
    "check_publishable",
    "create",
    "delete",
    "deliveries",
    "delivery",
    "get",
    "list_page",
    "message_id",
    "public",
    "public_delivery",
    "redeliver",
    "rotate",
    "update",
]

Q = load_queries("store", "webhooks.sql")

# Topics Ordo itself announces about an agent's runs, tasks and plant. Agents cannot publish them
# (POST /events, event.publish, webhook.notify), so a receiver can trust that a run.dead is Ordo's.
SYSTEM_EVENTS = ("run.succeeded", "run.failed", "run.dead", "task.paused", "availability.changed")


def message_id(message: UUID) -> str:
    """The webhook-id of a message: `msg_` and 32 hex digits (no '.', as the signed content needs)."""
    return f"msg_{message.hex}"


def check_publishable(topic: str, path: str = "topic") -> None:
    """Refuse a topic only Ordo may announce."""
    if topic in SYSTEM_EVENTS:
        raise InvalidWebhook(
            f"{topic!r} is a system event that only Ordo announces; publish under another topic",
            details={"path": path, "system_events": list(SYSTEM_EVENTS)},
            code="RESERVED_TOPIC",
        )


# -- endpoints ------------------------------------------------------------------------------------


def create(
    conn: Connection, agent_id: UUID, *, url: str, events: Sequence[str], description: str, secret: str
) -> dict[str, Any]:
    row = conn.execute(
        Q["create_endpoint"],
        {
            "agent_id": agent_id,
            "url": url,
            "events": list(events),
            "description": description,
            "secret": secret,
        },
    )
    return dict(row.mappings().one())


def get(
    conn: Connection, endpoint_id: UUID | str, agent_id: UUID | None = None, *, lock: bool = False
) -> dict[str, Any]:
    key = _uuid(endpoint_id)
    row = (
        conn.execute(Q["lock_endpoint" if lock else "get_endpoint"], {"id": key, "agent_id": agent_id})
        .mappings()
        .one_or_none()
        if key is not None
        else None
    )
    if row is None:
        raise NotFound(f"webhook {endpoint_id} not found", details={"webhook_id": str(endpoint_id)})
    return dict(row)


def list_page(
    conn: Connection, *, agent_id: UUID | None = None, cursor: str | None = None, limit: int = 50
) -> Page:
    after_created, after_id = keyset.decode(cursor, datetime, UUID) if cursor else (None, None)
    rows = (
        conn.execute(
            Q["list_endpoints"],
            {"agent_id": agent_id, "after_created": after_created, "after_id": after_id, "limit": limit + 1},
        )
        .mappings()
        .all()
    )
    return keyset.page([dict(r) for r in rows], limit, lambda r: (r["created_at"], r["id"]))


def update(
    conn: Connection, endpoint_id: UUID | str, changes: Mapping[str, Any], *, agent_id: UUID | None = None
) -> dict[str, Any]:
    """Apply checked changes (url, events, description, state: active | paused)."""
    current = get(conn, endpoint_id, agent_id, lock=True)
    row = conn.execute(
        Q["update_endpoint"],
        {
            "id": current["id"],
            "url": changes.get("url"),
            "events": changes.get("events"),
            "description": changes.get("description"),
            "state": changes.get("state"),
        },
    )
    return dict(row.mappings().one())


def rotate(
    conn: Connection,
    endpoint_id: UUID | str,
    *,
    secret: str,
    overlap_s: float,
    agent_id: UUID | None = None,
) -> dict[str, Any]:
    """Replace the secret; the old one keeps signing for `overlap_s` seconds."""
    current = get(conn, endpoint_id, agent_id, lock=True)
    row = conn.execute(Q["rotate_secret"], {"id": current["id"], "secret": secret, "overlap_s": overlap_s})
    return dict(row.mappings().one())


def delete(conn: Connection, endpoint_id: UUID | str, *, agent_id: UUID | None = None) -> None:
    key = _uuid(endpoint_id)
    if key is None or conn.execute(Q["delete_endpoint"], {"id": key, "agent_id": agent_id}).first() is None:
        raise NotFound(f"webhook {endpoint_id} not found", details={"webhook_id": str(endpoint_id)})


def public(row: Mapping[str, Any], *, with_secret: bool = False) -> dict[str, Any]:
    """An endpoint as the API and CLI show it. The secret only when just made (creation, rotation)."""
    now = row["db_now"]
    if row["state"] != "breaker_open":
        breaker = "closed"
    else:
        breaker = "half_open" if row["breaker_probe_at"] <= now else "open"
    out: dict[str, Any] = {
        "id": str(row["id"]),
        "agent_id": str(row["agent_id"]),
        "url": row["url"],
        "events": list(row["events"]),
        "description": row["description"],
        "state": row["state"],
        "paused_reason": row["paused_reason"],
        "breaker": {
            "state": breaker,
            "consecutive_failures": row["consecutive_failures"],
            "opened_at": iso_utc(row["breaker_opened_at"]),
            "next_probe_at": iso_utc(row["breaker_probe_at"]),
        },
        "previous_secret_expires_at": (
            iso_utc(row["previous_until"]) if row["previous_until"] and row["previous_until"] > now else None
        ),
        "created_at": iso_utc(row["created_at"]),
        "updated_at": iso_utc(row["updated_at"]),
    }
    if with_secret:
        out["secret"] = row["secret"]
    return out


# -- announcing -----------------------------------------------------------------------------------


def announce(
    conn: Connection,
    agent_id: UUID | str,
    event_type: str,
    data: Any,
    *,
    endpoint_id: UUID | str | None = None,
    source_key: str | None = None,
) -> list[dict[str, Any]]:
    """Queue `data` as an `event_type` message to the agent's endpoints subscribed to it (or to the one
    `endpoint_id`, which must be the agent's). Nothing is written when no endpoint is concerned. With a
    `source_key` already used, nothing new is queued and the earlier deliveries are returned.

    Returns [{delivery_id, endpoint_id, webhook_id}, ...]."""
    target = None
    if endpoint_id is not None:
        target = get(conn, endpoint_id, UUID(str(agent_id)))["id"]
    params = {
        "agent_id": agent_id,
        "type": event_type,
        "data": json.dumps(data),
        "endpoint_id": target,
        "source_key": source_key,
    }
    rows = conn.execute(Q["announce"], params).mappings().all()
    if not rows and source_key is not None:
        rows = conn.execute(Q["deliveries_of_source"], params).mappings().all()
    return [
        {
            "delivery_id": r["id"],
            "endpoint_id": str(r["endpoint_id"]),
            "webhook_id": message_id(r["message_id"]),
        }
        for r in rows
    ]


# -- the delivery log -----------------------------------------------------------------------------


def deliveries(
    conn: Connection,
    endpoint_id: UUID | str,
    *,
    agent_id: UUID | None = None,
    state: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page:
    """An endpoint's deliveries, newest first, each with every attempt. The cursor and the state are
    checked before the endpoint is looked up."""
    if state is not None and state not in DELIVERY_STATES:
        raise InvalidWebhook(
            f"state must be one of {', '.join(DELIVERY_STATES)}, not {state!r}", details={"path": "state"}
        )
    (before,) = keyset.decode(cursor, int) if cursor is not None else (None,)
    endpoint = get(conn, endpoint_id, agent_id)
    rows = _delivery_rows(conn, endpoint["id"], state=state, before_id=before, limit=limit + 1)
    return keyset.page(rows, limit, lambda r: (r["id"],))


def delivery(
    conn: Connection, endpoint_id: UUID | str, delivery_id: int, *, agent_id: UUID | None = None
) -> dict[str, Any]:
    endpoint = get(conn, endpoint_id, agent_id)
    rows = _delivery_rows(conn, endpoint["id"], delivery_id=delivery_id, limit=1)
    if not rows:
        raise NotFound(
            f"delivery {delivery_id} of webhook {endpoint_id} not found",
            details={"webhook_id": str(endpoint_id), "delivery_id": delivery_id},
        )
    return rows[0]


def redeliver(
    conn: Connection, endpoint_id: UUID | str, delivery_id: int, *, agent_id: UUID | None = None
) -> dict[str, Any]:
    """Send a succeeded or dead delivery again now, same webhook-id, with a fresh round of retries."""
    endpoint = get(conn, endpoint_id, agent_id)
    params = {"endpoint_id": endpoint["id"], "delivery_id": delivery_id}
    if conn.execute(Q["redeliver"], params).first() is None:
        state = conn.execute(Q["delivery_state"], params).scalar()
        if state is None:
            raise NotFound(
                f"delivery {delivery_id} of webhook {endpoint_id} not found",
                details={"webhook_id": str(endpoint_id), "delivery_id": delivery_id},
            )
        raise Conflict(
            f"delivery {delivery_id} is {state}: it will be attempted on its own; only succeeded or dead "
            "deliveries are redelivered",
            details={"delivery_id": delivery_id, "state": state},
        )
    return delivery(conn, endpoint["id"], delivery_id)


def public_delivery(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "endpoint_id": str(row["endpoint_id"]),
        "webhook_id": message_id(row["message_id"]),
        "type": row["type"],
        "data": row["data"],
        "state": row["state"],
        "attempts": row["attempts"],
        "next_attempt_at": (
            iso_utc(row["next_attempt_at"]) if row["state"] in ("pending", "failed") else None
        ),
        "last_status": row["last_status"],
        "last_error": row["last_error"],
        "created_at": iso_utc(row["created_at"]),
        "updated_at": iso_utc(row["updated_at"]),
        "attempt_log": row["attempt_log"],
    }


def _delivery_rows(
    conn: Connection,
    endpoint_id: UUID,
    *,
    state: str | None = None,
    before_id: int | None = None,
    delivery_id: int | None = None,
    limit: int,
) -> list[dict[str, Any]]:
    rows = conn.execute(
        Q["list_deliveries"],
        {
            "endpoint_id": endpoint_id,
            "state": state,
            "before_id": before_id,
            "delivery_id": delivery_id,
            "limit": limit,
        },
    )
    return [dict(r) for r in rows.mappings().all()]


def _uuid(value: UUID | str) -> UUID | None:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        return None
