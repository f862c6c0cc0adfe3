"""The API's read connections, used from the event loop: a read awaits its I/O instead of occupying
a thread, so a cheap read costs no thread-pool hop and no GIL hand-off. The store's functions stay
synchronous; SQLAlchemy runs them on an async connection (`run_sync`, greenlet-based).

Autocommit, so a read is one round trip per statement (no BEGIN and COMMIT), and no pre-ping on
checkout: after a database restart the first read on a dead connection fails (503) and SQLAlchemy
recycles the whole pool, so the next one reconnects. The pool has a fixed size and requests queue
for a connection: opening connections under load (and planning their statements afresh) costs far
more than waiting a moment for one. Writes use store.db.Database transactions on the thread pool."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import create_async_engine

from store.db import translate_errors

__all__ = ["ReadPool"]

T = TypeVar("T")


class ReadPool:
    def __init__(self, url: str, *, size: int, application_name: str = "ordo-api") -> None:
        self.engine = create_async_engine(
            url,
            isolation_level="AUTOCOMMIT",
            pool_size=size,
            max_overflow=0,
            pool_pre_ping=False,
            connect_args={"application_name": application_name},
        )

    async def run(self, read: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """`read(conn, *args, **kwargs)` on a pooled connection."""
        with translate_errors():
            async with self.engine.connect() as conn:
                return await conn.run_sync(read, *args, **kwargs)

    async def dispose(self) -> None:
        await self.engine.dispose()
