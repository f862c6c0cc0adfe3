"""The API's read connections, used from the event loop: a read awaits its I/O instead of occupying
a thread, so a cheap read costs no thread-pool hop and no GIL hand-off.

Two kinds of read share this object. The store's synchronous functions run through SQLAlchemy on
an async connection (`run`, greenlet-based). The hottest reads (GET /tasks/{id}, GET /runs) are
async functions of the store on a plain psycopg connection (`fetch`): SQLAlchemy's async pool and
execution layer cost about twice such a read, which is most of what separates the API from a bare
FastAPI app doing the same read (benchmarks/api_latency.py). Both run the same statements
(store/*.sql).

Autocommit, so a read is one round trip per statement (no BEGIN and COMMIT), and no pre-ping on
checkout: after a database restart the first read on a dead connection fails (503) and the pool is
checked at once (SQLAlchemy recycles the whole pool; psycopg's drops every broken idle connection),
so the next one reconnects. The pools have a fixed size and requests queue for a connection: opening
connections under load (and planning their statements afresh) costs far more than waiting a moment
for one. SQLAlchemy's opens its connections only when a read needs them. Writes use
store.db.Database transactions on the thread pool."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.ext.asyncio import create_async_engine

from store.db import libpq_url, translate_errors

__all__ = ["ReadPool"]

T = TypeVar("T")
P = ParamSpec("P")


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
        self.pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            libpq_url(url),
            min_size=size,
            max_size=size,
            kwargs={"autocommit": True, "application_name": application_name},
            open=False,
            name="ordo-api-reads",
            # While the database is away a read waits this long for a connection, then answers 503.
            timeout=5.0,
        )
        self._checking: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Start opening the psycopg connections (a read waits for the first one)."""
        await self.pool.open(wait=False)

    async def run(self, read: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """`read(conn, *args, **kwargs)` (a store function on a SQLAlchemy connection) on a pooled
        connection."""
        with translate_errors():
            async with self.engine.connect() as conn:
                return await conn.run_sync(read, *args, **kwargs)

    async def fetch(
        self,
        read: Callable[Concatenate[psycopg.AsyncConnection[Any], P], Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """`await read(conn, *args, **kwargs)` (an async store function on a psycopg connection) on a
        pooled connection."""
        with translate_errors():
            try:
                async with self.pool.connection() as conn:
                    return await read(conn, *args, **kwargs)
            except psycopg.OperationalError:
                self._check_soon()
                raise

    def _check_soon(self) -> None:
        # The server went away (or restarted): every idle connection is likely dead too. Checked in
        # the background, once at a time, so that the requests after this one reconnect.
        if self._checking is None or self._checking.done():
            self._checking = asyncio.create_task(self._check())

    async def _check(self) -> None:
        with contextlib.suppress(Exception):  # nothing to report: the next failing read checks again
            await self.pool.check()

    async def dispose(self) -> None:
        if self._checking is not None:
            self._checking.cancel()
        await self.pool.close()
        await self.engine.dispose()
