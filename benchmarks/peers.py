"""Peer queues for the throughput benchmark: pgqueuer and procrastinate draining N no-op jobs.

Each `run_*` function measures one configuration of one library against a ready database:

    run_pgqueuer(dsn, n, processes, batch_size)        -> {"jobs", "seconds", "jobs_s", "config", ...}
    run_procrastinate(dsn, n, processes, concurrency)  -> the same shape
    best_pgqueuer(dsn, n) / best_procrastinate(dsn, n) -> the best run's fields plus "all" (every run)

`dsn` is a libpq URL of a database the function may use freely; the embedded server's Unix-socket form
(`postgresql://postgres:@/db?host=/socket/dir`) works for both psycopg and asyncpg. Each library lives
in its own schema of that database (`peer_pgqueuer`, `peer_procrastinate`, the search_path of every
connection it opens), dropped and recreated at the start of every run, so runs never see each
other's rows and nothing outside that schema is touched. `fresh_database(server_url, name)` creates
(or recreates) a database on the same server when the caller wants one per peer.

How a run is measured, the same way for both libraries:

1. The schema is installed and all N jobs are enqueued in bulk by this process, outside the timing.
2. `processes` worker processes start (`python peers.py --worker CONFIG`), connect, register the no-op
   job handler and say READY; none has touched the queue yet.
3. The clock starts when every worker is told GO at the same moment, and stops at the latest moment a
   worker reports it has finished: the library's own drain mode returned, so every job it took is
   acknowledged in the database (pgqueuer: moved from its queue table to its log; procrastinate:
   `succeeded`). Clocks are CLOCK_MONOTONIC, which is one clock for every process on the host.
   Workers then keep their connections until told EXIT, so their backends' CPU time can be read.
4. Every execution is counted: each worker sends back the ids of the jobs its handler ran; their
   number must be N and no id may repeat. The database is checked too (no job left queued or
   running, N recorded as successful). A run that fails either check raises.

Stragglers are terminated then killed, and any backend still open under the benchmark's
application_name is terminated, whatever happened, so the database is never left locked.

Run alone: `python benchmarks/peers.py [N_PGQUEUER [N_PROCRASTINATE [REPEATS]]]` (default 20000 2000 1)
starts a throwaway embedded server, runs both `best_*` functions and prints one JSON line.
Each result carries the 1-minute load average before it and the CPU seconds that its workers, their
backends and everything else on the machine used during it: on a shared machine, read `cpu.others`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "best_pgqueuer",
    "best_pgqueuer_io",
    "best_procrastinate",
    "fresh_database",
    "run_pgqueuer",
    "run_procrastinate",
]

PGQUEUER_SCHEMA = "peer_pgqueuer"
PROCRASTINATE_SCHEMA = "peer_procrastinate"
APP_NAME = "ordo-bench-peer"  # application_name of every connection a worker opens
ENTRYPOINT = "peers_noop"
READY_TIMEOUT_S = 60.0


# --------------------------------------------------------------------------------------------------
# Databases


def fresh_database(server_url: str, name: str) -> str:
    """Drop (forcibly) and create database `name` on the server of `server_url`; return its URL."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path="/" + name))


def _reset_schema(dsn: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))


def _terminate_leftover_backends(dsn: str) -> None:
    """Close whatever a killed worker may have left open in this database."""
    import psycopg

    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name LIKE %s AND pid <> pg_backend_pid()",
                (APP_NAME + "%",),
            )
    except psycopg.Error:
        pass  # the server is gone: nothing can be locked


# --------------------------------------------------------------------------------------------------
# Worker processes (parent side)


class _Fleet:
    """`processes` worker subprocesses started with one JSON config, released together with GO."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.tmp = tempfile.TemporaryDirectory(prefix="ordo-peers-")
        self.procs: list[subprocess.Popen[str]] = []
        self.lines: list[queue.Queue[str | None]] = []
        self.stderr_files: list[Any] = []

    def start(self, processes: int) -> None:
        config = self.config
        for index in range(processes):
            err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed in close())
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--worker",
                    json.dumps({**config, "index": index, "result_path": str(self._result_path(index))}),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                bufsize=1,
            )
            lines: queue.Queue[str | None] = queue.Queue()
            threading.Thread(target=_pump, args=(proc, lines), daemon=True).start()
            self.procs.append(proc)
            self.lines.append(lines)
            self.stderr_files.append(err)

    def _line(self, index: int, deadline: float) -> str:
        remaining = deadline - time.monotonic()
        try:
            line = self.lines[index].get(timeout=max(remaining, 0.001))
        except queue.Empty:
            raise TimeoutError(f"worker {index} said nothing in time") from None
        if line is None:
            raise RuntimeError(f"worker {index} exited early: {self._stderr(index)}")
        return line

    def _result_path(self, index: int) -> Path:
        return Path(self.tmp.name) / f"worker-{index}.json"

    def _stderr(self, index: int) -> str:
        self.procs[index].wait(timeout=5)
        err = self.stderr_files[index]
        err.seek(0)
        return err.read()[-3000:] or f"exit code {self.procs[index].returncode}"

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for index in range(len(self.procs)):
            line = self._line(index, deadline)
            if line != "READY":
                raise RuntimeError(f"worker {index} said {line!r} instead of READY")

    def go(self) -> float:
        start = time.monotonic()
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write("GO\n")
            proc.stdin.flush()
        return start

    def results(self, timeout: float) -> list[dict[str, Any]]:
        """Wait for every worker's DONE; they then hold their connections open until `release`."""
        deadline = time.monotonic() + timeout
        out = []
        for index in range(len(self.procs)):
            line = self._line(index, deadline)
            if line != "DONE":
                raise RuntimeError(f"worker {index} said {line!r} instead of DONE")
            out.append(json.loads(self._result_path(index).read_text()))
        return out

    def release(self, timeout: float = 60.0) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write("EXIT\n")
            proc.stdin.flush()
        deadline = time.monotonic() + timeout
        for index, proc in enumerate(self.procs):
            proc.wait(timeout=max(deadline - time.monotonic(), 1))
            if proc.returncode != 0:
                raise RuntimeError(f"worker {index} failed: {self._stderr(index)}")

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        for err in self.stderr_files:
            err.close()
        self.tmp.cleanup()


def _pump(proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.put(line.strip())
    lines.put(None)


def _measure(
    *,
    library: str,
    dsn: str,
    n: int,
    processes: int,
    config: dict[str, Any],
    worker_config: dict[str, Any],
    verify: Callable[[], dict[str, int]],
    enqueue_seconds: float,
    timeout: float,
) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    fleet = _Fleet(worker_config)
    try:
        fleet.start(processes)
        fleet.wait_ready(READY_TIMEOUT_S)
        cpu = _CpuMeter(dsn, [proc.pid for proc in fleet.procs])
        start = fleet.go()
        reports = fleet.results(timeout)
        cpu_used = cpu.stop()
        fleet.release()
    finally:
        fleet.close()
        _terminate_leftover_backends(dsn)
    end = max(r["t_end"] for r in reports)
    seconds = end - start
    last_job = max(r["t_last_job"] for r in reports)
    executed = [job_id for r in reports for job_id in r["ids"]]
    if len(executed) != n or len(set(executed)) != n:
        raise RuntimeError(
            f"{library}: {len(executed)} executions of {len(set(executed))} distinct jobs, expected {n}"
        )
    db = verify()
    return {
        "library": library,
        "jobs": n,
        "seconds": round(seconds, 4),
        "jobs_s": round(n / seconds, 1),
        "config": config,
        "enqueue_seconds": round(enqueue_seconds, 3),
        "per_process_jobs": [len(r["ids"]) for r in reports],
        # from the last handler call to the last worker done (acknowledging, exiting its drain loop)
        "tail_seconds": round(end - last_job, 4),
        "executed": len(executed),
        "db": db,
        "load1": round(load_before, 2),
        # CPU seconds over the timed run: the worker processes, their PostgreSQL backends, and the
        # whole machine (busy = not idle); on a shared machine `others` is what other work took.
        "cpu": cpu_used,
    }


def _cpu_total(times: Any) -> float:
    # guest time is already counted in user time on Linux
    return sum(v for k, v in times._asdict().items() if k not in ("guest", "guest_nice"))


class _CpuMeter:
    """CPU time of the worker processes, of their backends (local server) and of the whole machine."""

    def __init__(self, dsn: str, worker_pids: list[int]) -> None:
        import psutil
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name LIKE %s",
                (APP_NAME + "-%",),
            ).fetchall()
        self.groups: dict[str, list[Any]] = {"workers": [], "backends": []}
        for group, pids in (("workers", worker_pids), ("backends", [r[0] for r in rows])):
            for pid in pids:
                with contextlib.suppress(psutil.Error):  # a remote server's backends are not ours to see
                    self.groups[group].append(psutil.Process(pid))
        self.before = {group: [self._used(p) for p in procs] for group, procs in self.groups.items()}
        self.machine_before = psutil.cpu_times()

    @staticmethod
    def _used(proc: Any) -> float:
        try:
            t = proc.cpu_times()
        except Exception:
            return float("nan")
        return t.user + t.system

    def stop(self) -> dict[str, float]:
        import psutil

        machine = psutil.cpu_times()
        out = {}
        for group, procs in self.groups.items():
            used = [self._used(p) - b for p, b in zip(procs, self.before[group], strict=True)]
            out[group] = round(sum(u for u in used if u == u), 3)  # nan: the process is gone
        total = _cpu_total(machine) - _cpu_total(self.machine_before)
        idle = machine.idle - self.machine_before.idle
        busy = total - idle - (getattr(machine, "iowait", 0.0) - getattr(self.machine_before, "iowait", 0.0))
        out["machine_busy"] = round(busy, 3)
        out["machine_total"] = round(total, 3)
        out["others"] = round(max(busy - out["workers"] - out["backends"], 0.0), 3)
        return out


# --------------------------------------------------------------------------------------------------
# pgqueuer


def run_pgqueuer(
    dsn: str,
    n: int,
    processes: int,
    batch_size: int,
    *,
    driver: str = "asyncpg",
    consumers: int = 1,
    max_concurrent_tasks: int | None = None,
    http_url: str | None = None,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Drain `n` no-op pgqueuer jobs with `processes` worker processes, each dequeuing `batch_size`.

    Each process runs `consumers` QueueManagers (one connection each) in `drain` mode on uvloop, as
    pgqueuer's own benchmark does (its default: asyncpg driver, 5 consumers of batch 10 in one
    process). `driver` is "asyncpg" or "psycopg". Tables are pgqueuer's defaults (durable).
    `max_concurrent_tasks` caps the jobs each QueueManager holds at once (pgqueuer's own bound).
    With `http_url`, each job GETs that URL with one aiohttp session per process (connections kept
    alive and pooled) and fails on a non-2xx answer, instead of doing nothing.
    """
    import asyncio

    if driver not in ("asyncpg", "psycopg"):
        raise ValueError(f"unknown driver {driver!r}")
    _reset_schema(dsn, PGQUEUER_SCHEMA)

    async def setup() -> float:
        import asyncpg
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        conn = await asyncpg.connect(
            dsn, server_settings={"search_path": PGQUEUER_SCHEMA, "application_name": APP_NAME}
        )
        try:
            queries = Queries(AsyncpgDriver(conn))
            await queries.install(create_schema=False)
            started = time.monotonic()
            chunk = 10_000
            for offset in range(0, n, chunk):
                size = min(chunk, n - offset)
                await queries.enqueue([ENTRYPOINT] * size, [None] * size, [0] * size)
            return time.monotonic() - started
        finally:
            await conn.close()

    enqueue_seconds = asyncio.run(setup())

    def verify() -> dict[str, int]:
        import psycopg

        with psycopg.connect(dsn, options=f"-c search_path={PGQUEUER_SCHEMA}") as conn:
            left = conn.execute("SELECT count(*) FROM pgqueuer").fetchone()
            done = conn.execute(
                "SELECT count(DISTINCT job_id) FROM pgqueuer_log WHERE status = 'successful'"
            ).fetchone()
        assert left is not None and done is not None
        if left[0] != 0 or done[0] != n:
            raise RuntimeError(
                f"pgqueuer: {left[0]} jobs left in the queue, {done[0]} logged successful of {n}"
            )
        return {"queue_left": left[0], "logged_successful": done[0]}

    config: dict[str, Any] = {
        "processes": processes,
        "batch_size": batch_size,
        "consumers": consumers,
        "driver": driver,
    }
    if max_concurrent_tasks:
        config["max_concurrent_tasks"] = max_concurrent_tasks
    if http_url:
        config["http_url"] = http_url
    return _measure(
        library="pgqueuer",
        dsn=dsn,
        n=n,
        processes=processes,
        config=config,
        worker_config={"library": "pgqueuer", "dsn": dsn, **config},
        verify=verify,
        enqueue_seconds=enqueue_seconds,
        timeout=timeout,
    )


async def _pgqueuer_worker(cfg: dict[str, Any]) -> None:
    import asyncio

    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries
    from pgqueuer.types import QueueExecutionMode

    app_name = f"{APP_NAME}-pgqueuer-{cfg['index']}"
    tally = _Tally()
    managers = []
    client: Any = None
    if cfg.get("http_url"):
        # aiohttp: at 50-100 requests in flight httpx's async pool spends ~8 ms of CPU per request
        # here, aiohttp ~0.2 ms. The peer gets the fastest asyncio client there is.
        import aiohttp

        in_flight = cfg.get("max_concurrent_tasks") or 100
        client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=in_flight), timeout=aiohttp.ClientTimeout(total=30)
        )
    for _ in range(cfg["consumers"]):
        if cfg["driver"] == "asyncpg":
            import asyncpg
            from pgqueuer.db import AsyncpgDriver

            conn = await asyncpg.connect(
                cfg["dsn"], server_settings={"search_path": PGQUEUER_SCHEMA, "application_name": app_name}
            )
            driver: Any = AsyncpgDriver(conn)
        else:
            import psycopg
            from pgqueuer.db import PsycopgDriver

            conn = await psycopg.AsyncConnection.connect(
                cfg["dsn"],
                autocommit=True,
                options=f"-c search_path={PGQUEUER_SCHEMA}",
                application_name=app_name,
            )
            driver = PsycopgDriver(conn)
        qm = QueueManager(Queries(driver))

        if client is None:

            @qm.entrypoint(ENTRYPOINT)
            async def noop(job: Any) -> None:
                tally.hit(job.id)

        else:

            @qm.entrypoint(ENTRYPOINT)
            async def call(job: Any) -> None:
                async with client.get(cfg["http_url"]) as response:
                    response.raise_for_status()
                    await response.read()
                tally.hit(job.id)

        managers.append(qm)

    await _ready_then_go()
    await asyncio.gather(
        *(
            qm.run(
                batch_size=cfg["batch_size"],
                mode=QueueExecutionMode.drain,
                max_concurrent_tasks=cfg.get("max_concurrent_tasks"),
            )
            for qm in managers
        )
    )
    if client is not None:
        await client.close()
    await _done_then_wait(cfg, tally.report(time.monotonic()))


def best_pgqueuer(
    dsn: str,
    n: int,
    configs: Iterable[dict[str, Any]] | None = None,
    *,
    repeats: int = 1,
) -> dict[str, Any]:
    """Run pgqueuer over a grid of configurations (`repeats` times each); return the best run plus all.

    The default grid: batch 10/100/500 x 1/2 processes with one asyncpg consumer per process, and
    pgqueuer's own benchmark setting (5 consumers of batch 10 in one process). The psycopg driver
    (`driver="psycopg"`) is left out: its notification watcher shares the connection with the
    queries and it ran at a third of asyncpg's rate here, as pgqueuer's docs warn (about half there).
    """
    if configs is None:
        configs = [
            *({"processes": p, "batch_size": b} for b in (10, 100, 500) for p in (1, 2)),
            {"processes": 1, "batch_size": 10, "consumers": 5},
        ]
    return _best("pgqueuer", lambda c: run_pgqueuer(dsn, n, **c), configs, repeats)


def best_pgqueuer_io(
    dsn: str,
    n: int,
    http_url: str,
    in_flight: int,
    configs: Iterable[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """pgqueuer jobs that each GET `http_url` (an async client), at most `in_flight` at once in all.

    The bound is the one the compared queue runs under (its workers x concurrency): unbounded,
    pgqueuer would fetch every job at once and the comparison would be of the server's patience.
    The default grid splits the bound over 1 or 2 processes (pgqueuer's max_concurrent_tasks per
    process) with batches from 10 up to half the per-process bound (pgqueuer's own ceiling).
    """
    if configs is None:
        configs = []
        for processes in (1, 2):
            per_process = in_flight // processes
            for batch in (10, 25, 50):
                if 2 * batch <= per_process:
                    configs.append(
                        {"processes": processes, "batch_size": batch, "max_concurrent_tasks": per_process}
                    )
    return _best("pgqueuer", lambda c: run_pgqueuer(dsn, n, **c, http_url=http_url), configs, repeats=1)


# --------------------------------------------------------------------------------------------------
# procrastinate


def _procrastinate_app(dsn: str, pool_size: int, app_name: str, tally: _Tally | None = None) -> Any:
    import procrastinate

    # An App built in a script run as __main__ warns that workers may not import its tasks by path;
    # ours find the task by its explicit name.
    logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)
    connector = procrastinate.PsycopgConnector(
        conninfo=dsn,
        kwargs={"options": f"-c search_path={PROCRASTINATE_SCHEMA}", "application_name": app_name},
        min_size=pool_size,
        max_size=pool_size,
    )
    app = procrastinate.App(connector=connector)

    @app.task(name=ENTRYPOINT, pass_context=True)
    async def noop(context: Any) -> None:
        if tally is not None:
            tally.hit(context.job.id)

    return app


def run_procrastinate(
    dsn: str,
    n: int,
    processes: int,
    concurrency: int,
    *,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Drain `n` no-op procrastinate jobs with `processes` worker processes of `concurrency` each.

    Each process runs `App.run_worker_async(wait=False, concurrency=...)` (procrastinate's drain mode,
    as its own benchmark does) with an async task and a connection pool big enough that no job waits
    for a connection. Jobs are kept after completion (the default `delete_jobs="never"`).
    """
    import asyncio

    _reset_schema(dsn, PROCRASTINATE_SCHEMA)

    async def setup() -> float:
        app = _procrastinate_app(dsn, 1, APP_NAME)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            task = app.tasks[ENTRYPOINT]
            started = time.monotonic()
            chunk = 10_000
            for offset in range(0, n, chunk):
                await task.batch_defer_async(*({} for _ in range(min(chunk, n - offset))))
            return time.monotonic() - started

    enqueue_seconds = asyncio.run(setup())

    def verify() -> dict[str, int]:
        import psycopg

        with psycopg.connect(dsn, options=f"-c search_path={PROCRASTINATE_SCHEMA}") as conn:
            rows = dict(
                conn.execute("SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY 1").fetchall()
            )
        if rows.get("succeeded", 0) != n or sum(rows.values()) != n:
            raise RuntimeError(f"procrastinate: job statuses {rows}, expected {n} succeeded")
        return {"succeeded": rows["succeeded"]}

    config = {"processes": processes, "concurrency": concurrency}
    return _measure(
        library="procrastinate",
        dsn=dsn,
        n=n,
        processes=processes,
        config=config,
        worker_config={"library": "procrastinate", "dsn": dsn, **config},
        verify=verify,
        enqueue_seconds=enqueue_seconds,
        timeout=timeout,
    )


async def _procrastinate_worker(cfg: dict[str, Any]) -> None:
    tally = _Tally()
    # One connection per concurrent job (finishing it), one for fetching, one for the worker's
    # heartbeat and abort polling: no job ever waits for the pool.
    app = _procrastinate_app(
        cfg["dsn"], cfg["concurrency"] + 2, f"{APP_NAME}-procrastinate-{cfg['index']}", tally
    )
    async with app.open_async():
        await _ready_then_go()
        await app.run_worker_async(
            concurrency=cfg["concurrency"],
            wait=False,
            listen_notify=False,  # every job is already queued and wait=False: nothing to wake up for
            install_signal_handlers=False,
        )
        await _done_then_wait(cfg, tally.report(time.monotonic()))


def best_procrastinate(
    dsn: str,
    n: int,
    configs: Iterable[dict[str, Any]] | None = None,
    *,
    repeats: int = 1,
) -> dict[str, Any]:
    """Run procrastinate over a grid of configurations; return the best run plus all.

    procrastinate fetches one job per transaction, and a worker process fetches sequentially
    however high its concurrency, so processes matter more than concurrency: the grid is
    processes 1/2/4 x concurrency 1/10, and 2 x 30. Its cost per job is mostly CPU (about 2 ms in
    the worker and 1.3-2.3 ms in PostgreSQL here, the latter growing with `n` as finished jobs'
    dead entries pile up in the index its fetch walks), so compare peers at the same `n`.
    """
    if configs is None:
        configs = [
            *({"processes": p, "concurrency": c} for c in (1, 10) for p in (1, 2, 4)),
            {"processes": 2, "concurrency": 30},
        ]
    return _best("procrastinate", lambda c: run_procrastinate(dsn, n, **c), configs, repeats)


# --------------------------------------------------------------------------------------------------
# Shared


def _best(
    library: str,
    run: Callable[[dict[str, Any]], dict[str, Any]],
    configs: Iterable[dict[str, Any]],
    repeats: int,
) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for config in configs:
        for _ in range(repeats):
            try:
                runs.append(run(config))
            except Exception as e:  # one bad configuration must not lose the others' figures
                runs.append({"library": library, "config": config, "error": f"{type(e).__name__}: {e}"})
    good = [r for r in runs if "error" not in r]
    if not good:
        raise RuntimeError(f"{library}: every configuration failed: {[r['error'] for r in runs]}")
    best = max(good, key=lambda r: r["jobs_s"])
    return {**best, "all": runs}


class _Tally:
    """What a worker's no-op handler records: the id of every job it ran, and when it ran the last."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.last = 0.0

    def hit(self, job_id: int) -> None:
        self.ids.append(job_id)
        self.last = time.monotonic()

    def report(self, t_end: float) -> dict[str, Any]:
        return {"ids": self.ids, "t_last_job": self.last, "t_end": t_end}


async def _ready_then_go() -> None:
    await _say_and_wait("READY", "GO")


async def _done_then_wait(cfg: dict[str, Any], report: dict[str, Any]) -> None:
    """Hand the report over (a file: 100k ids are no pipe line), keep connections open until EXIT."""
    Path(cfg["result_path"]).write_text(json.dumps(report))
    await _say_and_wait("DONE", "EXIT")


async def _say_and_wait(say: str, expect: str) -> None:
    import asyncio

    print(say, flush=True)
    line = await asyncio.to_thread(sys.stdin.readline)
    if line.strip() != expect:
        raise SystemExit(0)  # the parent gave up on us


def _worker_main(cfg: dict[str, Any]) -> None:
    if cfg["library"] == "pgqueuer":
        import uvloop  # pgqueuer depends on it and runs its worker and benchmark on it

        uvloop.run(_pgqueuer_worker(cfg))
    else:
        import asyncio

        asyncio.run(_procrastinate_worker(cfg))  # what `procrastinate worker` uses


def _main(argv: list[str]) -> None:
    if len(argv) >= 2 and argv[0] == "--worker":
        _worker_main(json.loads(argv[1]))
        return
    n_pgqueuer = int(argv[0]) if argv else 20_000
    n_procrastinate = int(argv[1]) if len(argv) > 1 else 2_000
    repeats = int(argv[2]) if len(argv) > 2 else 1
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from store.embedded import ensure_server

    # A throwaway server of our own; pgserver stops it when this process exits (its data stays, and
    # fresh_database starts each peer from an empty database next time).
    server = ensure_server(Path(tempfile.gettempdir()) / "ordo-peers-bench", database="postgres")
    pgq = best_pgqueuer(fresh_database(server, "peer_pgqueuer"), n_pgqueuer, repeats=repeats)
    pro = best_procrastinate(fresh_database(server, "peer_procrastinate"), n_procrastinate, repeats=repeats)
    print(
        json.dumps(
            {
                "pgqueuer_best_jobs_s": pgq["jobs_s"],
                "pgqueuer_best_config": pgq["config"],
                "procrastinate_best_jobs_s": pro["jobs_s"],
                "procrastinate_best_config": pro["config"],
                "pgqueuer_runs": [_brief(r) for r in pgq["all"]],
                "procrastinate_runs": [_brief(r) for r in pro["all"]],
            }
        )
    )


def _brief(run: dict[str, Any]) -> dict[str, Any]:
    keys = ("config", "jobs", "seconds", "jobs_s", "load1", "cpu", "error")
    return {k: run[k] for k in keys if k in run}


if __name__ == "__main__":
    _main(sys.argv[1:])
