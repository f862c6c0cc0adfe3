"""The API's read connections: autocommit, so a read is one round trip per statement (no BEGIN and
COMMIT), and no pre-ping on checkout. After a database restart the first read on a dead connection
fails (503) and SQLAlchemy recycles the whole pool, so the next one reconnects. Writes use
store.db.Database transactions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, create_engine

from store.db import translate_errors

__all__ = ["ReadPool"]


class ReadPool:
    def __init__(self, url: str, *, size: int, overflow: int, application_name: str = "ordo-api") -> None:
        self.engine = create_engine(
            url,
            isolation_level="AUTOCOMMIT",
            pool_size=size,
            max_overflow=overflow,
            pool_pre_ping=False,
            connect_args={"application_name": application_name},
        )

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reads (and single-statement writes that need no transaction)."""
        with translate_errors(), self.engine.connect() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()
