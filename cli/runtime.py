"""Process plumbing for `ordo` commands: settings, the database (embedded or not), logging, signals,
and turning errors into one clear line and an exit code.
"""

from __future__ import annotations

import gc
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import structlog
import typer

from observability.logging import configure
from store.db import Database
from store.embedded import ensure_server
from store.errors import OrdoError
from store.migrate import migrate
from store.settings import Settings

__all__ = [
    "database_url",
    "fail",
    "freeze_startup_heap",
    "guarded",
    "load_settings",
    "open_database",
    "stop_on_signals",
]


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings.from_env(**overrides)
    except OrdoError as e:
        fail(e.message)


def database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    return ensure_server(settings.data_dir)


def open_database(settings: Settings, *, application_name: str = "ordo", pool_size: int = 5) -> Database:
    """The database, started if embedded, migrated to the current schema."""
    db = Database(database_url(settings), application_name=application_name, pool_size=pool_size)
    applied = migrate(db)
    if applied:
        structlog.get_logger().info("migrations_applied", migrations=applied)
    return db


def freeze_startup_heap() -> None:
    """What a service has loaded before its loop starts (libraries, the tool catalog and its schemas)
    lives as long as the process: keep it out of the collector's full passes, each of which would
    otherwise pause the process for tens of milliseconds."""
    gc.freeze()


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def guarded() -> Iterator[None]:
    """Errors become one line on stderr and a non-zero exit; never a traceback."""
    try:
        yield
    except typer.Exit:
        raise
    except OrdoError as e:
        fail(e.message, 2 if e.status in (400, 404, 409, 422) else 1)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as e:  # the last line of defence; the log has the details
        structlog.get_logger().exception("command_crashed")
        fail(f"internal error: {type(e).__name__}: {e}", 70)


def quiet_logging(settings: Settings) -> None:
    """One-shot commands: logs go to stderr, warnings and up, so stdout stays clean for --json."""
    configure(
        level="warning" if settings.log_level in ("debug", "info") else settings.log_level,
        fmt=settings.log_format,
        stream=sys.stderr,
    )


def service_logging(settings: Settings) -> None:
    configure(level=settings.log_level, fmt=settings.log_format)


def stop_on_signals(on_first: Callable[[], None] | None = None) -> threading.Event:
    """SIGTERM/SIGINT set the returned event (graceful stop); a second signal exits at once."""
    stop = threading.Event()

    def handle(signum: int, _: Any) -> None:
        if stop.is_set():
            structlog.get_logger().warning("forced_exit", signal=signal.Signals(signum).name)
            sys.stdout.flush()
            import os

            os._exit(1)
        structlog.get_logger().info("stop_requested", signal=signal.Signals(signum).name)
        stop.set()
        if on_first is not None:
            on_first()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop
