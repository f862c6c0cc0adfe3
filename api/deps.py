"""Dependencies of the routes, as `Annotated` aliases: the database, the tool registry, the caller
(authenticated, rate-limited, and checked for the route's scope), and the Idempotency-Key header.

Authentication runs in its own short transaction and a route opens its own with `db.tx()`, so no
connection is ever held across two thread-pool hops (which could deadlock a busy pool).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.ratelimit import RateLimiter
from engine import ToolRegistry
from store import agents
from store.agents import Principal
from store.db import Database
from store.errors import Forbidden, Unauthorized
from store.settings import Settings

__all__ = [
    "Admin",
    "ApiState",
    "Caller",
    "Clock",
    "Db",
    "EventsPublish",
    "IdempotencyKey",
    "Registry",
    "RunsRead",
    "TasksRead",
    "TasksWrite",
    "require",
]


@dataclass
class ApiState:
    """What the routes share for the life of the app (app.state.ordo)."""

    settings: Settings
    db: Database
    registry: ToolRegistry
    limiter: RateLimiter
    known_scopes: frozenset[str]
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


def _state(request: Request) -> ApiState:
    return request.app.state.ordo


def _db(request: Request) -> Database:
    return request.app.state.ordo.db


def _registry(request: Request) -> ToolRegistry:
    return request.app.state.ordo.registry


def _clock(request: Request) -> datetime:
    return request.app.state.ordo.clock()


State = Annotated[ApiState, Depends(_state)]
Db = Annotated[Database, Depends(_db)]
Registry = Annotated[ToolRegistry, Depends(_registry)]
Clock = Annotated[datetime, Depends(_clock)]  # the request's "now", read once at the edge

_bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="ordo_<id>_<secret>",
    description="An API token from `ordo token create` or POST /agents/{id}/tokens.",
)


def _authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    state: State,
) -> Principal:
    if credentials is None:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    with state.db.tx() as conn:
        principal = agents.authenticate(conn, credentials.credentials)
    state.limiter.check(principal.agent_id)
    request.state.principal = principal
    return principal


Caller = Annotated[Principal, Depends(_authenticate)]


def require(scope: str) -> Callable[[Principal], Coroutine[Any, Any, Principal]]:
    """A dependency that lets the caller through only with `scope` (or admin)."""

    async def check(caller: Caller) -> Principal:
        if not caller.has(scope):
            raise Forbidden(
                f"this token lacks the {scope!r} scope; ask an admin for a token with it",
                details={"required_scope": scope, "token_scopes": sorted(caller.scopes)},
                code="SCOPE_MISSING",
            )
        return caller

    check.__name__ = f"require_{scope.replace(':', '_')}"
    return check


TasksRead = Annotated[Principal, Depends(require("tasks:read"))]
TasksWrite = Annotated[Principal, Depends(require("tasks:write"))]
RunsRead = Annotated[Principal, Depends(require("runs:read"))]
EventsPublish = Annotated[Principal, Depends(require("events:publish"))]
Admin = Annotated[Principal, Depends(require("admin"))]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Retrying with the same key returns the first response and writes nothing new (24 h).",
    ),
]
