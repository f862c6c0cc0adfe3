"""What a one-shot `ordo` command works with: settings, quiet logging, errors turned into one line
and an exit code (cli.runtime.guarded), the database opened on first use and closed at the end, the
tool registry, and the command's `now`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from cli.runtime import guarded, load_settings, open_database, quiet_logging
from engine import ToolLimits, ToolRegistry
from store import tasks as store_tasks
from store.db import Database
from store.settings import Settings

__all__ = ["Session", "session", "tool_limits"]


def tool_limits(settings: Settings) -> ToolLimits:
    """What tools may do (response and output sizes, the outbound policy), from the settings."""
    from engine.outbound import OutboundPolicy

    return ToolLimits(
        http_max_response_bytes=settings.http_max_response_bytes,
        step_output_max_bytes=settings.step_output_max_bytes,
        outbound=OutboundPolicy.parse(settings.outbound_allow),
    )


class Session:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.now = datetime.now(UTC)
        self._db: Database | None = None
        self._registry: ToolRegistry | None = None

    @property
    def db(self) -> Database:
        """The database (embedded unless DATABASE_URL), started and migrated on first use."""
        if self._db is None:
            self._db = open_database(self.settings)
        return self._db

    @property
    def registry(self) -> ToolRegistry:
        if self._registry is None:
            self._registry = ToolRegistry.load(self.settings.tool_catalogs)
        return self._registry

    @property
    def limits(self) -> ToolLimits:
        return tool_limits(self.settings)

    def task_id(self, ref: str) -> UUID:
        """A task id from a full id or a unique prefix (store.tasks.resolve_id)."""
        with self.db.tx() as conn:
            return store_tasks.resolve_id(conn, ref)

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()


@contextmanager
def session(**overrides: Any) -> Iterator[Session]:
    """`with session() as s:` around a command's body."""
    with guarded():
        settings = load_settings(**overrides)
        quiet_logging(settings)
        current = Session(settings)
        try:
            yield current
        finally:
            current.close()
