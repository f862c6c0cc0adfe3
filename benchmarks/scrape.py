"""Scrape cost on a large queue: the system gauges of /metrics, the KEDA query and GET /status with
1,000,000 rows in due_work (written ahead for the coming week or backing off, about 1,000 due, 128
running) and 1,000,000 in history.

    python benchmarks/scrape.py [--due-work 1000000] [--history 1000000] [--samples 300] [--backlog 50000]

Times, over --samples calls each, from Python through the database and back:
- the system gauges (`store.status.system`, one statement: due runs and their lag by priority band,
  leased runs, workers, the leader): `scrape_ms_p50`, `scrape_ms_p99` — the goal is p99 < 10 ms;
- a whole /metrics body (that read plus rendering the API's registry): `metrics_ms_*`;
- the KEDA trigger's query (ops/k8s/keda.yaml): `keda_ms_*`;
- GET /status's report (`store.status.overview`): `status_ms_*`;
- the gauges and the KEDA query again once a backlog of --backlog runs has become due (their cost
  grows with the runs due, which they count, not with the runs written ahead):
  `backlog_scrape_ms_*`, `backlog_keda_ms_*`;
and, in the same run, the floor and what they replace or avoid:
- a bare round trip (`SELECT 1` in a transaction), the machine's noise floor: `ping_ms_*`;
- the queue read /metrics did before (`GROUP BY state` over due_work): `before_scrape_ms_p50`;
- the last hour's outcomes (part of GET /status) with task_run_finished_idx and without it (index
  scans disabled): `last_hour_ms_*`, `last_hour_no_index_ms_*`;
- what that index costs the hot path: inserting history rows with and without it
  (`history_insert_cost_ratio`, > 1 means slower with the index).
The tables are vacuumed and analysed after loading, as autovacuum would leave them. Prints a table,
then one JSON line. Uses DATABASE_URL's server if set, else .ordo-bench/.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
import yaml
from sqlalchemy import text

from api.metrics import Exposition
from benchmarks._common import drop_database, fresh_database, load_average, median, percentile, server_url
from store import status
from store.db import Database
from store.migrate import migrate
from store.sql import load_queries

REPO = Path(__file__).resolve().parents[1]

FRESH = status.Freshness(worker_s=15.0, leader_s=10.0)

# due_work: 128 running runs (8 workers x 16 slots), about 1,000 due and waiting (a tenth of them
# retries), the rest written ahead for the coming week or retries backing off; a tenth of every kind
# under concurrency keys. History spreads over 30 days.
_SEED = """
INSERT INTO task (id, agent_id, title, schedule_kind, payload)
SELECT gen_random_uuid(), '00000000-0000-0000-0000-000000000001', 'bench ' || g, 'manual', '{"pipeline": []}'
  FROM generate_series(1, 100) AS g;

INSERT INTO due_work (task_id, origin, scheduled_for, run_at, priority, state, attempt, max_attempts,
                      concurrency_key, concurrency_limit, lease_token, lease_until, worker_id, started_at,
                      agent_id)
SELECT ids.a[1 + g % 100], 'manual', w.run_at, w.run_at, 1 + (g % 9), w.state,
       CASE WHEN w.state = 'queued' THEN 0 ELSE 1 END, 3,
       CASE WHEN g % 10 = 0 THEN 'key-' || (g % 50) END, CASE WHEN g % 10 = 0 THEN 2 END,
       CASE WHEN w.state = 'running' THEN gen_random_uuid() END,
       CASE WHEN w.state = 'running' THEN now() + interval '30 seconds' END,
       CASE WHEN w.state = 'running' THEN 'bench-worker-' || (1 + g % 8) END,
       CASE WHEN w.state = 'running' THEN now() END, '00000000-0000-0000-0000-000000000001'
  FROM generate_series(1, :due_work) AS g
  CROSS JOIN (SELECT array_agg(id ORDER BY id) AS a FROM task) AS ids
  CROSS JOIN LATERAL (
       SELECT CASE
                WHEN g <= 128 THEN now() - interval '5 seconds'
                WHEN g % 10000 < 9860
                  THEN now() + make_interval(secs => 60 + (CAST(g AS bigint) * 7919) % 604800)
                WHEN g % 10000 < 9950 THEN now() + make_interval(secs => 1 + (g * 13) % 3600)
                WHEN g % 10000 < 9959 THEN now() - make_interval(secs => (g * 31) % 600)
                WHEN g % 10000 < 9960 THEN now() - make_interval(secs => (g * 17) % 60)
                ELSE now() + make_interval(secs => 600 + (g * 7) % 86400)
              END AS run_at,
              CASE
                WHEN g <= 128 THEN 'running'
                WHEN g % 10000 < 9860 THEN 'queued'
                WHEN g % 10000 < 9950 THEN 'failed'
                WHEN g % 10000 < 9959 THEN 'queued'
                WHEN g % 10000 < 9960 THEN 'failed'
                ELSE 'queued'
              END AS state) AS w;

INSERT INTO task_run (run_id, attempt, task_id, origin, scheduled_for, created_at, priority, max_attempts,
                      state, final, worker_id, started_at, finished_at, steps, output, agent_id)
SELECT 10000000 + g, 1, ids.a[1 + g % 100], 'manual', f.at, f.at, 5, 3,
       CASE WHEN g % 50 = 0 THEN 'dead' WHEN g % 20 = 0 THEN 'failed' ELSE 'succeeded' END,
       g % 20 <> 0 OR g % 50 = 0, 'bench-worker', f.at, f.at + interval '2 milliseconds',
       '[{"id": "say", "uses": "echo.message", "state": "ok", "duration_ms": 0.1}]', '{"message": "hi"}',
       (SELECT agent_id FROM task WHERE id = ids.a[1 + g % 100])
  FROM generate_series(1, :history) AS g
  CROSS JOIN (SELECT array_agg(id ORDER BY id) AS a FROM task) AS ids
  CROSS JOIN LATERAL (SELECT now() - make_interval(secs => 2592000.0 * (:history - g) / :history) AS at) AS f;

INSERT INTO worker (id, hostname, pid, concurrency)
SELECT 'bench-worker-' || g, 'host-' || (g % 4), 1000 + g, 16 FROM generate_series(1, 8) AS g;

INSERT INTO scheduler_leader (scheduler_id, since, heartbeat_at) VALUES ('bench:1', now(), now());
"""

# A backlog: that many runs written ahead become due (as if no worker had run for a while).
_BACKLOG = """
UPDATE due_work SET run_at = now() - make_interval(secs => (id % 600))
 WHERE id IN (SELECT id FROM due_work WHERE state = 'queued' AND run_at > now() ORDER BY id LIMIT :n)"""

_BEFORE = "SELECT state, count(*) AS n, min(run_at) AS oldest_run_at FROM due_work GROUP BY state"


def keda_query() -> str:
    docs = yaml.safe_load_all((REPO / "ops" / "k8s" / "keda.yaml").read_text())
    (scaled,) = [d for d in docs if d and d["kind"] == "ScaledObject"]
    return scaled["spec"]["triggers"][0]["metadata"]["query"]


def _times(call: Callable[[], Any], samples: int) -> list[float]:
    call()  # warm: plans cached, pages in memory
    out = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def _history_insert_ratio(url: str, rows: int, reps: int) -> float:
    """Seconds to insert `rows` history rows with task_run_finished_idx over seconds without it."""
    insert = """
        INSERT INTO task_run (run_id, attempt, task_id, origin, scheduled_for, created_at, priority,
                              max_attempts, state, final, started_at, finished_at, agent_id)
        SELECT 50000000 + %(base)s + g, 1, t.id, 'manual', now(), now(), 5, 3,
               'succeeded', true, now(), now() + make_interval(secs => g / 1000.0), t.agent_id
          FROM generate_series(1, %(rows)s) AS g
          CROSS JOIN (SELECT id, agent_id FROM task LIMIT 1) AS t"""
    timings: dict[bool, list[float]] = {True: [], False: []}
    with psycopg.connect(url, autocommit=True) as conn:
        base = 0
        for rep in range(reps * 2):
            with_index = rep % 2 == 0
            if with_index:
                conn.execute("CREATE INDEX IF NOT EXISTS task_run_finished_idx ON task_run (finished_at)")
            else:
                conn.execute("DROP INDEX IF EXISTS task_run_finished_idx")
            started = time.perf_counter()
            conn.execute(insert, {"base": base, "rows": rows})
            timings[with_index].append(time.perf_counter() - started)
            base += rows
        conn.execute("CREATE INDEX IF NOT EXISTS task_run_finished_idx ON task_run (finished_at)")
    return median(timings[True]) / median(timings[False])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--due-work", type=int, default=1_000_000)
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--backlog", type=int, default=50_000, help="runs made due for the backlog figures")
    args = parser.parse_args()

    server = server_url()
    url = fresh_database(server, "bench_scrape")
    db = Database(url, pool_size=2)
    try:
        migrate(db)
        started = time.perf_counter()
        with db.tx() as conn:
            for statement in _SEED.split(";\n\n"):
                conn.execute(text(statement), {"due_work": args.due_work, "history": args.history})
        with psycopg.connect(db.conninfo, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        load_s = time.perf_counter() - started

        with db.tx() as conn:
            counts = dict(conn.execute(text("SELECT state, count(*) FROM due_work GROUP BY state")).all())
            reading = status.system(conn, FRESH)
        exposition = Exposition()

        def gauges() -> None:
            with db.tx() as conn:
                status.system(conn, FRESH)

        def metrics_body() -> None:
            with db.tx() as conn:
                exposition.render(status.system(conn, FRESH))

        trigger = text(keda_query())

        def keda() -> None:
            with db.tx() as conn:
                conn.execute(trigger).scalar_one()

        def overview() -> None:
            with db.tx() as conn:
                status.overview(conn, FRESH)

        def before() -> None:
            with db.tx() as conn:
                conn.execute(text(_BEFORE)).all()

        # The last hour's outcomes with and without task_run_finished_idx, on a connection that never
        # prepares statements (a prepared plan would ignore the planner settings).
        last_hour = str(load_queries("store", "status.sql")["runs_last_hour"])
        plain = psycopg.connect(db.conninfo, autocommit=True, prepare_threshold=None)

        def last_hour_indexed() -> None:
            plain.execute(last_hour).fetchall()

        def last_hour_scanned() -> None:
            with plain.transaction():
                plain.execute("SET LOCAL enable_indexscan = off")
                plain.execute("SET LOCAL enable_bitmapscan = off")
                plain.execute(last_hour).fetchall()

        def ping() -> None:
            with db.tx() as conn:
                conn.execute(text("SELECT 1")).one()

        n = args.samples
        timings = {
            "ping": _times(ping, n),
            "scrape": _times(gauges, n),
            "metrics": _times(metrics_body, n),
            "keda": _times(keda, n),
            "status": _times(overview, n),
            "before_scrape": _times(before, max(5, n // 20)),
            "last_hour": _times(last_hour_indexed, n),
            "last_hour_no_index": _times(last_hour_scanned, max(5, n // 20)),
        }
        with db.tx() as conn:
            conn.execute(text(_BACKLOG), {"n": args.backlog})
        with psycopg.connect(db.conninfo, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE due_work")
        with db.tx() as conn:
            backlog_due = status.system(conn, FRESH).due_total
        timings["backlog_scrape"] = _times(gauges, n)
        timings["backlog_keda"] = _times(keda, n)
        plain.close()
        insert_ratio = _history_insert_ratio(db.conninfo, rows=20_000, reps=5)
    finally:
        db.dispose()
        drop_database(server, url)

    results: dict[str, Any] = {
        "due_work_rows": args.due_work,
        "history_rows": args.history,
        "due_now": reading.due_total,
        "backlog_due_now": backlog_due,
        "due_work_by_state": counts,
        "load_s": round(load_s, 1),
    }
    print(
        f"due_work {args.due_work:,} rows ({counts}), history {args.history:,}; {reading.due_total:,} due now"
    )
    print(f"{'read':<18}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for name, values in timings.items():
        p50, p99 = percentile(values, 50), percentile(values, 99)
        print(f"{name:<18}{p50:>10.2f}{p99:>10.2f}{max(values):>10.2f}")
        results[f"{name}_ms_p50"] = round(p50, 3)
        results[f"{name}_ms_p99"] = round(p99, 3)
    results["scrape_vs_before_p50"] = round(results["scrape_ms_p50"] / results["before_scrape_ms_p50"], 4)
    results["last_hour_vs_no_index_p50"] = round(
        results["last_hour_ms_p50"] / results["last_hour_no_index_ms_p50"], 4
    )
    results["history_insert_cost_ratio"] = round(insert_ratio, 3)
    results["goal_scrape_ms_p99"] = 10
    results["load_average"] = round(load_average(), 2)
    print(
        f"scrape p99 {results['scrape_ms_p99']} ms (goal < 10); the old GROUP BY read: "
        f"{results['before_scrape_ms_p50']} ms p50; history insert with/without the finished_at index: "
        f"{results['history_insert_cost_ratio']}x"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
