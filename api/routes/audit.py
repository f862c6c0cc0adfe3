"""The audit log (admin scope): who changed what, and when."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query

from api.deps import Admin, CheckedRoute, Cursor, Limit, Reads
from api.errors import responses
from api.schemas import AuditPage, Text
from store import audit

__all__ = ["router"]

router = APIRouter(prefix="/audit", tags=["audit"], route_class=CheckedRoute)


@router.get("", response_model=AuditPage, responses=responses(400, 401, 403, 422, 429, 503))
async def list_audit(
    caller: Admin,
    reads: Reads,
    agent_id: Annotated[UUID | None, Query(description="Only writes by this agent.")] = None,
    target_type: Annotated[
        Text | None, Query(max_length=50, description="task, run, event, agent or token.")
    ] = None,
    target_id: Annotated[Text | None, Query(max_length=100)] = None,
    action: Annotated[Text | None, Query(max_length=100, description="e.g. task.create")] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Any:
    """Audit entries, newest first."""
    page = await reads.run(
        audit.list_page,
        agent_id=agent_id,
        target_type=target_type,
        target_id=target_id,
        action=action,
        cursor=cursor,
        limit=limit,
    )
    return {"items": page.items, "next_cursor": page.next_cursor}
