"""Urgent work under load: how soon a priority-9 run_now starts while workers drain a big backlog.

    python benchmarks/run_now_under_load.py [--backlog 200000] [--workers 2] [--concurrency 500]
                                            [--samples 50]

Two tasks with one-step echo.message pipelines: a bulk one (priority 5) with --backlog runs queued in
one statement, and an urgent one (priority 9). --workers `ordo worker` processes start draining the
backlog; then, one at a time, a run_now of the urgent task is queued (its own transaction, as
POST /tasks/{id}/run_now does) and the benchmark waits until it has finished before the next, 20 ms
later. A sample is the time from the urgent run's creation (due_work.created_at) to its step's start
(steps[0].started_at), both on the database's clock. A sample counts only if bulk runs were still
queued when it ended; should the backlog run out first, another --backlog runs are queued and
sampling goes on (reported as refills).

Prints a table, then one JSON line with run_now_under_load_ms_p50/p99/max, the drain rate over the
sampling window and the load average. Uses DATABASE_URL's server if set, else .ordo-bench/.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text

from benchmarks._common import drop_database, fresh_database, load_average, percentile, server_url
from benchmarks.queue_throughput import _stop, _wait_registered, _workers
from engine import ToolRegistry
from scheduler import task_document
from store import runs as store_runs
from store import tasks as store_tasks
from store.db import Database
from store.migrate import migrate


def _task(title: str, priority: int) -> dict[str, Any]:
    return {
        "title": title,
        "schedule_kind": "manual",
        "priority": priority,
        "max_retries": 0,
        "payload": {"pipeline": [{"id": "say", "uses": "echo.message", "with": {"message": title}}]},
    }


# psycopg statements for the probe connection (a raw psycopg connection: no SQLAlchemy per poll).
_STARTED = (
    "SELECT CAST(steps->0->>'started_at' AS timestamptz) - created_at FROM task_run"
    " WHERE run_id = %(id)s AND final"
)
_BACKLOG_LEFT = "SELECT EXISTS (SELECT 1 FROM due_work WHERE task_id = %(task_id)s)"
_FINISHED = text("SELECT count(*) FROM task_run WHERE task_id = :task_id")


def _sample(db: Database, urgent: object, bulk: object) -> tuple[float, bool]:
    """Queue one urgent run; wait for it to finish. Its creation-to-step-start time in ms, and
    whether bulk runs were still waiting when it was done."""
    with db.tx() as conn:
        (run_id,) = store_runs.enqueue(conn, urgent)
    deadline = time.monotonic() + 30
    with db.raw_connect() as probe:
        while True:
            row = probe.execute(_STARTED, {"id": run_id}).fetchone()
            if row is not None:
                (loaded,) = probe.execute(_BACKLOG_LEFT, {"task_id": bulk}).fetchone() or (False,)
                return row[0].total_seconds() * 1000, bool(loaded)
            if time.monotonic() > deadline:
                raise RuntimeError(f"urgent run {run_id} did not finish within 30 s")
            time.sleep(0.002)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backlog", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=500, help="--concurrency of each ordo worker")
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()

    server = server_url()
    url = fresh_database(server, "bench_urgent")
    db = Database(url)
    results: dict[str, Any] = {
        "benchmark": "run_now_under_load",
        "backlog": args.backlog,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "load_before": round(load_average(), 2),
    }
    procs = []
    try:
        migrate(db)
        registry, now = ToolRegistry.load(), datetime.now(UTC)
        with db.tx() as conn:
            bulk = store_tasks.create(
                conn,
                task_document.validate(_task("bulk", 5), registry, now=now),
                store_tasks.LOCAL_AGENT_ID,
            )["id"]
            urgent = store_tasks.create(
                conn,
                task_document.validate(_task("urgent", 9), registry, now=now),
                store_tasks.LOCAL_AGENT_ID,
            )["id"]
        procs = _workers(url, args.workers, args.concurrency)
        _wait_registered(db, args.workers)
        time.sleep(0.5)
        with db.tx() as conn:
            store_runs.enqueue(conn, bulk, n=args.backlog)
        started = time.perf_counter()
        time.sleep(0.2)  # the workers are at full speed
        latencies: list[float] = []
        refills = discarded = 0
        with db.tx() as conn:
            drained_before = conn.execute(_FINISHED, {"task_id": bulk}).scalar_one()
        window_start = time.perf_counter()
        while len(latencies) < args.samples:
            ms, loaded = _sample(db, urgent, bulk)
            if loaded:
                latencies.append(ms)
            else:
                discarded += 1
                refills += 1
                with db.tx() as conn:
                    store_runs.enqueue(conn, bulk, n=args.backlog)
            time.sleep(0.02)
        window_s = time.perf_counter() - window_start
        with db.tx() as conn:
            drained = conn.execute(_FINISHED, {"task_id": bulk}).scalar_one() - drained_before
        elapsed = time.perf_counter() - started
    finally:
        _stop(procs)
        db.dispose()
        drop_database(server, url)
    results.update(
        samples=len(latencies),
        run_now_under_load_ms_p50=round(percentile(latencies, 50), 2),
        run_now_under_load_ms_p99=round(percentile(latencies, 99), 2),
        run_now_under_load_ms_max=round(max(latencies), 2),
        bulk_runs_s_while_sampling=round(drained / window_s, 1),
        sampling_s=round(window_s, 2),
        elapsed_s=round(elapsed, 2),
        refills=refills,
        discarded_samples=discarded,
        load_after=round(load_average(), 2),
    )
    print(f"{'measurement':<48} value")
    print(
        f"{'run_now start under load (ms)':<48} p50 {results['run_now_under_load_ms_p50']}  "
        f"p99 {results['run_now_under_load_ms_p99']}  max {results['run_now_under_load_ms_max']}"
    )
    print(f"{'bulk runs drained while sampling (runs/s)':<48} {results['bulk_runs_s_while_sampling']}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
