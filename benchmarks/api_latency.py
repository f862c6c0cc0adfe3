"""API latency under load: `ordo api` with its production server settings, measured from outside.

    python benchmarks/api_latency.py [--duration 20] [--clients 1,16,64] [--database-url URL]

Starts PostgreSQL (embedded in a temporary directory unless --database-url), migrates it, seeds tasks
and finished runs (an `ordo worker` drains the seeded queue), starts `ordo api` on a free port and
measures, for each concurrency level, closed-loop clients on keep-alive connections for `--duration`
seconds per endpoint: GET /health, GET /tasks/{id}, GET /runs?limit=50, POST /tasks. Then, with the
system idle, how long a run queued by POST /tasks/{id}/run_now waits before a worker starts it
(started_at - created_at, both on the database clock).

The bare baseline (benchmarks/_bare_api.py) runs beside it: a minimal FastAPI app served the same way
(same uvicorn settings, same number of processes) that reads the task row by primary key with the
same driver and returns it. At each level the same GET /tasks/{id} requests go to Ordo and to the
baseline for the same time, in turns of a quarter of it each (so that both see the same machine);
`get_task_vs_bare_N` is Ordo's throughput over the baseline's at N clients, which is what
authentication, the rate limit, scopes, validation and Ordo's response cost.

The only setting changed from production defaults is ORDO_API_RATE_LIMIT_PER_MIN (raised so the
load generator is not answered 429). Prints a table, then one JSON object with every figure as the
last line. Goals (16 clients, 2 cores): /health p99 < 5 ms, reads p99 < 25 ms, writes p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import text  # noqa: E402

from benchmarks._common import free_port, ordo_command, process, wait_http  # noqa: E402
from engine import ToolRegistry  # noqa: E402
from scheduler import task_document  # noqa: E402
from store import agents  # noqa: E402
from store import runs as store_runs  # noqa: E402
from store import tasks as store_tasks  # noqa: E402
from store.db import Database  # noqa: E402
from store.migrate import migrate  # noqa: E402
from store.settings import Settings  # noqa: E402

GOALS_MS = {"health": 5.0, "get_task": 25.0, "list_runs": 25.0, "create_task": 50.0}
GOAL_VS_BARE = 0.7
WARMUP_S = 1.0
INTERLEAVE_SLICES = 4  # Ordo's GET /tasks/{id} and the bare baseline take turns this many times each


def _task_doc(title: str, kind: str = "manual", expr: str = "") -> dict[str, Any]:
    return {
        "title": title,
        "schedule_kind": kind,
        "schedule_expr": expr,
        "timezone": "Europe/Chisinau",
        "payload": {
            "params": {"who": "bench"},
            "pipeline": [{"id": "say", "uses": "echo.message", "with": {"message": "hello ${params.who}"}}],
        },
    }


# -- processes ------------------------------------------------------------------------------------


# -- load generation ------------------------------------------------------------------------------


class _Connection:
    """One keep-alive HTTP/1.1 connection with a minimal response reader (uvicorn always sends
    Content-Length), so that the load generator spends as little CPU as possible."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> _Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    def close(self) -> None:
        self.writer.close()


def _raw(method: str, path: str, token: str, body: bytes | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: bench", f"Authorization: Bearer {token}"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


@dataclass
class Scenario:
    name: str
    label: str
    make: Callable[[int], bytes]  # request number -> raw request
    expect: int


@dataclass
class Result:
    scenario: str
    clients: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0

    def figures(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p / 100 * len(lat)))], 3) if lat else None

        return {
            "requests": len(lat),
            "errors": self.errors,
            "rps": round(len(lat) / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": pct(50),
            "p95_ms": pct(95),
            "p99_ms": pct(99),
            "max_ms": round(lat[-1], 3) if lat else None,
        }


async def _measure(port: int, scenario: Scenario, clients: int, duration: float) -> Result:
    result = Result(scenario.name, clients)
    counter = iter(range(10**12))
    conns = [await _Connection.open(port) for _ in range(clients)]
    start = time.perf_counter()
    record_from = start + WARMUP_S
    stop_at = record_from + duration

    async def client(conn: _Connection) -> None:
        while True:
            raw = scenario.make(next(counter))
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            status, _ = await conn.request(raw)
            t1 = time.perf_counter()
            if t0 >= record_from:
                result.latencies_ms.append((t1 - t0) * 1000)
                if status != scenario.expect:
                    result.errors += 1

    await asyncio.gather(*(client(c) for c in conns))
    result.seconds = time.perf_counter() - record_from
    for c in conns:
        c.close()
    return result


async def _run_now_start(port: int, token: str, task_id: str, samples: int) -> dict[str, Any]:
    """Queue runs one at a time on an idle system; how long until a worker starts each."""
    conn = await _Connection.open(port)
    waits: list[float] = []
    try:
        for _ in range(samples):
            status, body = await conn.request(_raw("POST", f"/tasks/{task_id}/run_now", token, b"{}"))
            if status != 202:
                raise SystemExit(f"run_now answered {status}: {body[:300]!r}")
            run = json.loads(body)
            deadline = time.monotonic() + 10
            while True:
                status, body = await conn.request(_raw("GET", f"/runs/{run['id']}", token))
                shown = json.loads(body)
                if shown["started_at"]:
                    started = datetime.fromisoformat(shown["started_at"])
                    waits.append((started - datetime.fromisoformat(run["created_at"])).total_seconds() * 1000)
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"run {run['id']} did not start within 10 s")
                await asyncio.sleep(0.002)
            await asyncio.sleep(0.05)
    finally:
        conn.close()
    waits.sort()
    return {
        "samples": len(waits),
        "p50_ms": round(waits[len(waits) // 2], 3),
        "p95_ms": round(waits[min(len(waits) - 1, int(0.95 * len(waits)))], 3),
        "max_ms": round(waits[-1], 3),
    }


# -- setup ----------------------------------------------------------------------------------------


def _seed(db: Database, tasks: int, runs: int) -> tuple[UUID, str, list[str], str]:
    registry = ToolRegistry.load()
    now = datetime.now(UTC)
    with db.tx() as conn:
        agent = agents.ensure_agent(conn, "bench")
        _, token = agents.create_token(
            conn, agent["id"], ["tasks:read", "tasks:write", "runs:read"], name="benchmark"
        )
        ids = []
        for i in range(tasks):
            kind, expr = ("rrule", "FREQ=DAILY;BYHOUR=5;BYMINUTE=30") if i % 3 == 0 else ("manual", "")
            values = task_document.validate(_task_doc(f"seeded task {i}", kind, expr), registry, now=now)
            ids.append(str(store_tasks.create(conn, values, agent["id"])["id"]))
        runner = store_tasks.create(
            conn, task_document.validate(_task_doc("run_now probe"), registry, now=now), agent["id"]
        )
        for i in range(runs // 100):
            store_runs.enqueue(conn, ids[i % len(ids)], n=100)
    return agent["id"], token, ids, str(runner["id"])


def _queue_empty(db: Database) -> bool:
    with db.tx() as conn:
        return not conn.execute(text("SELECT count(*) FROM due_work")).scalar_one()


def _table(results: list[Result], run_now: dict[str, Any]) -> str:
    lines = [
        f"{'endpoint':<22}{'clients':>8}{'req/s':>10}{'p50 ms':>10}{'p95 ms':>10}"
        f"{'p99 ms':>10}{'max ms':>10}{'errors':>8}"
    ]
    for r in results:
        f = r.figures()
        lines.append(
            f"{r.scenario:<22}{r.clients:>8}{f['rps']:>10.1f}{f['p50_ms']:>10.2f}{f['p95_ms']:>10.2f}"
            f"{f['p99_ms']:>10.2f}{f['max_ms']:>10.2f}{f['errors']:>8}"
        )
    lines.append(
        f"run_now -> started (idle system, {run_now['samples']} runs): p50 {run_now['p50_ms']:.1f} ms, "
        f"p95 {run_now['p95_ms']:.1f} ms, max {run_now['max_ms']:.1f} ms"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--duration", type=float, default=20.0, help="Seconds measured per endpoint and level."
    )
    parser.add_argument("--clients", default="1,16,64", help="Concurrency levels, comma-separated.")
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (default: embedded, temporary).")
    parser.add_argument(
        "--api-workers", type=int, default=None, help="ORDO_API_WORKERS for `ordo api` (default: 1)."
    )
    parser.add_argument("--tasks", type=int, default=2000, help="Tasks to seed.")
    parser.add_argument("--runs", type=int, default=5000, help="Finished runs to seed.")
    parser.add_argument(
        "--only",
        default=None,
        help="Comma-separated scenarios to run (health,get_task,list_runs,create_task).",
    )
    parser.add_argument("--no-bare", action="store_true", help="Skip the bare FastAPI baseline.")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]

    workdir = Path(tempfile.mkdtemp(prefix="ordo-bench-"))
    try:
        _bench(args, levels, workdir)
    except BaseException:
        print(f"benchmark failed; logs kept in {workdir}", file=sys.stderr)
        raise
    shutil.rmtree(workdir, ignore_errors=True)


def _bench(args: argparse.Namespace, levels: list[int], workdir: Path) -> None:
    url = args.database_url
    if url is None:
        from store.embedded import ensure_server

        url = ensure_server(workdir / "data", database="ordo_bench")
    db = Database(url, pool_size=2)
    migrate(db)
    _, token, task_ids, probe_task = _seed(db, args.tasks, args.runs)

    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "ORDO_API_PORT": str(port),
        "ORDO_API_RATE_LIMIT_PER_MIN": str(10**9),
        "ORDO_LOG_LEVEL": "warning",
        "ORDO_DATA_DIR": str(workdir / "data"),
    }
    if args.api_workers:
        env["ORDO_API_WORKERS"] = str(args.api_workers)

    with process(ordo_command("worker", "--concurrency", "8"), env, workdir / "worker.log"):
        deadline = time.monotonic() + 300
        while not _queue_empty(db):
            if time.monotonic() > deadline:
                raise SystemExit("the worker did not drain the seeded runs within 300 s")
            time.sleep(0.5)
        # The statistics autovacuum would have gathered within a minute of the seeding: without them
        # the planner guesses an agent's share of the history (GET /runs reads it by owner).
        with db.tx() as conn:
            conn.execute(text("ANALYZE"))
        api_log = workdir / "api.log"
        bare_port = free_port()
        bare_log = workdir / "bare.log"
        processes = args.api_workers or Settings().api_workers
        bare_args = [
            sys.executable,
            str(REPO / "benchmarks" / "_bare_api.py"),
            url,
            str(bare_port),
            str(processes),
        ]
        with (
            process(ordo_command("api"), env, api_log) as api,
            process(bare_args, env, bare_log) as bare,
        ):
            wait_http(port, api, api_log)
            wait_http(bare_port, bare, bare_log)
            results = asyncio.run(
                _load(port, token, task_ids, levels, args, None if args.no_bare else bare_port)
            )
            run_now = asyncio.run(_run_now_start(port, token, probe_task, 40))
    db.dispose()

    print(_table(results, run_now))
    figures: dict[str, Any] = {
        "benchmark": "api_latency",
        "duration_s": args.duration,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "seeded": {"tasks": args.tasks, "runs": args.runs},
        "results": {f"{r.scenario}@{r.clients}": r.figures() for r in results},
        "run_now_start_ms": run_now,
        "goals_p99_ms_at_16": GOALS_MS,
    }
    at16 = {r.scenario: r.figures()["p99_ms"] for r in results if r.clients == 16}
    figures["goals_met_at_16"] = {name: at16[name] < goal for name, goal in GOALS_MS.items() if name in at16}
    rps = {(r.scenario, r.clients): r.figures()["rps"] for r in results}
    for clients in levels:
        ordo, bare = rps.get(("get_task", clients)), rps.get(("bare_get_task", clients))
        if ordo and bare:
            figures[f"get_task_vs_bare_{clients}"] = round(ordo / bare, 3)
            figures["goals_met_at_16"][f"get_task_vs_bare_{clients}"] = ordo / bare >= GOAL_VS_BARE
    for name in ("get_task", "list_runs", "create_task"):
        if name in at16:
            figures[f"{name}_p99_ms_16"] = at16[name]
    print(json.dumps(figures))


async def _load(
    port: int,
    token: str,
    task_ids: list[str],
    levels: list[int],
    args: argparse.Namespace,
    bare_port: int | None,
) -> list[Result]:
    rng = random.Random(0)

    def get_task(n: int) -> bytes:
        return _raw("GET", f"/tasks/{rng.choice(task_ids)}", token)

    scenarios = [
        Scenario("health", "GET /health", lambda n: _raw("GET", "/health", token), 200),
        Scenario("get_task", "GET /tasks/{id}", get_task, 200),
        Scenario("list_runs", "GET /runs?limit=50", lambda n: _raw("GET", "/runs?limit=50", token), 200),
        Scenario(
            "create_task",
            "POST /tasks",
            lambda n: _raw("POST", "/tasks", token, json.dumps(_task_doc(f"bench {n}")).encode()),
            201,
        ),
    ]
    if args.only:
        wanted = set(args.only.split(","))
        scenarios = [s for s in scenarios if s.name in wanted]
    # The bare baseline answers the very requests Ordo's GET /tasks/{id} gets (it ignores the token).
    bare = Scenario("bare_get_task", "bare GET /tasks/{id}", get_task, 200)
    results = []
    for scenario in scenarios:
        for clients in levels:
            if scenario.name == "get_task" and bare_port is not None:
                measured = await _interleaved(port, scenario, bare_port, bare, clients, args.duration)
            else:
                measured = [(scenario, await _measure(port, scenario, clients, args.duration))]
            for s, result in measured:
                f = result.figures()
                print(
                    f"{s.label:<22} {clients:>3} clients: {f['rps']:>8.1f} req/s  "
                    f"p50 {f['p50_ms']:.2f}  p99 {f['p99_ms']:.2f} ms  errors {f['errors']}",
                    file=sys.stderr,
                    flush=True,
                )
                results.append(result)
    return results


async def _interleaved(
    port: int, scenario: Scenario, bare_port: int, bare: Scenario, clients: int, duration: float
) -> list[tuple[Scenario, Result]]:
    """Ordo and the baseline in alternating slices (Ordo first, then the baseline first, ...), each
    given half of every stretch of time: on a shared machine the load of other programs changes from
    one second to the next, and one long run of each would put each under a different load."""
    totals = {scenario.name: Result(scenario.name, clients), bare.name: Result(bare.name, clients)}
    pair = [(port, scenario), (bare_port, bare)]
    for i in range(INTERLEAVE_SLICES):
        for target, measured in pair if i % 2 == 0 else pair[::-1]:
            part = await _measure(target, measured, clients, duration / INTERLEAVE_SLICES)
            total = totals[measured.name]
            total.latencies_ms += part.latencies_ms
            total.errors += part.errors
            total.seconds += part.seconds
    return [(scenario, totals[scenario.name]), (bare, totals[bare.name])]


if __name__ == "__main__":
    main()
