"""GET /status (admin): the whole system at a glance, the same report as `ordo status`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import Admin, CheckedRoute, Reads, State
from api.errors import responses
from api.schemas import Status
from store import status

__all__ = ["router"]

router = APIRouter(tags=["health"], route_class=CheckedRoute)


@router.get("/status", response_model=Status, responses=responses(401, 403, 429, 503))
async def get_status(_: Admin, reads: Reads, state: State) -> Any:
    """Queue depth and lag by priority band, attempts finished in the last hour by outcome, the
    workers heard from in the last hour (host, pid, concurrency, busy, last seen), the scheduler
    leader and its last tick, and webhook endpoints by state with the open breakers."""
    return await reads.run(status.overview, state.freshness)
