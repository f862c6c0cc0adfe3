"""Schedule expansion: one scheduler tick over 10,000 active RRULE and cron tasks.

    python benchmarks/schedule_expansion.py [--tasks 10000] [--horizon-s 600]

Measures the first tick (every task parsed and expanded over a 10-minute horizon, occurrences written
to due_work) and steady ticks (nothing new to write). Every task fires inside the horizon, so the
first tick parses and expands all of them: cron every 5 and every 10 minutes, and 5- and 10-minutely
RRULEs whose DTSTART is a year back (a rule dateutil would otherwise iterate from its start), in four
zones. Prints a table, then one JSON line. Uses DATABASE_URL's server if set, else .ordo-bench/.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import structlog
from sqlalchemy import text

from benchmarks._common import drop_database, fresh_database, load_average, server_url
from engine import ToolRegistry
from scheduler import task_document
from scheduler.service import SchedulerConfig, SchedulerService
from store import tasks as store_tasks
from store.db import Database
from store.migrate import migrate

ZONES = ["Europe/Chisinau", "America/New_York", "Asia/Tokyo", "UTC"]
PAYLOAD = {"pipeline": [{"id": "say", "uses": "echo.message", "with": {"message": "tick"}}]}


def _schedule(i: int, rng: random.Random, year_ago: datetime) -> tuple[str, str]:
    kind = i % 4
    if kind == 0:
        return "cron", f"{rng.randrange(5)}-59/5 * * * *"
    if kind == 1:
        return "cron", f"{rng.randrange(10)}-59/10 * * * *"
    dtstart = (year_ago + timedelta(minutes=rng.randrange(10))).strftime("%Y%m%dT%H%M%S")
    if kind == 2:
        return "rrule", f"DTSTART:{dtstart}\nRRULE:FREQ=MINUTELY;INTERVAL=5"
    return "rrule", f"DTSTART:{dtstart}\nRRULE:FREQ=MINUTELY;INTERVAL=10"


def documents(count: int, now: datetime) -> list[dict[str, Any]]:
    """`count` task documents of the benchmark's mix (the same for the same count)."""
    rng = random.Random(42)
    year_ago = (now - timedelta(days=365)).replace(second=0, microsecond=0)
    docs = []
    for i in range(count):
        kind, expr = _schedule(i, rng, year_ago)
        docs.append(
            {
                "title": f"task {i}",
                "schedule_kind": kind,
                "schedule_expr": expr,
                "timezone": ZONES[i % 4],
                "payload": PAYLOAD,
            }
        )
    return docs


def seed(db: Database, count: int, now: datetime) -> None:
    """The tasks, created as `ordo task add` of one file does (validated as a batch, bulk-inserted)."""
    values = task_document.validate_many(documents(count, now), ToolRegistry.load(), now=now)
    with db.tx() as conn:
        store_tasks.create_many(conn, values, store_tasks.LOCAL_AGENT_ID)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=10000)
    parser.add_argument("--horizon-s", type=float, default=600)
    parser.add_argument("--steady-ticks", type=int, default=20)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))

    server = server_url()
    url = fresh_database(server, "bench_sched")
    db = Database(url)
    try:
        migrate(db)
        now = datetime.now(UTC)
        seed_started = time.perf_counter()
        seed(db, args.tasks, now)
        seed_s = time.perf_counter() - seed_started
        with db.tx() as conn:
            conn.execute(text("ANALYZE task"))
        service = SchedulerService(
            db, SchedulerConfig(horizon_s=args.horizon_s), structlog.get_logger(), "bench"
        )
        service.try_lead()
        first = service.tick(now=now)
        steady = []
        for i in range(args.steady_ticks):
            steady.append(service.tick(now=now + timedelta(milliseconds=10 * (i + 1))).duration_s)
        # A sliding tick one second later: tasks whose next occurrence just entered the horizon.
        sliding = service.tick(now=now + timedelta(seconds=1))
        queued = db.engine.connect().execute(text("SELECT count(*) FROM due_work")).scalar_one()
        service.step_down()
    finally:
        db.dispose()
        drop_database(server, url)
    results = {
        "tasks": args.tasks,
        "horizon_s": args.horizon_s,
        "first_tick_s": round(first.duration_s, 3),
        "first_tick_tasks": first.tasks,
        "first_tick_occurrences": first.queued,
        "steady_tick_ms_median": round(statistics.median(steady) * 1000, 2),
        "steady_tick_ms_max": round(max(steady) * 1000, 2),
        "sliding_tick_ms": round(sliding.duration_s * 1000, 2),
        "sliding_tick_tasks": sliding.tasks,
        "due_work_rows": queued,
        "seed_s": round(seed_s, 1),
        "load": round(load_average(), 2),
    }
    print(f"{'measurement':<40} {'value':>12}")
    print(
        f"{'first tick (' + str(int(args.horizon_s)) + ' s horizon)':<40} {results['first_tick_s']:>10} s"
        f"   {first.tasks} tasks, {first.queued} occurrences"
    )
    print(f"{'steady tick, nothing new (median)':<40} {results['steady_tick_ms_median']:>9} ms")
    print(f"{'steady tick, nothing new (max)':<40} {results['steady_tick_ms_max']:>9} ms")
    print(f"{'sliding tick (+1 s)':<40} {results['sliding_tick_ms']:>9} ms   {sliding.tasks} tasks")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
