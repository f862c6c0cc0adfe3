"""The bare baseline of the API benchmark: a minimal FastAPI app that reads one task row by primary key
and returns it, served exactly as `ordo api` serves Ordo.

    python benchmarks/_bare_api.py DATABASE_URL PORT PROCESSES

What it shares with Ordo: FastAPI, uvicorn with Ordo's production settings (api.server.uvicorn_config:
httptools, uvloop, no access log), one process per ORDO_API_WORKERS listening on its own SO_REUSEPORT
socket, psycopg (async) with a pool of 8 autocommit connections per process like Ordo's read pool,
and a lean response (the row as JSON by orjson, which is what Ordo's routes use). What it leaves out
is everything Ordo adds per request: authentication, the rate limit, scope checks, query checks,
the task's schedule in words, request metrics and the body cap. The ratio of Ordo's throughput to
this one's is what those cost.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_POOL_SIZE = 8  # api.app.ApiConfig.read_pool
_SELECT = "SELECT * FROM task WHERE id = %s"


def create_bare_app(url: str) -> Any:
    import orjson
    from fastapi import FastAPI, Response
    from psycopg_pool import AsyncConnectionPool

    from store.db import libpq_url

    pool = AsyncConnectionPool(
        libpq_url(url),
        min_size=_POOL_SIZE,
        max_size=_POOL_SIZE,
        kwargs={"autocommit": True, "application_name": "bare-api"},
        open=False,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await pool.open(wait=True)
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/tasks/{task_id}")
    async def get_task(task_id: UUID) -> Response:
        async with pool.connection() as conn:
            cursor = await conn.execute(_SELECT, (task_id,))
            row = await cursor.fetchone()
            names = [c.name for c in cursor.description or ()]
        if row is None:
            return Response(b'{"code": "NOT_FOUND"}', status_code=404, media_type="application/json")
        return Response(orjson.dumps(dict(zip(names, row, strict=True))), media_type="application/json")

    @app.get("/health")
    async def health() -> Response:
        return Response(b'{"status": "ok"}', media_type="application/json")

    return app


def _serve_process(url: str, port: int) -> None:
    import functools

    import uvicorn

    from api.server import _reuseport_socket, uvicorn_config
    from store.settings import Settings

    config = uvicorn_config(Settings(api_port=port, log_level="warning"))
    config.app = functools.partial(create_bare_app, url)
    sock = _reuseport_socket(config.host, port)
    sock.listen(config.backlog)
    uvicorn.Server(config).run(sockets=[sock])


def main() -> None:
    import signal

    url, port, processes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so that `finally` stops the children
    spawn = multiprocessing.get_context("spawn")
    children = [spawn.Process(target=_serve_process, args=(url, port)) for _ in range(processes)]
    for child in children:
        child.start()
    try:
        for child in children:
            child.join()
    finally:
        for child in children:
            child.terminate()


if __name__ == "__main__":
    main()
