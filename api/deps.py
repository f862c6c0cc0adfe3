"""Dependencies of the routes, as `Annotated` aliases: the database, the tool registry, the caller
(authenticated, rate-limited, and checked for the route's scope), and the Idempotency-Key header.

Authentication is answered from a cache of recently verified tokens (api.auth) or checked with its own
read, and a route takes its own connection (`reads.run(...)` or `db.tx()`), so no connection is
ever held across two of those (which could deadlock a busy pool).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer

from api.auth import TokenCache
from api.errors import UnsupportedMediaType
from api.metrics import Exposition
from api.pool import ReadPool
from api.ratelimit import RateLimiter
from engine import ToolRegistry
from engine.webhook_endpoint import EndpointRules
from store import agents
from store.agents import Principal
from store.db import Database
from store.domain import ADMIN, ROUTE_SCOPES
from store.errors import Forbidden, InvalidInput, Unauthorized
from store.settings import Settings
from store.status import Freshness

__all__ = [
    "BEARER",
    "Admin",
    "ApiState",
    "AvailabilityRead",
    "AvailabilityWrite",
    "Caller",
    "CheckedRoute",
    "Clock",
    "Cursor",
    "Db",
    "EventsPublish",
    "IdempotencyKey",
    "Limit",
    "Reads",
    "Registry",
    "RunsRead",
    "TasksRead",
    "TasksWrite",
    "WebhookRules",
    "WebhooksRead",
    "WebhooksWrite",
    "check_request",
    "reject_unknown_query",
    "require",
    "require_json_body",
]


@dataclass
class ApiState:
    """What the routes share for the life of the app (app.state.ordo)."""

    settings: Settings
    db: Database  # transactions, for writes
    reads: ReadPool  # autocommit connections, for reads
    registry: ToolRegistry
    limiter: RateLimiter
    tokens: TokenCache
    known_scopes: frozenset[str]
    freshness: Freshness  # when a worker or the scheduler leader counts as alive
    exposition: Exposition  # renders /metrics
    webhook_rules: EndpointRules  # what a webhook URL may be (the outbound policy, https or not)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


# Every dependency that does no I/O is async: FastAPI runs a plain `def` dependency on the thread
# pool, and each such hop costs more than the work it wraps.
async def _state(request: Request) -> ApiState:
    return request.app.state.ordo


async def _db(request: Request) -> Database:
    return request.app.state.ordo.db


async def _reads(request: Request) -> ReadPool:
    return request.app.state.ordo.reads


async def _registry(request: Request) -> ToolRegistry:
    return request.app.state.ordo.registry


async def _webhook_rules(request: Request) -> EndpointRules:
    return request.app.state.ordo.webhook_rules


async def _clock(request: Request) -> datetime:
    return request.app.state.ordo.clock()


State = Annotated[ApiState, Depends(_state)]
Db = Annotated[Database, Depends(_db)]
Reads = Annotated[ReadPool, Depends(_reads)]
Registry = Annotated[ToolRegistry, Depends(_registry)]
WebhookRules = Annotated[EndpointRules, Depends(_webhook_rules)]
Clock = Annotated[datetime, Depends(_clock)]  # the request's "now", read once at the edge

BEARER = HTTPBearer(
    auto_error=False,
    bearerFormat="ordo_<id>_<secret>",
    description="An API token from `ordo token create` or POST /agents/{id}/tokens.",
)


async def _principal(request: Request) -> Principal:
    """The caller, authenticated and admitted by the rate limit. A token verified recently is answered
    from the cache; any other is checked with an awaited read."""
    credentials = await BEARER(request)  # None when there is no `Authorization: Bearer` header
    if credentials is None:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    state: ApiState = request.app.state.ordo
    token = credentials.credentials
    key = agents.hash_token(token)
    principal = state.tokens.get(key)
    if principal is None:
        generation = state.tokens.generation
        principal = await state.reads.run(agents.authenticate, token)
        state.tokens.put(key, principal, generation)
    await state.limiter.check(principal.agent_id)
    request.state.principal = principal
    return principal


# Each dependency FastAPI resolves costs it tens of microseconds per request (a read by primary key
# costs about a hundred), so the caller comes from one dependency, not a chain of them: the bearer
# scheme is read by calling it, and api/docs.py names it in the OpenAPI document of every operation
# that authenticates (`authenticates`).
async def _authenticate(request: Request) -> Principal:
    return await _principal(request)


_authenticate.authenticates = True  # type: ignore[attr-defined]  # read by api/docs.py
Caller = Annotated[Principal, Depends(_authenticate)]


def _declared_query(route: Any) -> frozenset[str]:
    # Computed once per route and kept on it (routes are not hashable, and ids of routes of apps
    # that are gone could be reused).
    names = getattr(route, "_ordo_query_names", None)
    if names is None:

        def walk(dependant: Any) -> set[str]:
            found = {param.alias for param in dependant.query_params}
            for sub in dependant.dependencies:
                found |= walk(sub)
            return found

        names = frozenset(walk(route.dependant))
        route._ordo_query_names = names
    return names


async def reject_unknown_query(request: Request) -> None:
    """A query parameter the route does not declare is refused: `?stauts=paused` must not silently
    list everything."""
    if not request.query_params:
        return
    route = request.scope.get("route")
    if route is None or not hasattr(route, "dependant"):
        return
    declared = _declared_query(route)
    unknown = sorted(set(request.query_params) - declared)
    if unknown:
        raise InvalidInput(
            f"unknown query parameter {unknown[0]!r}; "
            f"this route takes: {', '.join(sorted(declared)) or 'none'}",
            details={"in": "query", "path": unknown[0], "unknown": unknown},
            code="INVALID_REQUEST",
        )


async def check_request(request: Request) -> None:
    """The checks every route makes before its own (`CheckedRoute`): no unknown query parameter (400),
    and a JSON body where the route reads one (415)."""
    await reject_unknown_query(request)
    await require_json_body(request)


class CheckedRoute(APIRoute):
    """The class of every route of the API (`APIRouter(route_class=CheckedRoute)`): it makes the
    `check_request` checks before FastAPI reads the route's body and parameters. Called from the
    route's handler rather than declared as an app-wide dependency, which FastAPI would resolve on
    every request at a cost (see `_authenticate`) of a few percent of GET /tasks/{id}."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def checked(request: Request) -> Response:
            await check_request(request)
            return await handle(request)

        return checked


_JSON_METHODS = frozenset({"POST", "PUT", "PATCH"})


async def require_json_body(request: Request) -> None:
    """A route that reads a JSON body refuses a body sent as anything else (415): `curl -d` sends
    application/x-www-form-urlencoded, which would otherwise surface as a puzzling field error."""
    if request.method not in _JSON_METHODS:
        return
    route = request.scope.get("route")
    if getattr(route, "body_field", None) is None:
        return
    headers = request.headers
    if headers.get("content-length", "0") == "0" and "transfer-encoding" not in headers:
        return  # no body: the route's own rules say whether it needs one
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        return
    got = repr(media_type) if media_type else "no Content-Type"
    raise UnsupportedMediaType(
        f"send the body as JSON with 'Content-Type: application/json' (got {got})",
        details={"content_type": media_type or None},
    )


def require(scope: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency that authenticates the caller (as `Caller` does) and lets it through only with
    `scope` (or admin). The OpenAPI document names the scope of every operation from it (api/docs.py
    reads `required_scope`). Only a scope of the vocabulary (store.domain.ROUTE_SCOPES): tokens are
    checked against that list when issued."""
    if scope not in ROUTE_SCOPES:
        raise ValueError(f"{scope!r} is not in store.domain.ROUTE_SCOPES")

    async def check(request: Request) -> Principal:
        caller = await _principal(request)
        if not caller.has(scope):
            raise Forbidden(
                f"this token lacks the {scope!r} scope; ask an admin for a token with it",
                details={"required_scope": scope, "token_scopes": sorted(caller.scopes)},
                code="SCOPE_MISSING",
            )
        return caller

    check.__name__ = f"require_{scope.replace(':', '_')}"
    check.required_scope = scope  # type: ignore[attr-defined]
    check.authenticates = True  # type: ignore[attr-defined]
    return check


TasksRead = Annotated[Principal, Depends(require("tasks:read"))]
TasksWrite = Annotated[Principal, Depends(require("tasks:write"))]
RunsRead = Annotated[Principal, Depends(require("runs:read"))]
EventsPublish = Annotated[Principal, Depends(require("events:publish"))]
AvailabilityRead = Annotated[Principal, Depends(require("availability:read"))]
AvailabilityWrite = Annotated[Principal, Depends(require("availability:write"))]
WebhooksRead = Annotated[Principal, Depends(require("webhooks:read"))]
WebhooksWrite = Annotated[Principal, Depends(require("webhooks:write"))]
Admin = Annotated[Principal, Depends(require(ADMIN))]

# Every listing pages the same way (store.keyset): a cursor the listing handed out, and a page size.
# The cursor is checked by store.keyset.decode only, so any bad cursor is 400 INVALID_CURSOR.
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page of the same listing.")]
Limit = Annotated[int, Query(ge=1, le=200, description="Page size.")]

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
