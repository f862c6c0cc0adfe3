"""Process plumbing for `ordo` commands: settings, the database (embedded or not), logging, signals,
and turning errors into one clear line and an exit code.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import structlog
import typer

from cli import datadir
from observability.logging import configure
from store.db import Database
from store.embedded import ensure_server, supervise
from store.errors import MAX_MESSAGE_CHARS, OrdoError, clip
from store.migrate import migrate
from store.settings import Settings

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_STILL_WAITING",
    "database_url",
    "fail",
    "freeze_startup_heap",
    "guarded",
    "load_settings",
    "open_database",
    "stop_on_signals",
    "supervise_embedded",
]


def load_settings(**overrides: Any) -> Settings:
    """The settings from the environment; the data directory found as cli.datadir describes."""
    try:
        overrides.setdefault("data_dir", datadir.locate(Path.cwd(), os.environ))
        return Settings.from_env(**overrides)
    except OrdoError as e:
        fail(e.message)


def database_url(settings: Settings) -> str:
    if settings.database_url:
        _check_url(settings.database_url)
        return settings.database_url
    datadir.announce_if_new(settings.data_dir)
    return ensure_server(settings.data_dir)


def _check_url(url: str) -> None:
    """DATABASE_URL as a person wrote it: one that cannot be a PostgreSQL URL is refused with exit 2,
    without echoing it (it may hold a password)."""
    from sqlalchemy.engine import make_url

    try:
        port = make_url(url).port
    except Exception:  # ArgumentError, or ValueError for a port that is not a number
        fail("DATABASE_URL is not a valid URL: write it as postgresql://USER:PASSWORD@HOST:PORT/DATABASE")
    if port is not None and not 0 < port < 65536:
        fail(f"DATABASE_URL's port must be 1-65535, not {port}")


def open_database(
    settings: Settings, *, application_name: str = "ordo", pool_size: int = 5, service: bool = False
) -> Database:
    """The database, started if embedded, migrated to the current schema. A service (a long-running
    command) also keeps the embedded server running: see `supervise_embedded`."""
    db = Database(database_url(settings), application_name=application_name, pool_size=pool_size)
    if service:
        supervise_embedded(settings)
    applied = migrate(db)
    if applied:
        structlog.get_logger().info("migrations_applied", migrations=applied)
    return db


def supervise_embedded(settings: Settings) -> None:
    """With the embedded server: restart it whenever it dies, and end this process loudly if it cannot
    be brought back (store.embedded.RESTART_WITHIN_S). No-op with DATABASE_URL."""
    if settings.embedded:
        supervise(settings.data_dir, structlog.get_logger(), _database_lost)


def _database_lost(reason: str) -> None:
    structlog.get_logger().critical("exiting_without_database", error=reason)
    sys.stderr.write(f"error: the embedded PostgreSQL died and could not be restarted: {reason}\n")
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(1)  # from the watch thread: nothing this process does can work without its database


def freeze_startup_heap() -> None:
    """What a service has loaded before its loop starts (libraries, the tool catalog and its schemas)
    lives as long as the process: keep it out of the collector's full passes, each of which would
    otherwise pause the process for tens of milliseconds."""
    gc.freeze()


# Exit codes of every `ordo` command (README, "Exit codes").
EXIT_FAILED = 1  # the thing asked for did not succeed: a run failed, the database is unreachable
EXIT_BAD_INPUT = 2  # bad input: a usage error, an invalid document, an unknown id, a refused change
EXIT_STILL_WAITING = 3  # `--wait` gave up: the run has not finished yet
EXIT_READER_GONE = 141  # stdout's reader left (`ordo runs | head`): what a shell reports for SIGPIPE


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    typer.echo(f"error: {clip(message, MAX_MESSAGE_CHARS)}", err=True)
    raise typer.Exit(code)


@contextmanager
def guarded() -> Iterator[None]:
    """Errors become one line on stderr and a non-zero exit; never a traceback. An error the API
    answers with a 4xx (the caller's input) exits 2, anything else 1."""
    try:
        yield
    except typer.Exit:
        raise
    except OrdoError as e:
        fail(e.message, EXIT_BAD_INPUT if 400 <= e.status < 500 else EXIT_FAILED)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BrokenPipeError:
        # What the reader did not take is not wanted: no message. Python would still try to flush
        # stdout at exit and report that it could not, so stdout now goes nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(EXIT_READER_GONE) from None
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
            os._exit(1)
        structlog.get_logger().info("stop_requested", signal=signal.Signals(signum).name)
        stop.set()
        if on_first is not None:
            on_first()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop
