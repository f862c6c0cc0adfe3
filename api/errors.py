"""The API's one translation of errors into HTTP responses, all shaped `{"code", "message", "details"}`.

`OrdoError` carries its own code and status. FastAPI's request validation errors become 422
`INVALID_REQUEST` with the field path (400 `MALFORMED_JSON` when the body is not JSON at all), and
Starlette's HTTP errors (unknown route, wrong method, unreadable body) get the same shape. Anything
else is a bug: logged with its traceback and answered 500 `INTERNAL_ERROR` without internals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from api.schemas import ErrorBody
from engine.pipeline import format_path
from store.errors import MAX_MESSAGE_CHARS, OrdoError, clip, clip_details

__all__ = ["BadRequest", "RateLimited", "UnsupportedMediaType", "error_response", "install", "responses"]

_log = structlog.get_logger("api")


class BadRequest(OrdoError):
    """The request cannot be read (malformed JSON, an unusable header)."""

    code, status = "BAD_REQUEST", 400


class UnsupportedMediaType(OrdoError):
    """A body the route reads as JSON was sent as another media type."""

    code, status = "UNSUPPORTED_MEDIA_TYPE", 415


class RateLimited(OrdoError):
    """The agent sent more requests than its per-minute allowance."""

    code, status = "RATE_LIMITED", 429

    def __init__(self, retry_after_s: float, limit_per_min: int) -> None:
        self.retry_after = max(1, math.ceil(retry_after_s))
        super().__init__(
            f"rate limit of {limit_per_min} requests per minute exceeded; retry in {self.retry_after} s",
            details={"limit_per_min": limit_per_min, "retry_after_s": self.retry_after},
        )


_DESCRIPTIONS = {
    400: "The request cannot be read: malformed JSON, an unusable header, or a cursor no listing handed out.",
    401: "Missing, unknown, expired or revoked bearer token.",
    403: "The token lacks the scope this route needs (or a tool's scope).",
    404: "No such resource, or it belongs to another agent.",
    409: "The resource's current state does not allow this (e.g. resuming a canceled task).",
    413: "The request body is larger than the configured cap.",
    415: "The body is not sent as JSON: send 'Content-Type: application/json'.",
    422: "The request is well-formed but invalid; `details.path` names the field.",
    429: "Rate limit exceeded; see Retry-After.",
    503: "The database is unavailable.",
}
_CODES_BY_STATUS = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    413: "BODY_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI declarations of the error responses a route can give, for `responses=`."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted(set(statuses)):
        entry: dict[str, Any] = {"model": ErrorBody, "description": _DESCRIPTIONS[status]}
        if status == 429:
            entry["headers"] = {
                "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}
            }
        out[status] = entry
    return out


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The one shape of every error answer. Message and details are clipped (store.errors.clip): an
    answer never echoes an unbounded piece of the request (a long path, value or parameter name)."""
    return JSONResponse(
        {"code": code, "message": clip(message, MAX_MESSAGE_CHARS), "details": clip_details(details or {})},
        status_code=status,
        headers=headers,
    )


async def _ordo_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OrdoError)
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    elif exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="ordo"'
    if exc.status >= 500:
        _log.error(
            "request_failed", method=request.method, path=request.url.path, code=exc.code, error=exc.message
        )
    return error_response(exc.status, exc.code, exc.message, exc.details, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors: Sequence[Any] = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": "value_error"}
    if first.get("type") == "json_invalid":
        position = first["loc"][1] if len(first["loc"]) > 1 else None
        reason = (first.get("ctx") or {}).get("error", "JSON decode error")
        return error_response(
            400,
            "MALFORMED_JSON",
            f"the request body is not valid JSON: {reason} (at character {position})",
            {"position": position},
        )
    items = [_describe(e) for e in errors[:20]]
    head = items[0]
    where = f"{head['path']} ({head['in']})" if head["path"] else head["in"]
    return error_response(
        422,
        "INVALID_REQUEST",
        f"{where}: {head['message']}",
        {"path": head["path"], "in": head["in"], "errors": items},
    )


def _describe(error: Any) -> dict[str, Any]:
    loc = tuple(error.get("loc", ()))
    source = str(loc[0]) if loc else "body"
    path = format_path([p for p in loc[1:] if isinstance(p, str | int)])
    message = str(error.get("msg", "invalid value"))
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return {"in": source, "path": path, "message": message, "type": error.get("type", "value_error")}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    code = _CODES_BY_STATUS.get(status, f"HTTP_{status}")
    if status == 404:
        message = f"no route {request.method} {request.url.path}; see /docs"
    elif status == 405:
        allowed = _allowed_methods(request)
        message = f"{request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}"
        return error_response(status, code, message, {"allowed": allowed}, {"Allow": ", ".join(allowed)})
    elif status == 400 and exc.detail == "There was an error parsing the body":
        code = "MALFORMED_JSON"
        message = (
            "the request body could not be parsed as JSON "
            "(too deeply nested, a number too long, or not UTF-8)"
        )
    else:
        message = str(exc.detail)
    return error_response(status, code, message, {}, dict(exc.headers or {}))


def _allowed_methods(request: Request) -> list[str]:
    # Starlette's Allow names only the first route that matched the path; ask every route instead.
    allowed = []
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    _log.exception("request_crashed", method=request.method, path=request.url.path)
    # Sent from outside the middleware that adds X-Request-ID, so it adds the id itself: the
    # caller can quote it and find the log line.
    request_id = getattr(request.state, "request_id", None)
    return error_response(
        500,
        "INTERNAL_ERROR",
        "internal error; the server log has the details",
        headers={"X-Request-ID": request_id} if request_id else None,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(OrdoError, _ordo_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
