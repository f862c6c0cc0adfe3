"""structlog configuration, once per process: JSON lines when stdout is not a terminal, readable
console output on one. A run's lines carry worker_id, run_id, task_id and attempt, bound to the
worker's logger (`log.bind`, workers/execute.py); an API request's carry request_id, bound through
contextvars (api.middleware.RequestTracking) and merged in by `merge_contextvars` below.

No secret reaches a line. The last processor before rendering (`redact_secrets`) replaces values
under secret-looking keys, and masks what looks like a secret anywhere in a value, tracebacks
included: bearer tokens, Ordo API tokens, webhook secrets and passwords in URLs.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ["configure", "redact_secrets", "scrub"]

_SECRET_KEYS = ("token", "password", "passwd", "secret", "authorization", "api_key", "apikey", "cookie")
_REDACTED = "[redacted]"
_SECRET_TEXT = re.compile(
    r"(?P<scheme>\bBearer\s+)[^\s\"',;]+"  # Authorization: Bearer <anything>
    r"|\bordo_[a-z2-7]{12}_[A-Za-z0-9_-]+"  # an Ordo API token
    r"|\bwhsec_[A-Za-z0-9+/=_-]+"  # a webhook signing secret
    r"|(?P<userinfo>://[^/\s:@]*:)[^@\s/]+@",  # scheme://user:password@host
    re.IGNORECASE,
)


def _mask(match: re.Match[str]) -> str:
    if match["scheme"]:
        return match["scheme"] + _REDACTED
    if match["userinfo"]:
        return match["userinfo"] + _REDACTED + "@"
    return _REDACTED


def scrub(value: Any) -> Any:
    """`value` with every secret-looking part masked (strings inside dicts, lists and tuples too)."""
    if isinstance(value, str):
        return _SECRET_TEXT.sub(_mask, value)
    if isinstance(value, dict):
        return {k: _REDACTED if isinstance(k, str) and _secret_key(k) else scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(scrub(v) for v in value)
    return value


def _secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(marker in lowered for marker in _SECRET_KEYS)


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        event[key] = _REDACTED if _secret_key(key) else scrub(value)
    return event


def configure(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    stream = stream or sys.stdout
    console = fmt == "console" or (fmt == "auto" and hasattr(stream, "isatty") and stream.isatty())
    # Tracebacks become data before redaction sees them: an exception message can carry a URL with
    # its password. JSON: structured, without local variables (locals can hold tokens).
    exceptions = (
        structlog.processors.format_exc_info
        if console
        else structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
    )
    renderer = structlog.dev.ConsoleRenderer(colors=True) if console else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            exceptions,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )
    # Libraries that log through the standard library (uvicorn, apscheduler, pgserver) go to stderr,
    # rendered and redacted the same way.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                exceptions,
                redact_secrets,
                renderer,
            ],
        )
    )
    handler._ordo = True  # type: ignore[attr-defined]  # ours: replaced when configure() runs again
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not getattr(h, "_ordo", False)] + [handler]
    root.setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
