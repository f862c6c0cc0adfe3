"""Chaos: real `ordo` processes under load, killed (and not replaced), poisoned, starved of their
database and told to stop. `ops/test -m slow` runs the full suite (10,000 runs); the default suite
runs the same scenarios bounded. What these tests found, and how it was fixed, is listed in the
reliability report of issue #8.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil
import pytest

from scheduler import task_document
from store import agents
from store import runs as store_runs
from store import tasks as store_tasks
from store.db import Database
from store.embedded import RESTART_WITHIN_S
from store.migrate import migrate
from tests.acceptance.conftest import Ordo
from tests.helpers import REGISTRY, REPO_ROOT, HttpTarget, rows, scalar, wait_for

FULL = pytest.mark.slow


@pytest.fixture
def dbh(db_url):
    db = Database(db_url)
    yield db
    db.dispose()


def task_of(db, agent_name, payload, **fields):
    values = task_document.validate(
        {"title": f"{agent_name} task", "schedule_kind": "manual", "payload": payload, **fields},
        REGISTRY,
        now=datetime.now(UTC),
    )
    with db.tx() as conn:
        agent = agents.ensure_agent(conn, agent_name)
        if agent["id"] != store_tasks.LOCAL_AGENT_ID:
            agents.create_token(conn, agent["id"], ["tools:http"])
        return store_tasks.create(conn, values, agent["id"])


def enqueue(db, task, n=1):
    with db.tx() as conn:
        return store_runs.enqueue(conn, task["id"], n=n)


def alive(proc):
    return proc.poll() is None


def heartbeats_fresh(db, procs, within_s=10.0):
    """Every given worker process has a running worker row heard from in the last `within_s`."""
    pids = {p.pid for p in procs}
    fresh = {
        r["pid"]
        for r in rows(
            db,
            "SELECT pid FROM worker WHERE state = 'running' "
            "AND heartbeat_at > now() - make_interval(secs => :s)",
            s=within_s,
        )
    }
    return pids <= fresh


def loops_healthy(db):
    """The failing background loops of running workers (empty when all are healthy)."""
    return rows(
        db,
        "SELECT w.pid, l.key, l.value FROM worker w CROSS JOIN LATERAL jsonb_each(w.loops) l "
        "WHERE w.state = 'running' AND NOT (l.value ->> 'ok')::boolean",
    )


def succeeded_once(db, run_ids):
    """Every run ended succeeded, with exactly one succeeded attempt recorded."""
    counts = rows(
        db,
        "SELECT run_id, count(*) FILTER (WHERE state = 'succeeded') AS ok, bool_or(final) AS ended "
        "FROM task_run WHERE run_id = ANY(:ids) GROUP BY run_id",
        ids=run_ids,
    )
    return len(counts) == len(run_ids) and all(c["ok"] == 1 and c["ended"] for c in counts)


def ended(db, run_ids):
    """How many of these runs have ended (their final attempt is recorded)."""
    return scalar(db, "SELECT count(*) FROM task_run WHERE final AND run_id = ANY(:ids)", ids=run_ids)


class Prober:
    """Asks the API for readiness and a run page every 50 ms from a thread; keeps every status it
    chose to answer with (a refused connection is no status)."""

    def __init__(self, api, headers):
        self.api, self.headers = api, headers
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._probe, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def _probe(self):
        while not self._stop.is_set():
            for path in ("/health/ready", "/runs?limit=1"):
                code = _get(f"{self.api}{path}", self.headers)
                if code is not None:
                    self.statuses.append(code)
            time.sleep(0.05)

    def saw_503_and_never_500(self):
        return 503 in self.statuses and set(self.statuses) <= {200, 503}


@pytest.fixture
def slow():
    """A system the tasks call, answering after a short delay (so that runs hold leases)."""
    with HttpTarget(delay_s=0.03) as target:
        yield target


def http_payload(url):
    return {"pipeline": [{"id": "call", "uses": "http.request", "with": {"url": url, "timeout_s": 10}}]}


ECHO = {
    "pipeline": [{"id": "say", "uses": "echo.message", "with": {"message": "hello ${params.n}"}}],
    "params": {"n": 1},
}


# -- workers killed and not replaced ----------------------------------------------------------------


@pytest.mark.parametrize(
    "runs", [pytest.param(2_000, id="bounded"), pytest.param(10_000, id="full", marks=FULL)]
)
def test_survivors_rescue_and_finish_everything_when_two_of_four_workers_are_killed(ordo, dbh, slow, runs):
    """Four workers drain the queue; at two random moments one of them is SIGKILLed and not replaced.
    The two survivors rescue what the dead held and finish everything: each run has exactly one
    recorded successful attempt, and their heartbeats and loops are alive to the end."""
    rng = random.Random(int(os.environ.get("ORDO_CHAOS_SEED", "8")))
    inline = task_of(dbh, "local", ECHO, max_retries=20)
    blocking = task_of(dbh, "local", http_payload(slow.url), max_retries=20)
    workers = [ordo.spawn("worker", "--concurrency", "16", name="worker") for _ in range(4)]
    wait_for(lambda: heartbeats_fresh(dbh, workers), timeout=90, what="all four workers to start")
    run_ids = []
    for _ in range(10):  # blocking runs (which hold leases) spread through the queue
        run_ids += enqueue(dbh, blocking, n=runs * 3 // 100) + enqueue(dbh, inline, n=runs * 7 // 100)
    kill_at = sorted(rng.uniform(0.1, 0.75) for _ in range(2))
    started = time.monotonic()

    def done():
        return ended(dbh, run_ids)

    killed = []
    for share in kill_at:
        wait_for(lambda s=share: done() >= s * runs, timeout=300, interval=0.05, what=f"{share:.0%} done")
        victim = workers.pop(rng.randrange(len(workers)))
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        killed.append(victim)
    last_kill = datetime.now(UTC)
    wait_for(lambda: done() == runs, timeout=600, interval=0.5, what="the survivors to finish everything")

    assert succeeded_once(dbh, run_ids)
    assert scalar(dbh, "SELECT count(*) FROM due_work") == 0
    assert all(alive(w) for w in workers)
    survivors = rows(
        dbh, "SELECT pid, heartbeat_at, loops FROM worker WHERE pid = ANY(:p)", p=[w.pid for w in workers]
    )
    assert len(survivors) == 2 and all(s["heartbeat_at"] > last_kill for s in survivors)
    assert heartbeats_fresh(dbh, workers) and loops_healthy(dbh) == []
    # The dead held leases: the survivors recorded them as abandoned and ran them again.
    dead_ids = [
        r["id"] for r in rows(dbh, "SELECT id FROM worker WHERE pid = ANY(:p)", p=[k.pid for k in killed])
    ]
    abandoned = scalar(
        dbh,
        "SELECT count(*) FROM task_run WHERE error->>'code' = 'LEASE_EXPIRED' AND worker_id = ANY(:w)",
        w=dead_ids,
    )
    assert abandoned >= 1
    print(  # the figures of the closing note (pytest -s)
        f"\nchaos: {runs} runs, 2 of 4 workers SIGKILLed at {kill_at[0]:.0%} and {kill_at[1]:.0%}: "
        f"{abandoned} abandoned attempts rescued, all ended in {time.monotonic() - started:.1f} s"
    )
    for w in workers:
        w.send_signal(signal.SIGTERM)
    assert [w.wait(60) for w in workers] == [0, 0]


# -- poison among good runs ---------------------------------------------------------------------

SELF_REFERENCE = {
    "pipeline": [
        {"id": "a", "uses": "echo.message", "with": {"message": "hi"}},
        {"id": "b", "uses": "echo.message", "with": {"message": "me", "data": "${steps}"}},
    ]
}
WHOLE_CONTEXT = {"pipeline": [{"id": "a", "uses": "echo.message", "with": {"message": "x", "data": "${@}"}}]}
OVERSIZE = {
    "params": {"blob": "x" * 40_000},
    "pipeline": [
        {
            "id": "grow",
            "uses": "transform.jmespath",
            "with": {"expression": "[@, @, @, @]", "data": "${params.blob}"},
        }
    ],
}


def doubling(levels):
    steps = [{"id": "s0", "uses": "echo.message", "with": {"message": "${params.m}"}}]
    for i in range(1, levels):
        prev = f"${{steps.s{i - 1}}}"
        steps.append({"id": f"s{i}", "uses": "echo.message", "with": {"message": "x", "data": [prev, prev]}})
    return {"params": {"m": "y" * 200}, "pipeline": steps}


def test_poison_runs_among_a_thousand_good_ones_end_dead_alone_and_no_worker_restarts(ordo, dbh):
    """Another agent's 1,000 runs all succeed, each once; every poison run ends dead at its first
    attempt with its reason although it may be retried five times; both worker processes live on."""
    env = {"ORDO_STEP_OUTPUT_MAX_BYTES": "65536"}
    workers = [ordo.spawn("worker", "--concurrency", "32", env=env, name="worker") for _ in range(2)]
    good = task_of(dbh, "alice", ECHO)
    poison = {
        "TEMPLATE_CYCLE": [
            task_of(dbh, "mallory", p, max_retries=5) for p in (SELF_REFERENCE, WHOLE_CONTEXT)
        ],
        "OUTPUT_TOO_LARGE": [task_of(dbh, "mallory", OVERSIZE, max_retries=5)],
        "INPUT_TOO_LARGE": [task_of(dbh, "mallory", doubling(40), max_retries=5)],
    }
    good_runs, poison_runs = [], {}
    for i in range(10):  # interleaved, so that poison shares batches with good runs
        good_runs += enqueue(dbh, good, n=100)
        for code, tasks in poison.items():
            for task in tasks:
                poison_runs[enqueue(dbh, task)[0]] = code
        if i == 0:
            wait_for(lambda: heartbeats_fresh(dbh, workers), timeout=60, what="the workers to start")
    everything = good_runs + list(poison_runs)
    wait_for(
        lambda: ended(dbh, everything) == len(everything),
        timeout=120,
        interval=0.2,
        what="every run to end",
    )

    assert scalar(dbh, "SELECT count(*) FROM task_run WHERE state = 'succeeded'") == 1000
    assert scalar(dbh, "SELECT count(DISTINCT run_id) FROM task_run WHERE state = 'succeeded'") == 1000
    assert {r: c for r, c in poison_runs.items()} == {
        r["run_id"]: r["code"]
        for r in rows(
            dbh,
            "SELECT run_id, error->>'code' AS code FROM task_run WHERE final AND state = 'dead' "
            "AND attempt = 1",
        )
    }
    assert all(alive(w) for w in workers), "a worker process died"
    assert heartbeats_fresh(dbh, workers) and loops_healthy(dbh) == []
    for w in workers:
        w.send_signal(signal.SIGTERM)
    assert [w.wait(60) for w in workers] == [0, 0]
    assert scalar(dbh, "SELECT count(*) FROM worker WHERE state = 'stopped'") == 2


# -- the embedded PostgreSQL killed under load -----------------------------------------------------


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _postmaster(pgdata: Path) -> int | None:
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
        ok = psutil.Process(pid).status() != psutil.STATUS_ZOMBIE and lines[7].strip() == "ready"
    except (OSError, ValueError, IndexError, psutil.Error):
        return None
    return pid if ok else None


@pytest.mark.parametrize(
    "runs", [pytest.param(1_000, id="bounded"), pytest.param(10_000, id="full", marks=FULL)]
)
def test_the_embedded_database_killed_mid_load_is_back_within_30_s_and_nothing_is_lost_or_doubled(
    tmp_path, slow, runs
):
    """`ordo up` on its embedded PostgreSQL; the server is SIGKILLed while runs drain. It is back
    within 30 s without a hand; meanwhile the API answers 503, never 500; every run succeeds once."""
    data = tmp_path / "data"
    pgdata = data / "pg"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        ORDO_DATA_DIR=str(data),
        ORDO_API_PORT=str(port),
        ORDO_API_WORKERS="1",
        ORDO_LOG_FORMAT="json",
        ORDO_POLL_S="0.2",
        ORDO_LEASE_S="10",
        ORDO_RESCUE_INTERVAL_S="1",
        ORDO_OUTBOUND_ALLOW="127.0.0.1",
        ORDO_WORKER_CONCURRENCY="16",
    )
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        up = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up"], cwd=REPO_ROOT, env=env, stdout=log, stderr=log
        )
    api = f"http://127.0.0.1:{port}"
    try:
        token = wait_for(
            lambda: (m := re.search(r"ordo_[a-z2-7]{12}_[A-Za-z0-9_-]{43}", log_path.read_text())) and m[0],
            timeout=120,
            what="the admin token",
        )
        headers = {"Authorization": f"Bearer {token}"}
        wait_for(lambda: _get(f"{api}/health/ready") == 200, timeout=120, what="ordo up to be ready")
        url = "postgresql://postgres@/ordo?host=" + str(pgdata)
        db = Database(url)
        try:
            inline = task_of(db, "local", ECHO, max_retries=20)
            blocking = task_of(db, "local", http_payload(slow.url), max_retries=20)
            run_ids = []
            for _ in range(10):
                run_ids += enqueue(db, blocking, n=runs // 20) + enqueue(
                    db, inline, n=runs // 10 - runs // 20
                )
            wait_for(
                lambda: scalar(db, "SELECT count(*) FROM task_run WHERE final") >= runs // 5,
                timeout=300,
                what="the load to be under way",
            )
        finally:
            db.dispose()

        with Prober(api, headers) as prober:
            victim = _postmaster(pgdata)
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            back = wait_for(
                lambda: (pid := _postmaster(pgdata)) not in (None, victim) and pid,
                timeout=RESTART_WITHIN_S,
                interval=0.1,
                what="the server to be back within 30 s",
            )
            back_after_s = time.monotonic() - killed_at
            wait_for(
                lambda: _get(f"{api}/health/ready") == 200, timeout=60, what="readiness after the restart"
            )
        db = Database(url)
        try:
            wait_for(
                lambda: scalar(db, "SELECT count(*) FROM task_run WHERE final") >= runs,
                timeout=600,
                interval=0.5,
                what="every run to end",
            )
            assert succeeded_once(db, run_ids)
            assert scalar(db, "SELECT count(*) FROM due_work") == 0
        finally:
            db.dispose()
        assert back and back_after_s < RESTART_WITHIN_S
        print(f"\nchaos: embedded PostgreSQL SIGKILLed under load, back after {back_after_s:.1f} s")
        assert prober.saw_503_and_never_500(), sorted(set(prober.statuses))
        assert "embedded_postgres_restarted" in log_path.read_text()
        assert alive(up)
        up.send_signal(signal.SIGTERM)
        assert up.wait(90) == 0
        wait_for(lambda: _postmaster(pgdata) is None, timeout=30, what="the server to stop with ordo up")
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        pid = _postmaster(pgdata)
        if pid is not None:
            psutil.Process(pid).terminate()


# -- an external database (DATABASE_URL) killed under load -----------------------------------------


class ExternalServer:
    """A PostgreSQL that no `ordo` process supervises, as with DATABASE_URL in production: held up by
    helper processes of the test (the embedded server's machinery, without supervision), killed
    with SIGKILL, and started again by a fresh helper when the test says so."""

    HOLD = (
        "import sys; from pathlib import Path; from store.embedded import ensure_server; "
        "print(ensure_server(Path(sys.argv[1])), flush=True); sys.stdin.read()"
    )

    def __init__(self, data: Path) -> None:
        self.data = data
        self.pgdata = data / "pg"
        self.holders: list[subprocess.Popen[str]] = []

    def start(self) -> str:
        holder = subprocess.Popen(
            [sys.executable, "-c", self.HOLD, str(self.data)],
            cwd=REPO_ROOT,
            env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.holders.append(holder)
        url = holder.stdout.readline().strip()
        assert url.startswith("postgresql://"), "the helper could not start the server"
        return url

    def kill(self) -> int:
        pid = _postmaster(self.pgdata)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: _postmaster(self.pgdata) is None, timeout=10, what="the server to die")
        return pid

    def close(self) -> None:
        for holder in self.holders:  # the last to leave stops the server
            holder.stdin.close()
            holder.wait(60)
            holder.stdout.close()
        pid = _postmaster(self.pgdata)
        if pid is not None:
            psutil.Process(pid).terminate()


@pytest.fixture
def external():
    # Not under pytest's tmp_path: other pytest sessions on the machine tighten its parent to 0700,
    # which the server's own user (when tests run as root) needs to pass through at every start.
    data = Path(tempfile.mkdtemp(prefix="ordo-external-"))
    server = ExternalServer(data)
    try:
        yield server
    finally:
        server.close()
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.parametrize(
    "runs", [pytest.param(1_000, id="bounded"), pytest.param(5_000, id="full", marks=FULL)]
)
def test_with_database_url_every_process_rides_out_a_killed_database_without_being_replaced(
    external, tmp_path, slow, runs
):
    """Worker, scheduler and API on DATABASE_URL; the server is SIGKILLed under load and comes back
    (by hand, as an operator's service manager would) after a few seconds. None of the three is
    restarted: they reconnect with backoff, the API answers 503 (never 500) meanwhile, every run
    succeeds exactly once, and the schedule goes on."""
    url = external.start()
    db = Database(url)
    migrate(db)
    with db.tx() as conn:
        admin = agents.ensure_agent(conn, "admin")
        _, token = agents.create_token(conn, admin["id"], ["admin"])
    inline = task_of(db, "local", ECHO, max_retries=20)
    blocking = task_of(db, "local", http_payload(slow.url), max_retries=20)
    ticking = task_of(
        db, "local", ECHO, schedule_kind="rrule", schedule_expr="FREQ=SECONDLY;INTERVAL=1", max_retries=0
    )
    port = _free_port()
    ordo = Ordo(url, tmp_path)
    env = {"ORDO_API_PORT": str(port), "ORDO_API_WORKERS": "1", "ORDO_SCHEDULER_HORIZON_S": "2"}
    procs = [
        ordo.spawn("worker", "--concurrency", "16", env=env, name="worker"),
        ordo.spawn("scheduler", env=env, name="scheduler"),
        ordo.spawn("api", env=env, name="api"),
    ]
    api = f"http://127.0.0.1:{port}"
    prober = Prober(api, {"Authorization": f"Bearer {token}"})
    try:
        wait_for(lambda: _get(f"{api}/health/ready") == 200, timeout=120, what="everything to be ready")
        run_ids = []
        for _ in range(10):
            run_ids += enqueue(db, blocking, n=runs // 20) + enqueue(db, inline, n=runs // 10 - runs // 20)
        wait_for(
            lambda: ended(db, run_ids) >= runs // 5,
            timeout=300,
            what="the load to be under way",
        )
        db.dispose()

        with prober:
            external.kill()
            time.sleep(4)  # down long enough for every process to notice and back off
            assert all(alive(p) for p in procs), "a process gave up while the database was away"
            assert external.start() == url
            back_at = datetime.now(UTC)
            wait_for(
                lambda: _get(f"{api}/health/ready") == 200, timeout=60, what="readiness after the restart"
            )

        db = Database(url)
        wait_for(
            lambda: ended(db, run_ids) == runs,
            timeout=600,
            interval=0.5,
            what="every run to end",
        )
        assert succeeded_once(db, run_ids)
        wait_for(
            lambda: (
                scalar(
                    db,
                    "SELECT count(*) FROM task_run WHERE task_id = :t AND state = 'succeeded' "
                    "AND scheduled_for > :after",
                    t=ticking["id"],
                    after=back_at,
                )
                >= 3
            ),
            timeout=60,
            what="the schedule to go on after the restart",
        )
        worker = procs[0]
        wait_for(lambda: heartbeats_fresh(db, [worker], within_s=5), timeout=30, what="a fresh heartbeat")
        wait_for(lambda: loops_healthy(db) == [], timeout=30, what="the worker's loops to recover")
        assert prober.saw_503_and_never_500(), sorted(set(prober.statuses))
        assert all(alive(p) for p in procs), "a process died"
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        assert [p.wait(60) for p in procs] == [0, 0, 0]
    finally:
        ordo.stop_all()
        db.dispose()


def _get(url, headers=None):
    try:
        return httpx.get(url, headers=headers, timeout=10).status_code
    except httpx.HTTPError:
        return None  # the API process itself is not answering (not a status it chose)


# -- the scheduler leader killed during a burst ----------------------------------------------------


@pytest.mark.parametrize("tasks", [pytest.param(10, id="bounded"), pytest.param(100, id="full", marks=FULL)])
def test_the_standby_leads_within_10_s_of_the_leaders_death_and_no_occurrence_is_skipped_or_doubled(
    ordo, dbh, tasks
):
    """Tasks due every second; the scheduler leader is SIGKILLed in the middle of the burst. The standby
    leads within 10 s, and every task has each second's occurrence exactly once."""
    for _ in range(tasks):
        task_of(
            dbh, "local", ECHO, schedule_kind="rrule", schedule_expr="FREQ=SECONDLY;INTERVAL=1", max_retries=0
        )
    env = {
        "ORDO_SCHEDULER_HORIZON_S": "2",
        "ORDO_SCHEDULER_TICK_S": "0.2",
        "ORDO_SCHEDULER_STANDBY_RETRY_S": "0.5",
    }
    schedulers = [ordo.spawn("scheduler", env=env, name=f"sched-{i}") for i in range(2)]
    workers = [ordo.spawn("worker", "--concurrency", "32", env=env, name="worker") for _ in range(2)]
    leader_id = wait_for(
        lambda: scalar(dbh, "SELECT scheduler_id FROM scheduler_leader"), timeout=90, what="a leader"
    )
    wait_for(
        lambda: scalar(dbh, "SELECT count(*) FROM task_run WHERE final") >= tasks * 5,
        timeout=120,
        what="the burst to be under way",
    )
    leader = next(s for s in schedulers if leader_id.endswith(f":{s.pid}"))
    standby = next(s for s in schedulers if s is not leader)
    leader.send_signal(signal.SIGKILL)
    leader.wait(10)
    killed_at = time.monotonic()
    wait_for(
        lambda: scalar(dbh, "SELECT scheduler_id FROM scheduler_leader") not in (None, leader_id),
        timeout=10,
        interval=0.05,
        what="the standby to lead within 10 s",
    )
    took_over_s = time.monotonic() - killed_at
    end = scalar(dbh, "SELECT now()") + timedelta(seconds=6)
    wait_for(
        lambda: scalar(dbh, "SELECT now()") > end + timedelta(seconds=3), timeout=30, what="time to pass"
    )
    for proc in (standby, *workers):
        proc.send_signal(signal.SIGTERM)
    assert [p.wait(60) for p in (standby, *workers)] == [0, 0, 0]

    occurrences = rows(
        dbh,
        "SELECT task_id, scheduled_for, state FROM ("
        " SELECT task_id, scheduled_for, state FROM due_work WHERE origin = 'schedule'"
        " UNION ALL SELECT task_id, scheduled_for, state FROM task_run WHERE final AND origin = 'schedule') o"
        " WHERE scheduled_for <= :end",
        end=end,
    )
    by_task: dict = {}
    for o in occurrences:
        by_task.setdefault(o["task_id"], []).append(o["scheduled_for"])
    assert len(by_task) == tasks
    for instants in by_task.values():
        instants.sort()
        assert len(instants) == len(set(instants)), "an occurrence was written twice"
        steps = {(b - a).total_seconds() for a, b in itertools.pairwise(instants)}
        assert steps == {1.0}, f"an occurrence was skipped: gaps {sorted(steps)}"
        assert instants[-1] >= end - timedelta(seconds=1)
    assert "skipped" not in {o["state"] for o in occurrences}
    assert took_over_s < 10
    print(f"\nchaos: scheduler leader SIGKILLed, the standby led after {took_over_s:.1f} s")


# -- SIGTERM to everything under load -----------------------------------------------------------------


@pytest.mark.parametrize(
    "runs", [pytest.param(300, id="bounded"), pytest.param(3_000, id="full", marks=FULL)]
)
def test_sigterm_to_every_process_under_load_finishes_in_flight_runs_and_leaves_nothing_leased(
    ordo, dbh, slow, runs
):
    """Two schedulers, two workers and the API, with runs in flight: each gets SIGTERM at once. They
    exit cleanly, every run that had started ends recorded, nothing is left leased, and a fresh worker
    finishes the rest, each run succeeding exactly once."""
    slow.delay_s = 0.3
    try:
        blocking = task_of(dbh, "local", http_payload(slow.url), max_retries=0)
        tick = task_of(dbh, "local", ECHO, schedule_kind="rrule", schedule_expr="FREQ=SECONDLY;INTERVAL=1")
        port = _free_port()
        env = {"ORDO_SHUTDOWN_GRACE_S": "20", "ORDO_API_PORT": str(port), "ORDO_API_WORKERS": "1"}
        procs = [ordo.spawn("scheduler", env=env, name="sched") for _ in range(2)]
        workers = [ordo.spawn("worker", "--concurrency", "8", env=env, name="worker") for _ in range(2)]
        procs += [*workers, ordo.spawn("api", env=env, name="api")]
        wait_for(lambda: heartbeats_fresh(dbh, workers), timeout=90, what="the workers to start")
        wait_for(lambda: _get(f"http://127.0.0.1:{port}/health") == 200, timeout=90, what="the API to start")
        wait_for(lambda: scalar(dbh, "SELECT count(*) FROM scheduler_leader"), timeout=90, what="a leader")
        run_ids = enqueue(dbh, blocking, n=runs)
        wait_for(
            lambda: scalar(dbh, "SELECT count(*) FROM due_work WHERE state = 'running'") >= 8,
            timeout=60,
            what="runs in flight",
        )
        in_flight = [r["id"] for r in rows(dbh, "SELECT id FROM due_work WHERE state = 'running'")]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(60) for proc in procs]
        assert codes == [0] * len(procs), codes
        assert scalar(dbh, "SELECT count(*) FROM due_work WHERE state = 'running'") == 0
        assert scalar(dbh, "SELECT count(*) FROM task_run WHERE error->>'code' = 'LEASE_EXPIRED'") == 0
        assert scalar(dbh, "SELECT count(*) FROM worker WHERE state <> 'stopped'") == 0
        assert succeeded_once(dbh, in_flight)  # the runs in flight finished and were recorded

        ordo.spawn("worker", "--concurrency", "16", name="after")
        wait_for(
            lambda: ended(dbh, run_ids) == runs,
            timeout=600,
            interval=0.5,
            what="a fresh worker to finish the rest",
        )
        assert succeeded_once(dbh, run_ids)
        assert (
            scalar(
                dbh, "SELECT count(*) FROM task_run WHERE task_id = :t AND state <> 'succeeded'", t=tick["id"]
            )
            == 0
        )
    finally:
        slow.delay_s = 0.03
