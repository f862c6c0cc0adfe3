"""Bulk task creation: 100,000 tasks by `ordo task add` of one file and by POST /tasks/batch, against
creating them one at a time, in one run.

    python benchmarks/bulk_create.py [--tasks 100000] [--one-by-one 3000] [--batch 1000]

The documents are schedule_expansion.py's mix (cron every 5 and 10 minutes, 5- and 10-minutely RRULEs
with DTSTART a year back, four zones; one pipeline shared by all). Three ways, each into an empty
task table of a fresh database:

- one by one: what storing N tasks cost before batches (`validate` then one INSERT in its own
  transaction per task, as POST /tasks does), on the first --one-by-one documents; its rate is
  reported and extrapolated to --tasks;
- `ordo task add FILE` of a JSON list of all --tasks documents: the real command, timed from start to
  exit (interpreter start-up included);
- POST /tasks/batch through a real `ordo api` (ORDO_API_WORKERS processes; the rate limit raised),
  --batch documents per request, two requests in flight.

Each run checks that the task table holds exactly --tasks rows. Prints a table, then one JSON line:
bulk_cli_s, bulk_api_s, one_by_one_tasks_s and the ratios. Goal: under 30 s for 100,000 tasks each
way. Uses DATABASE_URL's server if set, else an embedded server in .ordo-bench/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from sqlalchemy import text

from benchmarks._common import (
    REPO,
    drop_database,
    free_port,
    fresh_database,
    load_average,
    ordo_command,
    process,
    server_url,
    wait_http,
)
from benchmarks.schedule_expansion import documents
from engine import ToolRegistry
from scheduler import task_document
from store import agents
from store import tasks as store_tasks
from store.db import Database
from store.migrate import migrate

GOAL_S = 30.0


def _count(db: Database) -> int:
    with db.tx() as conn:
        return conn.execute(text("SELECT count(*) FROM task")).scalar_one()


def _empty(db: Database) -> None:
    with db.tx() as conn:
        conn.execute(text("TRUNCATE task CASCADE"))


def one_by_one(db: Database, docs: list[dict[str, Any]], now: datetime) -> float:
    """Tasks per second, each validated and stored in its own transaction."""
    registry = ToolRegistry.load()
    started = time.perf_counter()
    for doc in docs:
        values = task_document.validate(doc, registry, now=now)
        with db.tx() as conn:
            store_tasks.create(conn, values, store_tasks.LOCAL_AGENT_ID)
    return len(docs) / (time.perf_counter() - started)


def cli_add(url: str, path: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        ordo_command("task", "add", str(path)),
        env={**env, "DATABASE_URL": url},
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"`ordo task add` failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds


def api_batches(port: int, token: str, docs: list[dict[str, Any]], batch: int) -> float:
    bodies = [json.dumps({"tasks": docs[i : i + batch]}).encode() for i in range(0, len(docs), batch)]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=120) as client:

        def post(body: bytes) -> None:
            response = client.post("/tasks/batch", content=body)
            if response.status_code != 201:
                raise SystemExit(f"POST /tasks/batch answered {response.status_code}: {response.text[:500]}")

        started = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(post, bodies))
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--one-by-one", type=int, default=3000, help="documents stored one at a time")
    parser.add_argument("--batch", type=int, default=task_document.BATCH_MAX, help="documents per request")
    args = parser.parse_args()

    server = server_url()
    url = fresh_database(server, "bench_bulk")
    db = Database(url, pool_size=2)
    workdir = Path(tempfile.mkdtemp(prefix="ordo-bulk-"))
    env = {**os.environ, "ORDO_LOG_LEVEL": "warning", "ORDO_API_RATE_LIMIT_PER_MIN": str(10**9)}
    now = datetime.now(UTC)
    docs = documents(args.tasks, now)
    results: dict[str, Any] = {"benchmark": "bulk_create", "tasks": args.tasks, "load_before": load_average()}
    try:
        migrate(db)
        with db.tx() as conn:
            agent = agents.ensure_agent(conn, "bulk-bench")
            _, token = agents.create_token(conn, agent["id"], ["tasks:write"], name="benchmark")

        rate = one_by_one(db, docs[: args.one_by_one], now)
        _empty(db)

        path = workdir / "tasks.json"
        path.write_text(json.dumps(docs))
        cli_s = cli_add(url, path, env)
        if _count(db) != args.tasks:
            raise SystemExit(f"`ordo task add` stored {_count(db)} tasks, not {args.tasks}")
        _empty(db)

        port = free_port()
        with process(
            ordo_command("api", "--port", str(port)), {**env, "DATABASE_URL": url}, workdir / "api.log"
        ) as api:
            wait_http(port, api, workdir / "api.log")
            api_s = api_batches(port, token, docs, args.batch)
        if _count(db) != args.tasks:
            raise SystemExit(f"POST /tasks/batch stored {_count(db)} tasks, not {args.tasks}")
    finally:
        db.dispose()
        drop_database(server, url)
        shutil.rmtree(workdir, ignore_errors=True)

    one_by_one_s = args.tasks / rate
    results.update(
        one_by_one_tasks_s=round(rate, 1),
        one_by_one_extrapolated_s=round(one_by_one_s, 1),
        bulk_cli_s=round(cli_s, 2),
        bulk_cli_tasks_s=round(args.tasks / cli_s, 1),
        bulk_api_s=round(api_s, 2),
        bulk_api_tasks_s=round(args.tasks / api_s, 1),
        cli_vs_one_by_one=round(one_by_one_s / cli_s, 2),
        api_vs_one_by_one=round(one_by_one_s / api_s, 2),
        goals_met={"bulk_cli_s": cli_s < GOAL_S, "bulk_api_s": api_s < GOAL_S},
        load_after=load_average(),
    )
    print(f"{'way':<44} {'seconds':>9} {'tasks/s':>9}")
    print(f"{'one by one (extrapolated)':<44} {one_by_one_s:>9.1f} {rate:>9.1f}")
    print(f"{'ordo task add FILE (JSON list)':<44} {cli_s:>9.1f} {args.tasks / cli_s:>9.1f}")
    way = f"POST /tasks/batch, {args.batch} per request"
    print(f"{way:<44} {api_s:>9.1f} {args.tasks / api_s:>9.1f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
