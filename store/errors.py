"""Typed errors, the bottom module every layer shares (it imports nothing of Ordo). Each carries a
stable machine-readable code and the HTTP status the API maps it to.

The API and the CLI each translate `OrdoError` once; nothing below them formats errors for people.
Both pass the message and details through `clip`/`clip_details` on the way out, so an answer never
carries an unbounded piece of input back (a 1 MB title, a 10,000-character schedule), whoever raised
the error. The error itself keeps everything (a tool's error is recorded whole in its run's history).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "MAX_DETAIL_CHARS",
    "MAX_MESSAGE_CHARS",
    "AlreadyExists",
    "ConfigError",
    "Conflict",
    "Forbidden",
    "InvalidBatch",
    "InvalidCursor",
    "InvalidInput",
    "InvalidPipeline",
    "InvalidPlant",
    "InvalidSchedule",
    "InvalidTask",
    "InvalidWebhook",
    "NotFound",
    "OrdoError",
    "Permanent",
    "RetryLater",
    "StoreError",
    "ToolError",
    "Unauthorized",
    "UnknownTool",
    "clip",
    "clip_details",
]

# Long enough for a field path and a sentence about it; short enough that a megabyte of input sent
# back in an error message (a 1 MB title, a 10,000-character schedule) cannot happen.
MAX_MESSAGE_CHARS = 1000
MAX_DETAIL_CHARS = 300
_MAX_DETAIL_ITEMS = 50


def clip(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """`text` cut to `limit` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    return f"{text[:limit]}... ({cut} more characters)"


def clip_details(value: Any, depth: int = 0) -> Any:
    """A detail value made JSON-ready and bounded: text clipped, collections cut to 50 items."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return clip(value)
    if depth >= 4:
        return clip(repr(value))
    if isinstance(value, dict):
        items = list(value.items())[:_MAX_DETAIL_ITEMS]
        return {clip(str(k), 100): clip_details(v, depth + 1) for k, v in items}
    if isinstance(value, list | tuple | set | frozenset):
        return [clip_details(v, depth + 1) for v in list(value)[:_MAX_DETAIL_ITEMS]]
    return clip(str(value))


class OrdoError(Exception):
    """Base of every error Ordo reports on purpose."""

    code = "ORDO_ERROR"
    status = 500

    def __init__(
        self, message: str, *, details: dict[str, Any] | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code is not None:
            self.code = code


class ConfigError(OrdoError):
    """A setting in the environment or on the command line is unusable."""

    code, status = "CONFIG_ERROR", 400


class InvalidInput(OrdoError):
    """A request, a document or a command-line value is malformed; `details.path` names the field."""

    code, status = "INVALID_INPUT", 422


class InvalidCursor(InvalidInput):
    """A page cursor that no listing handed out."""

    code, status = "INVALID_CURSOR", 400


class InvalidTask(InvalidInput):
    """A task document is malformed (missing field, wrong type, value out of range)."""

    code = "INVALID_TASK"


class InvalidBatch(InvalidInput):
    """Documents of a batch are invalid (nothing was stored); `details.errors` names each one by its
    index, with its code, message and field path."""

    code = "INVALID_BATCH"


class InvalidSchedule(InvalidInput):
    """A cron line, RRULE, `once` timestamp or time zone cannot be used."""

    code = "INVALID_SCHEDULE"


class InvalidPipeline(InvalidInput):
    """The pipeline document is malformed: schema, step ids, templates, tool input."""

    code = "INVALID_PIPELINE"


class InvalidPlant(OrdoError):
    """Plant data is unusable: a resource tree with a cycle or a missing parent, overlapping pattern
    rules, an unknown country, an exception that ends before it starts... `details.errors` lists every
    problem found, each naming its row (or path) and field; nothing is stored."""

    code, status = "INVALID_PLANT", 422


class UnknownTool(InvalidPipeline):
    """The pipeline names a tool that is not in the catalog."""

    code = "UNKNOWN_TOOL"


class InvalidWebhook(OrdoError):
    """A webhook endpoint document or request is malformed (url, events, secret, state filter)."""

    code, status = "INVALID_WEBHOOK", 422


class NotFound(OrdoError):
    code, status = "NOT_FOUND", 404


class AlreadyExists(OrdoError):
    code, status = "ALREADY_EXISTS", 409


class Conflict(OrdoError):
    """The request is valid but the current state does not allow it (e.g. resuming a canceled task)."""

    code, status = "CONFLICT", 409


class Unauthorized(OrdoError):
    code, status = "UNAUTHORIZED", 401


class Forbidden(OrdoError):
    code, status = "FORBIDDEN", 403


class StoreError(OrdoError):
    """The database failed in a way the caller cannot fix by changing its input."""

    code, status = "STORE_ERROR", 503


class ToolError(OrdoError):
    """Raised by a tool: the call failed. `retryable` tells the worker whether another attempt may help."""

    code, status = "TOOL_ERROR", 422

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        retryable: bool = True,
    ) -> None:
        super().__init__(message, details=details, code=code)
        self.retryable = retryable


class Permanent(ToolError):
    """Raised by a tool: retrying cannot help (bad data, refused by the far side)."""

    code = "PERMANENT"

    def __init__(
        self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, code=code, details=details, retryable=False)


class RetryLater(ToolError):
    """Raised by a tool: try again after `delay_s` (a rate limit, a busy peer); the attempt still counts."""

    code = "RETRY_LATER"

    def __init__(self, delay_s: float, reason: str, *, code: str | None = None) -> None:
        super().__init__(reason, code=code, details={"delay_s": delay_s}, retryable=True)
        self.delay_s = float(delay_s)
