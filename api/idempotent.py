"""Idempotency-Key handling for the routes that create things (POST /tasks, POST /events, run_now).

Used inside the route's transaction: `replayed()` claims the key (or returns the first response to
answer with), and `remember()` stores the response before the transaction commits.
"""

from __future__ import annotations

from typing import Any

from fastapi import Response
from sqlalchemy import Connection

from api.responses import json_body
from store import idempotency
from store.agents import Principal

__all__ = ["REPLAY_HEADER", "remember", "replayed"]

REPLAY_HEADER = "Idempotent-Replayed"


def replayed(
    conn: Connection,
    caller: Principal,
    key: str | None,
    operation: str,
    body: Any,
    *,
    location: str | None = None,
) -> Response | None:
    """None: go ahead (no key, or this request now owns it). Otherwise the first response, replayed
    (with `Location: <location>/<id>` when the first response created something)."""
    if key is None:
        return None
    replay = idempotency.claim(
        conn, caller.agent_id, key, operation, idempotency.fingerprint(operation, body)
    )
    if replay is None:
        return None
    headers = {REPLAY_HEADER: "true"}
    if location is not None and isinstance(replay.response, dict) and "id" in replay.response:
        headers["Location"] = f"{location}/{replay.response['id']}"
    return json_body(replay.response, replay.status, headers)


def remember(conn: Connection, caller: Principal, key: str | None, status: int, response: Any) -> None:
    if key is not None:
        idempotency.save(conn, caller.agent_id, key, status, response)
