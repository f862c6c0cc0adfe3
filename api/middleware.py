"""Pure ASGI middleware: request ids and metrics, liveness, and the request body cap.

The body cap answers 413 as soon as it knows: at once when Content-Length is above the cap (the body
is never read), or while streaming when a chunked body grows past it. The 413 closes the connection
so the client's unsent remainder is not read either.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from observability.metrics import API_REQUEST_SECONDS, API_REQUESTS

__all__ = ["REQUEST_ID_HEADER", "BodyLimit", "Liveness", "RequestTracking"]

REQUEST_ID_HEADER = "X-Request-ID"

_log = structlog.get_logger("api")


class _BodyTooLarge(HTTPException):
    def __init__(self, cap: int) -> None:
        super().__init__(
            413, f"the request body exceeds the {cap}-byte limit", headers={"Connection": "close"}
        )


class BodyLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.cap = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.cap:
            response = error_response(
                413,
                "BODY_TOO_LARGE",
                f"the request body ({declared} bytes) exceeds the {self.cap}-byte limit",
                {"limit_bytes": self.cap},
                {"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.cap:
                    raise _BodyTooLarge(self.cap)
            return message

        await self.app(scope, counting_receive, send)


class Liveness:
    """GET /health answered before routing: liveness must stay cheap and must not depend on anything
    behind it (the route in api/routes/health.py documents it and answers anything else)."""

    _HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"15")]
    _BODY = b'{"status":"ok"}'

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == "/health"
            and scope["method"] == "GET"
            and not scope["query_string"]
        ):
            await send({"type": "http.response.start", "status": 200, "headers": self._HEADERS})
            await send({"type": "http.response.body", "body": self._BODY})
            return
        await self.app(scope, receive, send)


class RequestTracking:
    """Every request gets an id, and is counted and timed (one middleware, not two: each layer
    wraps every request and its `send` again, a few percent of a cheap read).

    The id is the client's X-Request-ID when it is a sensible token (so a proxy's or caller's id
    follows the request through), otherwise a new one. It is bound to every log line the request
    produces (structlog contextvars), kept in `request.state.request_id`, and returned in the
    X-Request-ID response header. The metrics count and time every request by method, route
    template and status."""

    _ACCEPTED = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")
    _NAME = REQUEST_ID_HEADER.lower().encode()

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The labelled children, kept: `labels()` takes a lock and checks its arguments on each call
        # (a few microseconds a request). Bounded: route templates x methods x statuses.
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._timers: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((value for name, value in scope["headers"] if name == self._NAME), None)
        request_id = (
            incoming.decode()
            if incoming is not None and self._ACCEPTED.fullmatch(incoming)
            else uuid.uuid4().hex
        )
        scope.setdefault("state", {})["request_id"] = request_id
        header = (self._NAME, request_id.encode())
        started = time.perf_counter()
        status = 500

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, tracking_send)
        finally:
            self._observe(scope, status, time.perf_counter() - started)
        # Unbound only after a normal end: when the request crashed, Starlette's last-resort handler
        # (outside this middleware) logs it and must still see the id. The request's task ends with
        # the request, and its context with it.
        structlog.contextvars.reset_contextvars(**tokens)

    def _observe(self, scope: Scope, status: int, elapsed: float) -> None:
        route = _route_template(scope)
        method = scope["method"]
        key = (method, route, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = API_REQUESTS.labels(method, route, str(status))
        timer = self._timers.get((method, route))
        if timer is None:
            timer = self._timers[method, route] = API_REQUEST_SECONDS.labels(method, route)
        counter.inc()
        timer.observe(elapsed)


def _route_template(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = (
        getattr(route, "path", None)
        if route is not None
        else (scope["path"] if scope["path"] == "/health" else None)
    )
    # Unmatched paths share one label so that scanners cannot blow up the label set.
    return path if isinstance(path, str) else "unmatched"
