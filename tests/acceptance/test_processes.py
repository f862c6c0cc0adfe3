"""Real processes, real signals: draining, SIGKILL rescue, SIGTERM drain, scheduler failover."""

import json
import signal
import time

import pytest

from store import runs as store_runs
from store.db import Database
from tests.helpers import HttpTarget, add_task, rows, run_ordo, scalar, wait_for


@pytest.fixture
def dbh(db_url):
    db = Database(db_url)
    yield db
    db.dispose()


@pytest.fixture
def slow_server():
    with HttpTarget(delay_s=2.0) as target:
        yield target


def slow_task(db, target, **fields):
    return add_task(
        db,
        payload={
            "pipeline": [{"id": "call", "uses": "http.request", "with": {"url": target.url, "timeout_s": 30}}]
        },
        **fields,
    )


def test_four_workers_drain_2000_runs_each_exactly_once(ordo, dbh):
    task = add_task(dbh)
    with dbh.tx() as conn:
        store_runs.enqueue(conn, task["id"], n=2000)
    workers = [ordo.spawn("worker", "--concurrency", "16", name="worker") for _ in range(4)]
    wait_for(
        lambda: scalar(dbh, "SELECT count(*) FROM task_run WHERE state = 'succeeded'") >= 2000,
        timeout=120,
        interval=0.2,
        what="2000 runs to succeed",
    )
    # The first three can drain the queue before the fourth has started; a signal that arrives while
    # a process is still importing would end it before it can handle it.
    pids = [w.pid for w in workers]
    wait_for(
        lambda: scalar(dbh, "SELECT count(*) FROM worker WHERE pid = ANY(:pids)", pids=pids) == 4,
        timeout=60,
        what="all four workers to register",
    )
    for w in workers:
        w.send_signal(signal.SIGTERM)
    assert [w.wait(30) for w in workers] == [0, 0, 0, 0]
    assert scalar(dbh, "SELECT count(*) FROM task_run") == 2000
    assert scalar(dbh, "SELECT count(DISTINCT run_id) FROM task_run WHERE state = 'succeeded'") == 2000
    assert scalar(dbh, "SELECT count(*) FROM task_run WHERE attempt <> 1") == 0
    assert scalar(dbh, "SELECT count(*) FROM due_work") == 0
    per_worker = rows(dbh, "SELECT worker_id, count(*) AS n FROM task_run GROUP BY worker_id")
    assert len(per_worker) >= 2  # the work was shared, not taken by one worker


def test_a_worker_killed_mid_run_has_its_run_finished_by_another_exactly_once(ordo, dbh, slow_server):
    task = slow_task(dbh, slow_server, max_retries=3)
    with dbh.tx() as conn:
        (run_id,) = store_runs.enqueue(conn, task["id"])
    victim = ordo.spawn("worker", name="victim")
    wait_for(lambda: slow_server.hits, timeout=30, what="the victim to start the run")
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    ordo.spawn("worker", name="rescuer")
    wait_for(
        lambda: (
            scalar(dbh, "SELECT state FROM task_run WHERE run_id = :id AND final", id=run_id) == "succeeded"
        ),
        timeout=60,
        interval=0.2,
        what="the rescued run to succeed",
    )
    attempts = rows(
        dbh, "SELECT attempt, state, error FROM task_run WHERE run_id = :id ORDER BY attempt", id=run_id
    )
    assert [(a["attempt"], a["state"]) for a in attempts] == [(1, "failed"), (2, "succeeded")]
    assert attempts[0]["error"]["code"] == "LEASE_EXPIRED"
    assert scalar(dbh, "SELECT count(*) FROM task_run WHERE state = 'succeeded'") == 1


def test_sigterm_finishes_the_running_run_and_hands_back_the_rest(ordo, dbh, slow_server):
    task = slow_task(dbh, slow_server)
    with dbh.tx() as conn:
        (running_id,) = store_runs.enqueue(conn, task["id"])
    worker = ordo.spawn("worker", "--concurrency", "1", "--shutdown-grace-s", "20", name="worker")
    wait_for(lambda: slow_server.hits, timeout=30, what="the run to start")
    with dbh.tx() as conn:
        waiting = store_runs.enqueue(conn, task["id"], n=3)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert (
        scalar(dbh, "SELECT state FROM task_run WHERE run_id = :id AND final", id=running_id) == "succeeded"
    )
    states = rows(dbh, "SELECT state, attempt, lease_token FROM due_work WHERE id = ANY(:ids)", ids=waiting)
    assert all((s["state"], s["attempt"], s["lease_token"]) == ("queued", 0, None) for s in states)
    assert scalar(dbh, "SELECT state FROM worker") == "stopped"
    assert slow_server.hits == 1


def test_two_schedulers_fail_over_without_duplicating_an_occurrence(ordo, dbh):
    add_task(dbh, schedule_kind="cron", schedule_expr="* * * * *")
    add_task(dbh, schedule_kind="rrule", schedule_expr="FREQ=MINUTELY;INTERVAL=2")
    env = {"ORDO_SCHEDULER_HORIZON_S": "900"}
    first = ordo.spawn("scheduler", env=env, name="sched-a")
    second = ordo.spawn("scheduler", env=env, name="sched-b")
    leader_id = wait_for(
        lambda: scalar(dbh, "SELECT scheduler_id FROM scheduler_leader"), timeout=30, what="a leader"
    )
    wait_for(lambda: scalar(dbh, "SELECT count(*) FROM due_work") > 0, timeout=30)
    leader, standby = (first, second) if leader_id.endswith(f":{first.pid}") else (second, first)
    before = scalar(dbh, "SELECT count(*) FROM due_work") + scalar(dbh, "SELECT count(*) FROM task_run")
    leader.send_signal(signal.SIGKILL)
    leader.wait(10)
    killed_at = time.monotonic()
    wait_for(
        lambda: scalar(dbh, "SELECT scheduler_id FROM scheduler_leader") != leader_id,
        timeout=10,
        what="the standby to take over within 10 s",
    )
    took_over_s = time.monotonic() - killed_at
    with dbh.tx() as conn:
        # Make the new leader re-expand a window the old one already wrote.
        conn.execute(
            __import__("sqlalchemy").text(
                "UPDATE task_expansion SET expand_from = now() - interval '30 seconds'"
            )
        )
    time.sleep(1.5)
    assert standby.poll() is None
    assert (
        scalar(dbh, "SELECT count(*) FROM due_work") + scalar(dbh, "SELECT count(*) FROM task_run") >= before
    )
    duplicates = scalar(
        dbh,
        "SELECT count(*) FROM (SELECT task_id, scheduled_for FROM ("
        " SELECT task_id, scheduled_for FROM due_work"
        " UNION ALL SELECT task_id, scheduled_for FROM task_run WHERE final) o"
        " GROUP BY 1, 2 HAVING count(*) > 1) d",
    )
    assert duplicates == 0
    assert took_over_s < 10


def test_ordo_up_runs_everything_on_an_embedded_server(tmp_path):
    """The README's first command: embedded PostgreSQL, migrations, scheduler, worker; stops cleanly."""
    import os
    import subprocess
    import sys

    from tests.acceptance.conftest import REPO

    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(ORDO_DATA_DIR=str(data_dir), ORDO_LOG_FORMAT="json", ORDO_POLL_S="0.2")
    up = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "up", "--no-api"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        task_file = tmp_path / "t.json"
        task_file.write_text(
            json.dumps(
                {
                    "title": "hello",
                    "schedule_kind": "manual",
                    "payload": {
                        "pipeline": [{"id": "a", "uses": "echo.message", "with": {"message": "from up"}}]
                    },
                }
            )
        )

        def cli(*args):
            return run_ordo(*args, env=env)

        added = wait_for(lambda: cli("task", "add", str(task_file), "--json"), timeout=60)
        assert added.returncode == 0, added.stderr
        task_id = json.loads(added.stdout)["id"]
        done = cli("task", "run", task_id, "--wait", "--timeout-s", "60", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["steps"][0]["output"] == {"message": "from up"}
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(60)
    errors = up.stderr.read().decode() if up.stderr else ""
    if up.stderr:
        up.stderr.close()
    assert code == 0, errors
    assert (data_dir / "pg" / "PG_VERSION").exists()
    deadline = time.monotonic() + 30
    while (data_dir / "pg" / "postmaster.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not (data_dir / "pg" / "postmaster.pid").exists(), "the embedded server was not stopped"


def test_processes_share_one_embedded_server_which_stops_with_the_last_and_keeps_its_data(tmp_path):
    """Every ordo process with the same ORDO_DATA_DIR joins one server; the last one out stops it."""
    import os
    import subprocess
    import sys

    from tests.acceptance.conftest import REPO

    data_dir = tmp_path / "data"
    pidfile = data_dir / "pg" / "postmaster.pid"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(ORDO_DATA_DIR=str(data_dir), ORDO_LOG_FORMAT="json", ORDO_POLL_S="0.2")

    def cli(*args):
        return run_ordo(*args, env=env)

    def worker():
        return subprocess.Popen(
            [sys.executable, "-m", "cli.main", "worker"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    first = worker()
    second = None
    try:
        wait_for(lambda: pidfile.exists(), timeout=60, what="the first worker to start the server")
        task_file = tmp_path / "t.json"
        task_file.write_text(
            json.dumps(
                {
                    "title": "kept",
                    "schedule_kind": "manual",
                    "payload": {
                        "pipeline": [{"id": "a", "uses": "echo.message", "with": {"message": "still here"}}]
                    },
                }
            )
        )
        task_id = json.loads(cli("task", "add", str(task_file), "--json").stdout)["id"]
        done = cli("task", "run", task_id, "--wait", "--timeout-s", "60", "--json")
        assert done.returncode == 0, done.stderr
        second = worker()
        handles = data_dir / "pg" / ".handle_pids.json"

        def joined() -> bool:
            try:
                return second.pid in json.loads(handles.read_text() or "[]")
            except ValueError:  # being rewritten by a process joining or leaving
                return False

        wait_for(joined, timeout=60, what="the second worker to join the server")
        first.send_signal(signal.SIGTERM)
        assert first.wait(60) == 0
        assert pidfile.exists(), "the server stopped while another process still used it"
        assert json.loads(cli("runs", "--json").stdout)[0]["state"] == "succeeded"
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0
        wait_for(lambda: not pidfile.exists(), timeout=30, what="the last process to stop the server")
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    restarted = cli("runs", "--json")
    assert restarted.returncode == 0, restarted.stderr
    (run,) = json.loads(restarted.stdout)
    assert run["steps"][0]["output"] == {"message": "still here"}
    wait_for(lambda: not pidfile.exists(), timeout=30, what="the one-shot command to stop the server again")
