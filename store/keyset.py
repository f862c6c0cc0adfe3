"""Opaque keyset cursors over (created_at, id), shared by the listings ordered that way."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from uuid import UUID

from store.errors import InvalidTask

__all__ = ["decode", "encode"]


def encode(created_at: datetime, row_id: UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, row_id = json.loads(raw)
        return datetime.fromisoformat(created), UUID(row_id)
    except (ValueError, TypeError, RecursionError) as e:
        raise InvalidTask(
            "invalid cursor; pass the next_cursor value of a previous page",
            details={"path": "cursor"},
            code="INVALID_CURSOR",
        ) from e
