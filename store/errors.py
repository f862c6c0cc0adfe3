"""Typed errors. Each carries a stable machine-readable code and the HTTP status the API maps it to.

The API and the CLI each translate `OrdoError` once; nothing below them formats errors for people.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlreadyExists",
    "ConfigError",
    "Conflict",
    "Forbidden",
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
]


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

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class ConfigError(OrdoError):
    """A setting in the environment or on the command line is unusable."""

    code, status = "CONFIG_ERROR", 400


class InvalidTask(OrdoError):
    """A task document is malformed (missing field, wrong type, value out of range)."""

    code, status = "INVALID_TASK", 422


class InvalidSchedule(OrdoError):
    """A cron line, RRULE, `once` timestamp or time zone cannot be used."""

    code, status = "INVALID_SCHEDULE", 422


class InvalidPipeline(OrdoError):
    """The pipeline document is malformed: schema, step ids, templates, tool input."""

    code, status = "INVALID_PIPELINE", 422


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
