"""Chaos: real `ordo` processes under load, killed (and not replaced), poisoned, and starved of their
database. The full suite is slow: `ops/test -m slow`; the default suite runs bounded versions.
"""

from __future__ import annotations

import signal
from datetime import UTC, datetime

import pytest

from scheduler import task_document
from store import agents
from store import runs as store_runs
from store import tasks as store_tasks
from store.db import Database
from tests.helpers import REGISTRY, rows, scalar, wait_for


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
    failing = rows(
        db,
        "SELECT w.pid, l.key, l.value FROM worker w CROSS JOIN LATERAL jsonb_each(w.loops) l "
        "WHERE w.state = 'running' AND NOT (l.value ->> 'ok')::boolean",
    )
    return failing


# -- poison among good runs ---------------------------------------------------------------------

ECHO = {
    "pipeline": [{"id": "say", "uses": "echo.message", "with": {"message": "hello ${params.n}"}}],
    "params": {"n": 1},
}
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
        lambda: (
            scalar(dbh, "SELECT count(*) FROM task_run WHERE final AND run_id = ANY(:ids)", ids=everything)
            == len(everything)
        ),
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
