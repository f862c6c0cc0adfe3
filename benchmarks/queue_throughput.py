"""Queue throughput: Ordo against pgqueuer and procrastinate on the same PostgreSQL, in one run.

    python benchmarks/queue_throughput.py [--jobs 50000] [--concurrency 500] [--no-peers]

Ordo: N trivial runs (one-step echo.message pipeline, task_run row written for each) enqueued in one
statement, then drained by 1 and by 2 `ordo worker` processes; enqueue rate in bulk and one run_now
per transaction; run_now start latency on an idle worker (50 samples, database clock: created_at of
the queued run to started_at of its lease). Peers process the same number of no-op jobs
(benchmarks/peers.py, best configuration each). Prints a table, then one JSON line with every figure.
Uses DATABASE_URL's server if set, else an embedded server in .ordo-bench/.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text

from benchmarks._common import (
    REPO,
    drop_database,
    fresh_database,
    load_average,
    percentile,
    server_url,
)
from engine import ToolRegistry
from scheduler import task_document
from store import runs as store_runs
from store import tasks as store_tasks
from store.db import Database
from store.migrate import migrate

TASK = {
    "title": "bench",
    "schedule_kind": "manual",
    "max_retries": 0,
    "payload": {
        "params": {"n": 1},
        "pipeline": [{"id": "say", "uses": "echo.message", "with": {"message": "job ${params.n}"}}],
    },
}


def _workers(
    url: str, count: int, concurrency: int, poll_s: float = 2.0, extra_env: dict[str, str] | None = None
) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "ORDO_LOG_LEVEL": "warning",
        "ORDO_POLL_S": str(poll_s),
        **(extra_env or {}),
    }
    return [
        subprocess.Popen(
            [sys.executable, "-m", "cli.main", "worker", "--concurrency", str(concurrency)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _scalar(db: Database, sql: str) -> int:
    with db.tx() as conn:
        return conn.execute(text(sql)).scalar_one()


def _wait_registered(db: Database, count: int) -> None:
    deadline = time.monotonic() + 60
    while _scalar(db, "SELECT count(*) FROM worker WHERE state = 'running'") < count:
        if time.monotonic() > deadline:
            raise RuntimeError("workers did not start")
        time.sleep(0.1)


def drain(
    db: Database,
    url: str,
    task_id: object,
    jobs: int,
    processes: int,
    concurrency: int,
    extra_env: dict[str, str] | None = None,
) -> dict:
    """Start `processes` workers, enqueue `jobs` runs, time until the queue is empty."""
    with db.tx() as conn:
        conn.execute(text("TRUNCATE task_run; UPDATE worker SET state = 'stopped'"))
    procs = _workers(url, processes, concurrency, extra_env=extra_env)
    try:
        _wait_registered(db, processes)
        time.sleep(0.5)
        with db.tx() as conn:
            store_runs.enqueue(conn, task_id, n=jobs)
        started = time.perf_counter()
        # A cheap probe every 5 ms: the end is seen within 5 ms, at well under 1% of a core.
        with db.raw_connect() as probe:
            while probe.execute("SELECT EXISTS (SELECT 1 FROM due_work)").fetchone()[0]:
                time.sleep(0.005)
        seconds = time.perf_counter() - started
    finally:
        _stop(procs)
    recorded = _scalar(db, "SELECT count(*) FROM task_run")
    distinct = _scalar(db, "SELECT count(DISTINCT run_id) FROM task_run WHERE state = 'succeeded'")
    if recorded != jobs or distinct != jobs:
        raise RuntimeError(f"expected {jobs} runs exactly once, found {recorded} rows / {distinct} runs")
    return {"jobs": jobs, "seconds": round(seconds, 3), "jobs_s": round(jobs / seconds, 1)}


def enqueue_rates(db: Database, task_id: object, jobs: int, singles: int) -> dict:
    started = time.perf_counter()
    with db.tx() as conn:
        store_runs.enqueue(conn, task_id, n=jobs)
    bulk = jobs / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(singles):
        with db.tx() as conn:
            store_runs.enqueue(conn, task_id)
    single = singles / (time.perf_counter() - started)
    with db.tx() as conn:
        conn.execute(text("DELETE FROM due_work"))
    return {"bulk_jobs_s": round(bulk, 1), "single_jobs_s": round(single, 1)}


def run_now_latency(db: Database, url: str, task_id: object, samples: int) -> dict:
    """Idle worker (default poll interval): how long from run_now to the run's lease."""
    procs = _workers(url, 1, 8)
    latencies: list[float] = []
    try:
        _wait_registered(db, 1)
        time.sleep(1.0)
        for _ in range(samples):
            with db.tx() as conn:
                (run_id,) = store_runs.enqueue(conn, task_id)
            deadline = time.monotonic() + 10
            while True:
                with db.tx() as conn:
                    row = conn.execute(
                        text("SELECT started_at - created_at FROM task_run WHERE run_id = :id AND final"),
                        {"id": run_id},
                    ).first()
                if row is not None:
                    latencies.append(row[0].total_seconds() * 1000)
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"run {run_id} did not start within 10 s")
                time.sleep(0.005)
            time.sleep(0.1)  # back to idle
    finally:
        _stop(procs)
    return {
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=50000)
    parser.add_argument("--concurrency", type=int, default=500, help="--concurrency of each ordo worker")
    parser.add_argument("--latency-samples", type=int, default=50)
    parser.add_argument("--no-peers", action="store_true", help="measure Ordo only")
    parser.add_argument("--full-peer-grids", action="store_true", help="every configuration of each peer")
    args = parser.parse_args()

    server = server_url()
    url = fresh_database(server, "bench_ordo")
    results: dict[str, object] = {"jobs": args.jobs, "load_before": round(load_average(), 2)}
    db = Database(url)
    try:
        migrate(db)
        with db.tx() as conn:
            from datetime import UTC, datetime

            values = task_document.validate(TASK, ToolRegistry.load(), now=datetime.now(UTC))
            task_id = store_tasks.create(conn, values, store_tasks.LOCAL_AGENT_ID)["id"]
        enqueue = enqueue_rates(db, task_id, args.jobs, 2000)
        one = drain(db, url, task_id, args.jobs, 1, args.concurrency)
        two = drain(db, url, task_id, args.jobs, 2, args.concurrency)
        latency = run_now_latency(db, url, task_id, args.latency_samples)
    finally:
        db.dispose()
        drop_database(server, url)
    results.update(
        ordo_enqueue_bulk_jobs_s=enqueue["bulk_jobs_s"],
        ordo_enqueue_single_jobs_s=enqueue["single_jobs_s"],
        ordo_1w_jobs_s=one["jobs_s"],
        ordo_2w_jobs_s=two["jobs_s"],
        run_now_latency_ms_p50=latency["p50_ms"],
        run_now_latency_ms_p99=latency["p99_ms"],
        run_now_latency_ms_max=latency["max_ms"],
    )
    rows = [
        ("ordo enqueue (one statement)", enqueue["bulk_jobs_s"], ""),
        ("ordo enqueue (one run_now per transaction)", enqueue["single_jobs_s"], ""),
        ("ordo, 1 worker process", one["jobs_s"], f"concurrency {args.concurrency}"),
        ("ordo, 2 worker processes", two["jobs_s"], f"concurrency {args.concurrency}"),
    ]
    if not args.no_peers:
        from benchmarks import peers

        # procrastinate drains about 200 jobs/s here, so by default only its three strongest
        # configurations run (4x1, 4x10, 2x1 processes x concurrency); --full-peer-grids runs all.
        procrastinate_grid = (
            None
            if args.full_peer_grids
            else [
                {"processes": 4, "concurrency": 1},
                {"processes": 4, "concurrency": 10},
                {"processes": 2, "concurrency": 1},
            ]
        )
        for name, best, grid in (
            ("pgqueuer", peers.best_pgqueuer, None),
            ("procrastinate", peers.best_procrastinate, procrastinate_grid),
        ):
            peer_url = fresh_database(server, f"bench_{name}")
            try:
                outcome = best(peer_url, args.jobs, grid)
            finally:
                drop_database(server, peer_url)
            results[f"{name}_best_jobs_s"] = outcome["jobs_s"]
            results[f"{name}_best_config"] = outcome.get("config")
            results[f"{name}_all"] = outcome.get("all")
            rows.append(
                (f"{name} (best configuration)", outcome["jobs_s"], json.dumps(outcome.get("config")))
            )
        results["ordo_2w_vs_pgqueuer_best"] = round(two["jobs_s"] / results["pgqueuer_best_jobs_s"], 2)
        results["ordo_2w_vs_procrastinate_best"] = round(
            two["jobs_s"] / results["procrastinate_best_jobs_s"], 2
        )
    results["load_after"] = round(load_average(), 2)

    print(f"{'measurement':<46} {'jobs/s':>10}  notes")
    for name, rate, note in rows:
        print(f"{name:<46} {rate:>10.1f}  {note}")
    print(
        f"{'run_now start latency, idle (ms)':<46} p50 {latency['p50_ms']}  "
        f"p99 {latency['p99_ms']}  max {latency['max_ms']}"
    )
    if "ordo_2w_vs_pgqueuer_best" in results:
        print(
            f"ordo (2 workers) / pgqueuer best = {results['ordo_2w_vs_pgqueuer_best']}x, "
            f"/ procrastinate best = {results['ordo_2w_vs_procrastinate_best']}x"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
