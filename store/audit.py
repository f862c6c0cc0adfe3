"""The audit log: every write made through the API, recorded in the transaction that makes it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from sqlalchemy import Connection

from store import keyset
from store.agents import Principal
from store.domain import iso_utc
from store.keyset import Page
from store.sql import load_queries

__all__ = ["list_page", "public", "record"]

Q = load_queries("store", "audit.sql")


def record(
    conn: Connection,
    who: Principal,
    action: str,
    target_type: str,
    target_id: Any,
    details: Mapping[str, Any] | None = None,
) -> int:
    """Append one entry: `action` is `<resource>.<verb>` (task.create, run.cancel, token.revoke...)."""
    return conn.execute(
        Q["record"],
        {
            "agent_id": who.agent_id,
            "token_id": who.token_id,
            "action": action,
            "target_type": target_type,
            "target_id": str(target_id),
            "details": json.dumps(dict(details or {}), default=str),
        },
    ).scalar_one()


def list_page(
    conn: Connection,
    *,
    agent_id: UUID | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    action: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page:
    (before_id,) = keyset.decode(cursor, int) if cursor else (None,)
    rows = (
        conn.execute(
            Q["list_audit"],
            {
                "agent_id": agent_id,
                "target_type": target_type,
                "target_id": target_id,
                "action": action,
                "before_id": before_id,
                "limit": limit + 1,
            },
        )
        .mappings()
        .all()
    )
    page = keyset.page(rows, limit, lambda r: (r["id"],))
    return Page([public(r) for r in page.items], page.next_cursor)


def public(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "at": iso_utc(row["at"]),
        "agent_id": str(row["agent_id"]),
        "token_id": str(row["token_id"]) if row["token_id"] else None,
        "action": row["action"],
        "target_type": row["target_type"],
        "target_id": row["target_id"],
        "details": row["details"],
    }
