"""structlog configuration, once per process: JSON lines when stdout is not a terminal, readable
console output on one. Context (task_id, run_id, step, worker_id) is bound through contextvars.
Values under secret-looking keys are redacted before rendering.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ["configure", "redact_secrets"]

_SECRET_MARKERS = ("token", "password", "secret", "authorization", "api_key", "apikey", "cookie")


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if any(marker in key.lower() for marker in _SECRET_MARKERS):
            event[key] = "[redacted]"
    return event


def configure(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    stream = stream or sys.stdout
    console = fmt == "console" or (fmt == "auto" and hasattr(stream, "isatty") and stream.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=True, exception_formatter=structlog.dev.plain_traceback)
        if console
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
        structlog.processors.StackInfoRenderer(),
    ]
    if not console:
        # Tracebacks as data, without local variables: locals can hold tokens and database URLs.
        processors.append(
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        )
    processors.append(renderer)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )
    # Libraries that log through the standard library (uvicorn, apscheduler, pgserver) go to stderr.
    logging.basicConfig(level=max(logging.WARNING, logging.getLevelName(level.upper())), stream=sys.stderr)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
