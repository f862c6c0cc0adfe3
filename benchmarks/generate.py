"""Availability generation: 1,000 and 10,000 work units x 365 days, stored and committed.

    python benchmarks/generate.py [--scales 1000,10000] [--days 365]   (./ops/bench generate)

Each scale runs in a child process of its own (so its peak RSS is its own) on a fresh database: a
plant of N work units under two_shift with the South African public-holiday calendar, and a monthly
maintenance window (first Monday, 06:00-10:00) on every tenth unit. Stages, per scale:

* compute: every unit's shifts computed and encoded for COPY, written nowhere (no database);
* generate: schedule.generate's work end to end: plant loaded, shifts computed, binary COPY, change
  summary, commit (the figure the goals are about);
* bare COPY: the same rows copied into an empty copy of the table with no generation logic at all,
  the floor PostgreSQL sets on this machine (generate / bare COPY is the overhead of Ordo); and
  again into a copy without the primary key (what maintaining the index costs of that floor);
* regenerate: the same range again, unchanged (the diff path: stage, compare, keep), then again
  after a week-long breakdown was added to every seventh unit mid-range (the nightly case: a few
  machines changed): 1,000 only.

Peak memory: the Ordo process's peak RSS (getrusage) and the PostgreSQL backend serving it (RSS and
USS, sampled every 50 ms). The machine is shared: the load average is printed with the figures.
Prints a table per scale, then one JSON line. Uses DATABASE_URL's server if set, else .ordo-bench/.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil
from sqlalchemy import text

from benchmarks._common import drop_database, fresh_database, load_average, server_url
from engine.tools import plant
from engine.tools.availability import compute_shifts
from store import plant_availability as stored
from store.db import Database
from store.migrate import migrate
from store.tasks import LOCAL_AGENT_ID

START = date(2026, 1, 1)


def plant_document(units: int) -> dict[str, Any]:
    lines = []
    per_line = 50
    for first in range(0, units, per_line):
        lines.append(
            {
                "code": f"L{first // per_line:04d}",
                "level": "work_center",
                "children": [
                    {"code": f"U{i:05d}", "level": "work_unit"}
                    for i in range(first, min(units, first + per_line))
                ],
            }
        )
    return {
        "holiday_calendars": [{"name": "za", "country": "ZA"}],
        "resources": [
            {
                "code": "ACME",
                "level": "enterprise",
                "children": [
                    {
                        "code": "JHB",
                        "level": "site",
                        "timezone": "Africa/Johannesburg",
                        "holiday_calendar": "za",
                        "children": [{"code": "PRESS", "level": "area", "children": lines}],
                    }
                ],
            }
        ],
        "assignments": [{"resource": "JHB", "pattern": "two_shift", "effective_from": "2025-01-01"}],
        "exceptions": [
            {
                "resource": f"U{i:05d}",
                "kind": "maintenance",
                "start": "2026-01-05T06:00",
                "end": "2026-01-05T10:00",
                "rrule": "FREQ=MONTHLY;BYDAY=1MO",
            }
            for i in range(0, units, 10)
        ],
    }


def breakdowns(units: int, first_day: date) -> dict[str, Any]:
    """A week-long breakdown on every seventh unit from 07:00 on `first_day`."""
    start = f"{first_day.isoformat()}T07:00"
    end = f"{(first_day + timedelta(days=7)).isoformat()}T07:00"
    return {
        "exceptions": [
            {"resource": f"U{i:05d}", "kind": "breakdown", "start": start, "end": end}
            for i in range(0, units, 7)
        ]
    }


class BackendSampler:
    """Peak RSS and USS of the PostgreSQL backends serving this benchmark's database (every backend
    whose process title names it, whichever pooled connection is in use), sampled."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.database = db.engine.url.database or ""
        self.postmaster: psutil.Process | None = None
        self.rss = self.uss = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> BackendSampler:
        with self.db.engine.connect() as conn:
            backend = psutil.Process(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        self.postmaster = backend.parent()
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()

    def _run(self) -> None:
        assert self.postmaster is not None
        while not self.stop.wait(0.05):
            for backend in self.postmaster.children():
                try:
                    if self.database not in " ".join(backend.cmdline()):
                        continue
                    info = backend.memory_full_info()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                self.rss, self.uss = max(self.rss, info.rss), max(self.uss, info.uss)


def compute_only(db: Database, end: date) -> tuple[float, int]:
    """Every unit's rows computed and encoded, as generation does, but written nowhere."""
    started = time.perf_counter()
    with db.tx() as conn:
        loaded, _ = plant.load_plant(conn, LOCAL_AGENT_ID)
    templates: dict[Any, stored.RowTemplate] = {}
    rows = 0
    sink = 0
    for rid in loaded.schedulable():
        resource_plan, exception_ids = loaded.plan(rid, START, end)
        template = templates.get(resource_plan)
        if template is None:
            template = templates[resource_plan] = stored.RowTemplate(
                compute_shifts(resource_plan, START, end), 1
            )
        sink += len(template.render(UUID(rid), [UUID(e) for e in exception_ids]))
        rows += template.rows
    return time.perf_counter() - started, rows


def bare_copy(db: Database, end: date, *, index: bool = True) -> float:
    """The same rows COPYed into an empty copy of the table: no plant, no plans, no summary (without
    its primary key when `index` is false: what maintaining the index costs)."""
    like = "INCLUDING ALL" if index else "INCLUDING DEFAULTS"
    with db.tx() as conn:
        conn.execute(text("DROP TABLE IF EXISTS availability_bare"))
        conn.execute(text(f"CREATE TABLE availability_bare (LIKE availability {like})"))
        loaded, _ = plant.load_plant(conn, LOCAL_AGENT_ID)
        encoded = []
        templates: dict[Any, stored.RowTemplate] = {}
        for rid in loaded.schedulable():
            resource_plan, exception_ids = loaded.plan(rid, START, end)
            template = templates.get(resource_plan)
            if template is None:
                template = templates[resource_plan] = stored.RowTemplate(
                    compute_shifts(resource_plan, START, end), 1
                )
            encoded.append((UUID(rid), [UUID(e) for e in exception_ids], template))
    started = time.perf_counter()
    with db.tx() as conn:
        raw = conn.connection.driver_connection
        with (
            raw.cursor() as cursor,
            cursor.copy(
                stored.Q["copy_rows"].text.replace("COPY availability ", "COPY availability_bare ")
            ) as copy,
        ):
            copy.write(stored.COPY_HEADER)
            chunk: list[bytes] = []
            size = 0
            for rid, exceptions, template in encoded:
                block = template.render(rid, exceptions)
                chunk.append(block)
                size += len(block)
                if size >= 1 << 20:
                    copy.write(b"".join(chunk))
                    chunk, size = [], 0
            copy.write(b"".join(chunk))
            copy.write(stored.COPY_TRAILER)
    return time.perf_counter() - started


def run_scale(units: int, days: int, regenerate: bool, out: Any) -> None:
    """One scale, in a child process; its figures go back through `out`."""
    server = server_url()
    url = fresh_database(server, f"bench_generate_{units}")
    db = Database(url, pool_size=2, application_name="ordo-bench")
    try:
        migrate(db)
        with db.tx() as conn:
            plant.apply_document(conn, LOCAL_AGENT_ID, document=plant_document(units))
        end = START + timedelta(days=days - 1)
        load_before = load_average()
        compute_s, rows = compute_only(db, end)
        with BackendSampler(db) as backend:
            generated = plant.run_generation(db, LOCAL_AGENT_ID, START, end)
        generate_s = generated["duration_s"]
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        figures: dict[str, Any] = {
            "units": units,
            "rows": generated["rows"],
            "compute_s": round(compute_s, 3),
            "generate_s": round(generate_s, 3),
            "peak_rss_mb": round(peak_rss_mb, 1),
            "pg_backend_peak_rss_mb": round(backend.rss / 2**20, 1),
            "pg_backend_peak_uss_mb": round(backend.uss / 2**20, 1),
            "load_before": round(load_before, 2),
            "load_after": round(load_average(), 2),
        }
        assert rows == generated["rows"]
        figures["bare_copy_s"] = round(bare_copy(db, end), 3)
        figures["bare_copy_no_index_s"] = round(bare_copy(db, end, index=False), 3)
        if regenerate:
            with BackendSampler(db) as diff_backend:
                again = plant.run_generation(db, LOCAL_AGENT_ID, START, end)
            figures["pg_backend_peak_rss_mb_regenerate"] = round(diff_backend.rss / 2**20, 1)
            assert (
                again["changes"]["added"] == again["changes"]["removed"] == again["changes"]["changed"] == 0
            )
            figures["regenerate_unchanged_s"] = again["duration_s"]
            with db.tx() as conn:
                plant.apply_document(
                    conn, LOCAL_AGENT_ID, document=breakdowns(units, START + timedelta(days=days // 2))
                )
            changed = plant.run_generation(db, LOCAL_AGENT_ID, START, end)
            assert changed["changes"]["resources_changed"] == len(range(0, units, 7))
            figures["regenerate_changed_s"] = changed["duration_s"]
            figures["regenerate_changed_rows"] = sum(
                changed["changes"][k] for k in ("added", "removed", "changed")
            )
        out.put(figures)
    finally:
        db.dispose()
        drop_database(server, url)


def measure(units: int, days: int, regenerate: bool) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=run_scale, args=(units, days, regenerate, queue))
    child.start()
    figures = queue.get(timeout=1800)
    child.join()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1000,10000", help="Comma-separated numbers of work units.")
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",")]
    print(f"availability generation, {args.days} days, two_shift + ZA holidays + monthly maintenance on 10%")
    print(f"{'units':>7} {'stage':<22} {'seconds':>8} {'rows/s':>11} {'note'}")
    results: dict[str, Any] = {"days": args.days}
    for units in scales:
        f = measure(units, args.days, regenerate=units <= 1000)
        rows = f["rows"]
        print(
            f"{units:>7} {'compute (no database)':<22} {f['compute_s']:>8.2f} {rows / f['compute_s']:>11,.0f}"
        )
        print(
            f"{units:>7} {'generate (stored)':<22} {f['generate_s']:>8.2f} {rows / f['generate_s']:>11,.0f} "
            f"{rows:,} rows; Ordo peak RSS {f['peak_rss_mb']:.0f} MB, PostgreSQL backend peak "
            f"RSS {f['pg_backend_peak_rss_mb']:.0f} MB (USS {f['pg_backend_peak_uss_mb']:.0f} MB)"
        )
        print(
            f"{units:>7} {'bare COPY (baseline)':<22} {f['bare_copy_s']:>8.2f} "
            f"{rows / f['bare_copy_s']:>11,.0f} generate / bare COPY = "
            f"{f['generate_s'] / f['bare_copy_s']:.2f}"
        )
        print(
            f"{units:>7} {'bare COPY, no index':<22} {f['bare_copy_no_index_s']:>8.2f} "
            f"{rows / f['bare_copy_no_index_s']:>11,.0f} the primary key's share of the COPY: "
            f"{1 - f['bare_copy_no_index_s'] / f['bare_copy_s']:.0%}"
        )
        if "regenerate_unchanged_s" in f:
            print(
                f"{units:>7} {'regenerate, unchanged':<22} {f['regenerate_unchanged_s']:>8.2f} "
                f"{rows / f['regenerate_unchanged_s']:>11,.0f} diff path: stage, compare, keep; PostgreSQL "
                f"backend peak RSS {f['pg_backend_peak_rss_mb_regenerate']:.0f} MB"
            )
        if "regenerate_changed_s" in f:
            print(
                f"{units:>7} {'regenerate, 1/7 changed':<22} {f['regenerate_changed_s']:>8.2f} "
                f"{rows / f['regenerate_changed_s']:>11,.0f} {f['regenerate_changed_rows']:,} shifts added, "
                "removed or changed"
            )
        print(f"{'':>7} load average {f['load_before']} before, {f['load_after']} after")
        key = f"{units}x{args.days}"
        results[f"seconds_{key}"] = f["generate_s"]
        results[f"rows_{key}"] = rows
        results[f"peak_rss_mb_{key}"] = f["peak_rss_mb"]
        results[f"pg_backend_peak_rss_mb_{key}"] = f["pg_backend_peak_rss_mb"]
        results[f"pg_backend_peak_uss_mb_{key}"] = f["pg_backend_peak_uss_mb"]
        results[f"compute_seconds_{key}"] = f["compute_s"]
        results[f"bare_copy_seconds_{key}"] = f["bare_copy_s"]
        results[f"bare_copy_no_index_seconds_{key}"] = f["bare_copy_no_index_s"]
        results[f"ratio_generate_to_bare_copy_{key}"] = round(f["generate_s"] / f["bare_copy_s"], 3)
        if "regenerate_unchanged_s" in f:
            results[f"regenerate_unchanged_seconds_{key}"] = f["regenerate_unchanged_s"]
            results[f"regenerate_changed_seconds_{key}"] = f["regenerate_changed_s"]
            results[f"pg_backend_peak_rss_mb_regenerate_{key}"] = f["pg_backend_peak_rss_mb_regenerate"]
        results[f"load_{key}"] = f["load_after"]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
