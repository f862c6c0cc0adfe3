"""Steps that wait on I/O: runs whose one step is an HTTP call answered after 100 ms, Ordo against
pgqueuer making the same call, in one run.

    python benchmarks/io_bound.py [--runs 10000] [--workers 2] [--concurrency 50] [--delay-s 0.1]
                                  [--no-peers]

A local asynchronous server (benchmarks/_slow_server.py) answers every GET after --delay-s. Ordo:
--runs runs of a task whose pipeline is one `http.request` step to that server, queued in one
statement and drained by --workers `ordo worker --concurrency N` processes (the server's address
opened with ORDO_OUTBOUND_ALLOW, as a deployment would); every run must be recorded succeeded
exactly once. The ideal is workers x concurrency / delay runs a second (1,000/s by default): every
slot always waiting on the server. pgqueuer drains the same number of jobs, each making the same GET
with an aiohttp session (the fastest asyncio client), under the same bound of workers x concurrency
calls in flight, at its best split over processes and batch sizes (benchmarks/peers.py). The server
counts the calls it answered: each side must have made exactly one per run.

Prints a table, then one JSON line: io_runs_s, io_ideal_runs_s, io_vs_ideal, pgqueuer_io_runs_s,
io_vs_pgqueuer, the load average around the run. Uses DATABASE_URL's server if set, else an embedded
server in .ordo-bench/.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from benchmarks._common import REPO, drop_database, free_port, fresh_database, load_average, server_url
from benchmarks.queue_throughput import drain
from engine import ToolRegistry
from scheduler import task_document
from store import tasks as store_tasks
from store.db import Database
from store.migrate import migrate


def _task(url: str) -> dict[str, Any]:
    return {
        "title": "io-bound bench",
        "schedule_kind": "manual",
        "max_retries": 0,
        "payload": {
            "pipeline": [{"id": "call", "uses": "http.request", "with": {"url": url, "timeout_s": 10}}]
        },
    }


class SlowServer:
    """benchmarks/_slow_server.py in its own process, so its CPU is not the benchmark's."""

    def __init__(self, delay_s: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/work"
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "benchmarks" / "_slow_server.py"), str(self.port), str(delay_s)],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "READY":
            raise RuntimeError("the slow server did not start")

    def answered(self) -> int:
        return httpx.get(f"http://127.0.0.1:{self.port}/count", timeout=10).json()["answered"]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def ordo_io(server: str, slow: SlowServer, runs: int, workers: int, concurrency: int) -> dict[str, Any]:
    url = fresh_database(server, "bench_io")
    db = Database(url)
    try:
        migrate(db)
        values = task_document.validate(_task(slow.url), ToolRegistry.load(), now=datetime.now(UTC))
        with db.tx() as conn:
            task_id = store_tasks.create(conn, values, store_tasks.LOCAL_AGENT_ID)["id"]
        before = slow.answered()
        outcome = drain(
            db,
            url,
            task_id,
            runs,
            workers,
            concurrency,
            extra_env={"ORDO_OUTBOUND_ALLOW": f"127.0.0.1:{slow.port}"},
        )
        calls = slow.answered() - before
    finally:
        db.dispose()
        drop_database(server, url)
    if calls != runs:
        raise RuntimeError(f"ordo made {calls} calls for {runs} runs")
    return outcome


def pgqueuer_io(server: str, slow: SlowServer, runs: int, in_flight: int) -> dict[str, Any]:
    from benchmarks import peers

    url = fresh_database(server, "bench_io_pgqueuer")
    try:
        outcome = peers.best_pgqueuer_io(url, runs, slow.url, in_flight)
    finally:
        drop_database(server, url)
    calls = slow.answered()
    return {**outcome, "calls_answered_so_far": calls}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2, help="ordo worker processes")
    parser.add_argument("--concurrency", type=int, default=50, help="--concurrency of each ordo worker")
    parser.add_argument("--delay-s", type=float, default=0.1, help="how long the server takes to answer")
    parser.add_argument("--no-peers", action="store_true", help="measure Ordo only")
    args = parser.parse_args()

    server = server_url()
    ideal = args.workers * args.concurrency / args.delay_s
    results: dict[str, Any] = {
        "benchmark": "io_bound",
        "runs": args.runs,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "delay_s": args.delay_s,
        "load_before": round(load_average(), 2),
    }
    slow = SlowServer(args.delay_s)
    try:
        ordo = ordo_io(server, slow, args.runs, args.workers, args.concurrency)
        results.update(
            io_runs_s=ordo["jobs_s"],
            io_seconds=ordo["seconds"],
            io_ideal_runs_s=round(ideal, 1),
            io_vs_ideal=round(ordo["jobs_s"] / ideal, 3),
        )
        rows = [("ordo", ordo["jobs_s"], f"{args.workers} workers x concurrency {args.concurrency}")]
        if not args.no_peers:
            answered_before = slow.answered()
            peer = pgqueuer_io(server, slow, args.runs, args.workers * args.concurrency)
            calls = peer["calls_answered_so_far"] - answered_before
            drains = len(peer["all"])
            if all("error" not in r for r in peer["all"]) and calls != args.runs * drains:
                raise RuntimeError(f"pgqueuer made {calls} calls in {drains} drains of {args.runs} jobs")
            results.update(
                pgqueuer_io_runs_s=peer["jobs_s"],
                pgqueuer_io_config=peer["config"],
                pgqueuer_io_all=[
                    {k: r.get(k) for k in ("config", "jobs_s", "seconds", "load1", "error") if k in r}
                    for r in peer["all"]
                ],
                io_vs_pgqueuer=round(ordo["jobs_s"] / peer["jobs_s"], 3),
            )
            rows.append(("pgqueuer (best configuration)", peer["jobs_s"], json.dumps(peer["config"])))
    finally:
        slow.close()
    results["load_after"] = round(load_average(), 2)

    print(f"{'measurement':<34} {'runs/s':>9}  notes")
    print(f"{'ideal (slots / delay)':<34} {ideal:>9.1f}")
    for name, rate, note in rows:
        print(f"{name:<34} {rate:>9.1f}  {note}")
    print(f"ordo / ideal = {results['io_vs_ideal']}", end="")
    if "io_vs_pgqueuer" in results:
        print(f", ordo / pgqueuer = {results['io_vs_pgqueuer']}x", end="")
    print()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
