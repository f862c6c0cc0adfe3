"""Web console: how long each page takes to be usable with 1,000 tasks and 100,000 runs stored.

`./ops/bench console [--tasks N] [--runs N] [--samples N]`. Seeds one agent's 1,000 tasks (RRULE,
cron and manual) and 100,000 finished runs (a month of history) directly in PostgreSQL, a plant of
200 machines with four weeks of generated availability (for the heatmap, 200 x 14 days), a real plan
run (la01 solved by solver.solve and checked by schedule.validate, executed by `ordo worker`) and a
1,000-operation plan record (200 jobs x 5 operations on 20 machines, list-scheduled here: a plan at
factory size for the Gantt chart, which the solver's own benchmarks cover). Then `ordo api` serves
the console and Debian's Chromium (headless, through Playwright) opens each page.

"Usable" is the page's own User Timing mark `ordo:ready`, set when its main content is drawn from
the API's answers. Two figures per page, medians of --samples loads:
  cold: a new browser context (empty cache), from navigation start: HTML, CSS, modules, sign-in
        check and the page's API calls;
  warm: moving to the page from another console page (hash change) in a loaded tab.
Goal: every page usable in under 1 s. Last line: JSON with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (
    REPO,
    drop_database,
    free_port,
    fresh_database,
    median,
    ordo_command,
    percentile,
    process,
    server_url,
    wait_http,
)
from engine.tools import plant
from engine.tools.jobshop_format import parse_jobshop
from store import agents
from store.db import Database
from store.migrate import migrate

GOAL_MS = 1000.0
FLAGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCHEDULES = [
    ("rrule", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=5;BYMINUTE=30"),
    ("rrule", "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1;BYHOUR=18;BYMINUTE=0"),
    ("cron", "*/15 * * * *"),
    ("cron", "0 6 * * 1-5"),
    ("manual", ""),
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--pages", default="", help="Comma-separated page names to measure (default: all).")
    args = parser.parse_args()
    chromium = os.environ.get("ORDO_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(chromium, os.X_OK):
        raise SystemExit("Chromium is needed: apt-get install -y chromium (or set ORDO_TEST_CHROMIUM)")

    server = server_url()
    url = fresh_database(server, "bench_console")
    workdir = REPO / ".ordo-bench" / "console"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        db = Database(url, pool_size=2)
        migrate(db)
        started = time.perf_counter()
        seeded = _seed(db, args.tasks, args.runs)
        seed_s = time.perf_counter() - started
        print(f"seeded {args.tasks} tasks and {args.runs:,} runs in {seed_s:.1f} s", file=sys.stderr)
        env = {**os.environ, "DATABASE_URL": url, "ORDO_LOG_LEVEL": "warning", "ORDO_POLL_S": "0.2"}
        with process(ordo_command("worker", "--concurrency", "1"), env, workdir / "worker.log"):
            _wait_runs_done(db, seeded["plan_run"])
        port = free_port()
        env.update(ORDO_API_PORT=str(port), ORDO_API_RATE_LIMIT_PER_MIN="1000000")
        with process(ordo_command("api"), env, workdir / "api.log") as api:
            wait_http(port, api, workdir / "api.log")
            only = [p for p in args.pages.split(",") if p]
            results = _measure(chromium, f"http://127.0.0.1:{port}", seeded, args.samples, only)
        db.dispose()
    finally:
        drop_database(server, url)

    baseline = results.pop("_baseline")
    print(f"\n{'page':<22}{'cold median':>13}{'cold p95':>11}{'warm median':>13}{'warm p95':>11}  goal")
    for name, r in results.items():
        ok = max(r["cold_ms_median"], r["warm_ms_median"]) < GOAL_MS
        print(
            f"{name:<22}{r['cold_ms_median']:>10.0f} ms{r['cold_ms_p95']:>8.0f} ms"
            f"{r['warm_ms_median']:>10.0f} ms{r['warm_ms_p95']:>8.0f} ms  {'met' if ok else 'MISSED'}"
        )
    print(
        f"\nshell (HTML, CSS, modules; no API call yet): {baseline['shell_ms_median']:.0f} ms median; "
        "a bare navigation to one small JSON document in a fresh context: "
        f"{baseline['bare_load_ms_median']:.0f} ms"
    )
    figures: dict[str, Any] = {"tasks": args.tasks, "runs": args.runs, "samples": args.samples}
    figures["shell_cold_ms"] = round(baseline["shell_ms_median"], 1)
    figures["bare_load_ms"] = round(baseline["bare_load_ms_median"], 1)
    for name, r in results.items():
        figures[f"{name}_cold_ms"] = round(r["cold_ms_median"], 1)
        figures[f"{name}_warm_ms"] = round(r["warm_ms_median"], 1)
    figures["worst_ms"] = round(
        max(max(r["cold_ms_median"], r["warm_ms_median"]) for r in results.values()), 1
    )
    figures["goal_ms"] = GOAL_MS
    figures["goal_met"] = figures["worst_ms"] < GOAL_MS
    print(json.dumps(figures))


# -- seeding --------------------------------------------------------------------------------------


def _seed(db: Database, n_tasks: int, n_runs: int) -> dict[str, Any]:
    """Tasks through the store (validated like any task); history by one INSERT ... SELECT."""
    from engine import ToolRegistry
    from scheduler import task_document
    from store import runs as store_runs
    from store import tasks as store_tasks

    registry = ToolRegistry.load()
    now = datetime.now(UTC)
    la01 = parse_jobshop((REPO / "catalogs/examples/jobshop/la01.txt").read_text())
    with db.tx() as conn:
        agent = agents.ensure_agent(conn, "planner")
        _, token = agents.create_token(
            conn,
            agent["id"],
            ["tasks:read", "tasks:write", "runs:read", "availability:read", "availability:write"],
            name="bench",
        )
        plant.apply_document(conn, agent["id"], document=_plant_document())
        ids = []
        for i in range(n_tasks):
            kind, expr = SCHEDULES[i % len(SCHEDULES)]
            doc = {
                "title": f"Line {i % 40} report {i}",
                "description": "Reshape the shift's figures and send them to the MES.",
                "schedule_kind": kind,
                "schedule_expr": expr,
                "timezone": "Europe/Chisinau",
                "payload": {"pipeline": [{"id": "say", "uses": "echo.message", "with": {"message": "hi"}}]},
            }
            values = task_document.validate(doc, registry, now=now)
            ids.append(store_tasks.create(conn, values, agent["id"])["id"])
        plan_doc = {
            "title": "Solve la01",
            "schedule_kind": "manual",
            "payload": {
                "params": {"problem": la01},
                "pipeline": [
                    {"id": "plan", "uses": "solver.solve", "with": {"jobs": "${params.problem.jobs}"}},
                    {
                        "id": "check",
                        "uses": "schedule.validate",
                        "with": {"problem": "${params.problem}", "plan": "${steps.plan}"},
                    },
                ],
            },
        }
        plan_task = store_tasks.create(conn, task_document.validate(plan_doc, registry, now=now), agent["id"])
        # A month of finished history, oldest first, spread over the tasks; ids below the queue's.
        conn.execute(
            text(
                """
                INSERT INTO task_run (run_id, attempt, task_id, origin, scheduled_for, created_at, priority,
                                      max_attempts, state, final, worker_id, started_at, finished_at, steps,
                                      output, error, agent_id)
                SELECT g, 1, (CAST(:ids AS uuid[]))[1 + g % cardinality(CAST(:ids AS uuid[]))], 'schedule',
                       at, at, 5, 4, st, true, 'bench:1:w',
                       CASE WHEN st IN ('canceled', 'skipped') THEN NULL ELSE at END,
                       at + interval '40 milliseconds',
                       jsonb_build_array(jsonb_build_object('id', 'say', 'uses', 'echo.message', 'state',
                           CASE WHEN st = 'dead' THEN 'failed' ELSE 'ok' END, 'duration_ms', 0.4,
                           'started_at', at, 'output', jsonb_build_object('message', 'hi'))),
                       NULL,
                       CASE WHEN st = 'dead' THEN jsonb_build_object('code', 'TOOL_ERROR',
                           'message', 'the MES answered 503', 'step', 'say') END,
                       CAST(:agent AS uuid)
                  FROM generate_series(1, :n) AS g,
                       LATERAL (SELECT CAST(:now AS timestamptz) - make_interval(secs => (:n - g) * :gap)
                                         AS at,
                                       CASE WHEN g % 50 = 0 THEN 'dead' WHEN g % 97 = 0 THEN 'canceled'
                                            ELSE 'succeeded' END AS st) AS x
                """
            ),
            {
                "ids": [str(i) for i in ids],
                "agent": agent["id"],
                "n": n_runs,
                "now": now - timedelta(minutes=1),
                "gap": 30 * 86400 / n_runs,
            },
        )
        conn.execute(text(f"ALTER TABLE due_work ALTER COLUMN id RESTART WITH {n_runs + 1}"))
        conn.execute(
            text(
                """
                INSERT INTO task_run (run_id, attempt, task_id, origin, scheduled_for, created_at, priority,
                                      max_attempts, state, final, worker_id, started_at, finished_at, steps,
                                      agent_id)
                VALUES (:id, 1, :task, 'manual', :at, :at, 5, 1, 'succeeded', true, 'bench:1:w', :at, :at,
                        CAST(:steps AS jsonb), :agent)
                """
            ),
            {
                "id": n_runs + 500_000,
                "task": plan_task["id"],
                "agent": agent["id"],
                "at": now,
                "steps": json.dumps(_big_plan_steps()),
            },
        )
        (plan_run,) = store_runs.enqueue(conn, plan_task["id"])
    # Four weeks of the plant's shifts from today, as schedule.generate stores them.
    today = now.date()
    plant.run_generation(db, agent["id"], today, today + timedelta(days=27))
    with db.tx() as conn:
        conn.execute(text("ANALYZE"))
    return {
        "token": token,
        "task_id": str(ids[0]),
        "plan_run": plan_run,
        "big_plan_run": n_runs + 500_000,
        "finished_run": n_runs // 2,
    }


def _plant_document() -> dict[str, Any]:
    """200 machines (4 areas x 5 lines x 10) on two shifts at a site with South African holidays."""
    areas = [
        {
            "code": f"AREA-{a}",
            "level": "area",
            "children": [
                {
                    "code": f"LINE-{a}{line}",
                    "level": "work_center",
                    "children": [{"code": f"M-{a}{line}{u:02d}", "level": "work_unit"} for u in range(10)],
                }
                for line in range(5)
            ],
        }
        for a in range(4)
    ]
    site = {
        "code": "JHB",
        "level": "site",
        "timezone": "Africa/Johannesburg",
        "holiday_calendar": "za",
        "children": areas,
    }
    return {
        "holiday_calendars": [{"name": "za", "country": "ZA"}],
        "resources": [{"code": "ACME", "level": "enterprise", "children": [site]}],
        "assignments": [{"resource": "JHB", "pattern": "two_shift", "effective_from": "2025-01-01"}],
    }


def _big_plan_steps() -> list[dict[str, Any]]:
    """200 jobs x 5 operations on 20 machines, placed by a greedy list scheduler (earliest start)."""
    rng = random.Random(7)
    machine_free = [0] * 20
    assignments = []
    for j in range(200):
        t = rng.randrange(0, 600)
        for o in range(5):
            m = rng.randrange(20)
            start = max(t, machine_free[m])
            end = start + rng.randrange(20, 240)
            machine_free[m] = t = end
            assignments.append(
                {
                    "job": f"WO-{1000 + j}",
                    "operation": f"op{o + 1}",
                    "machine": f"press-{m + 1}",
                    "operator": None,
                    "start": start,
                    "end": end,
                }
            )
    makespan = max(a["end"] for a in assignments)
    output = {
        "status": "feasible",
        "objective": makespan,
        "bound": None,
        "gap": None,
        "makespan": makespan,
        "wall_s": 0.0,
        "assignments": assignments,
    }
    return [{"id": "plan", "uses": "solver.solve", "state": "ok", "duration_ms": 1.0, "output": output}]


def _wait_runs_done(db: Database, run_id: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with db.tx() as conn:
            state = conn.execute(
                text("SELECT state FROM task_run WHERE run_id = :id AND final"), {"id": run_id}
            ).scalar()
        if state is not None:
            if state != "succeeded":
                raise SystemExit(f"the la01 plan run ended {state}")
            return
        if time.monotonic() > deadline:
            raise SystemExit("the la01 plan run did not finish")
        time.sleep(0.2)


# -- measuring ------------------------------------------------------------------------------------


def _pages(seeded: dict[str, Any]) -> dict[str, str]:
    return {
        "overview": "#/",
        "tasks": "#/tasks",
        "task": f"#/tasks/{seeded['task_id']}",
        "runs": "#/runs",
        "run": f"#/runs/{seeded['finished_run']}",
        "plans": "#/plans",
        "plan_la01": f"#/runs/{seeded['plan_run']}/plan/plan",
        "plan_1000_ops": f"#/runs/{seeded['big_plan_run']}/plan/plan",
        "availability_200x14": "#/availability",
    }


_READY_MS = """() => {
  const marks = performance.getEntriesByName('ordo:ready');
  return marks.length ? marks[marks.length - 1].startTime : null;
}"""
_SHELL_MS = "() => performance.getEntriesByName('ordo:route')[0].startTime"
_LOADED_MS = "() => performance.getEntriesByType('navigation')[0].responseEnd"
_WARM_MS = """() => {
  const routes = performance.getEntriesByName('ordo:route');
  const ready = performance.getEntriesByName('ordo:ready');
  return ready[ready.length - 1].startTime - routes[routes.length - 1].startTime;
}"""


def _measure(
    chromium: str, base: str, seeded: dict[str, Any], samples: int, only: list[str]
) -> dict[str, dict[str, float]]:
    from playwright.sync_api import sync_playwright

    pages = {name: route for name, route in _pages(seeded).items() if not only or name in only}
    if not pages:
        raise SystemExit(f"--pages names none of {', '.join(_pages(seeded))}")
    cold: dict[str, list[float]] = {name: [] for name in pages}
    shell: list[float] = []  # HTML, CSS and every module loaded and run: the route mark
    floor: list[float] = []  # a fresh context loading one small JSON document: the bare baseline
    warm: dict[str, list[float]] = {name: [] for name in pages}
    token_script = f"sessionStorage.setItem('ordo.token', {json.dumps(seeded['token'])})"
    ready = "main[data-state=ready], main[data-state=empty]"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=FLAGS)
        try:
            for _ in range(samples):
                for name, route in pages.items():
                    context = browser.new_context(viewport={"width": 1280, "height": 800})
                    context.add_init_script(token_script)
                    page = context.new_page()
                    page.goto(f"{base}/ui/{route}")
                    page.wait_for_selector(ready, timeout=30_000)
                    cold[name].append(page.evaluate(_READY_MS))
                    shell.append(page.evaluate(_SHELL_MS))
                    context.close()
                context = browser.new_context()
                page = context.new_page()
                page.goto(f"{base}/health")
                floor.append(page.evaluate(_LOADED_MS))
                context.close()
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.add_init_script(token_script)
            page = context.new_page()
            page.goto(f"{base}/ui/#/")
            page.wait_for_selector(ready, timeout=30_000)
            for _ in range(samples):
                for name, route in pages.items():
                    # Always a move from another page: via another one when already on this one.
                    other = "#/runs" if route != "#/runs" else "#/tasks"
                    for hop in ([other] if page.evaluate("location.hash") == route else []) + [route]:
                        page.evaluate(
                            "route => { document.getElementById('main').dataset.state = 'loading'; "
                            "location.hash = route; }",
                            hop,
                        )
                        page.wait_for_selector(ready, timeout=30_000)
                    warm[name].append(page.evaluate(_WARM_MS))
            context.close()
        finally:
            browser.close()
    out = {
        name: {
            "cold_ms_median": median(cold[name]),
            "cold_ms_p95": percentile(cold[name], 95),
            "warm_ms_median": median(warm[name]),
            "warm_ms_p95": percentile(warm[name], 95),
        }
        for name in pages
    }
    out["_baseline"] = {"shell_ms_median": median(shell), "bare_load_ms_median": median(floor)}
    return out


# -- processes ------------------------------------------------------------------------------------


if __name__ == "__main__":
    main()
