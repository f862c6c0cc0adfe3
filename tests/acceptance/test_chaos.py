"""Chaos: workers killed with SIGKILL and restarted while they drain a large queue. Slow; run with
`ops/test -m slow`."""

import random
import signal
import time

import pytest

from store import runs as store_runs
from store.db import Database
from tests.helpers import add_task, rows, scalar, wait_for

pytestmark = pytest.mark.slow


def test_runs_survive_repeated_sigkills_each_succeeding_exactly_once(ordo, db_url):
    """120,000 runs; every half second one of three workers is killed and replaced. Nothing is lost and no
    run is recorded twice: a killed worker's claim rolls back with it, so every run has exactly one
    recorded attempt."""
    db = Database(db_url)
    try:
        task = add_task(db, max_retries=20, backoff={"base_s": 0.1, "cap_s": 0.5, "jitter": 0.5})
        with db.tx() as conn:
            store_runs.enqueue(conn, task["id"], n=120000)
        rng = random.Random(7)
        workers = [ordo.spawn("worker", "--concurrency", "64", name="w") for _ in range(3)]
        kills = 0
        deadline = time.monotonic() + 240
        while scalar(db, "SELECT count(*) FROM due_work") > 0 and time.monotonic() < deadline:
            time.sleep(0.5)
            if kills < 20:
                victim = workers.pop(rng.randrange(len(workers)))
                victim.send_signal(signal.SIGKILL)
                victim.wait(10)
                kills += 1
                workers.append(ordo.spawn("worker", "--concurrency", "64", name="w"))
        wait_for(
            lambda: scalar(db, "SELECT count(*) FROM due_work") == 0,
            timeout=120,
            interval=0.5,
            what="the queue to drain after the last kill",
        )
        live = {w.pid for w in workers}
        wait_for(
            lambda: live <= {r["pid"] for r in rows(db, "SELECT pid FROM worker WHERE state = 'running'")},
            timeout=60,
            what="the replacement workers to be up before they are stopped",
        )
        for w in workers:
            w.send_signal(signal.SIGTERM)
        assert [w.wait(60) for w in workers] == [0] * len(workers)

        assert scalar(db, "SELECT count(*) FROM task_run WHERE final") == 120000
        assert scalar(db, "SELECT count(*) FROM task_run WHERE state = 'succeeded'") == 120000
        assert scalar(db, "SELECT count(*) FROM task_run WHERE state = 'dead'") == 0
        doubled = rows(
            db, "SELECT run_id FROM task_run WHERE state = 'succeeded' GROUP BY run_id HAVING count(*) > 1"
        )
        assert doubled == []
        assert scalar(db, "SELECT count(*) FROM task_run WHERE attempt <> 1") == 0
        assert kills >= 3
    finally:
        db.dispose()
