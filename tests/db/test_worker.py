"""A worker in a thread against a real database: runs, retries, cancellation, NOTIFY, shutdown."""

import json
import threading
import time
from datetime import UTC, datetime

from jsonschema import Draft202012Validator
from sqlalchemy import text

from engine import Tool, ToolRegistry
from scheduler import task_document
from store import runs as store_runs
from store import tasks as store_tasks
from tests.helpers import REGISTRY, add_task, rows, running_worker, scalar, wait_for

GATE = threading.Event()
ENTERED = threading.Event()


def _gated(args, ctx):
    ENTERED.set()
    GATE.wait(10)
    return {"released": True}


GATED = Tool(
    address="test.gated",
    description="blocks until the test opens the gate",
    input_schema={"type": "object"},
    output_schema={"type": "object"},
    timeout_s=20,
    scopes=(),
    runs={"kind": "python", "callable": "tests:none"},
    func=_gated,
    inline=False,
    input_validator=Draft202012Validator({"type": "object"}),
    output_validator=Draft202012Validator({"type": "object"}),
)
WITH_GATE = ToolRegistry([*REGISTRY.values(), GATED])


def finished(db, run_id):
    return scalar(db, "SELECT state FROM task_run WHERE run_id = :id AND final", id=run_id)


def test_a_queued_run_is_executed_and_its_steps_recorded(db):
    task = add_task(db)
    with db.tx() as conn:
        (run_id,) = store_runs.enqueue(conn, task["id"], params={"who": "planner"})
    with running_worker(db):
        wait_for(lambda: finished(db, run_id), what="the run to finish")
    with db.tx() as conn:
        run = store_runs.get(conn, run_id)
    assert run["state"] == "succeeded" and run["attempt"] == 1
    (step,) = run["steps"]
    assert (step["id"], step["uses"], step["state"]) == ("say", "echo.message", "ok")
    assert step["output"] == {"message": "hello planner"}
    assert run["attempts"][0]["worker_id"]


def test_event_payload_and_run_fields_reach_templates(db):
    task = add_task(
        db,
        schedule_kind="event",
        schedule_expr="orders.created",
        payload={
            "pipeline": [
                {
                    "id": "say",
                    "uses": "echo.message",
                    "with": {"message": "order ${event.payload.order} attempt ${run.attempt}"},
                }
            ]
        },
    )
    with db.tx() as conn:
        event_id = conn.execute(
            text(
                "INSERT INTO event (agent_id, topic, payload) "
                "VALUES (:a, 'orders.created', CAST(:p AS jsonb)) RETURNING id"
            ),
            {"a": store_tasks.LOCAL_AGENT_ID, "p": json.dumps({"order": 42})},
        ).scalar_one()
        (run_id,) = store_runs.enqueue(conn, task["id"], origin="event", event_id=event_id)
    with running_worker(db):
        wait_for(lambda: finished(db, run_id))
    output = scalar(db, "SELECT steps FROM task_run WHERE run_id = :id", id=run_id)[0]["output"]
    assert output == {"message": "order 42 attempt 1"}


def test_a_failing_run_is_retried_with_backoff_then_dead(db):
    task = add_task(
        db,
        max_retries=2,
        backoff={"base_s": 0.05, "cap_s": 0.1, "jitter": 0},
        payload={
            "pipeline": [
                {"id": "get", "uses": "http.request", "with": {"url": "http://127.0.0.1:9/", "timeout_s": 1}}
            ]
        },
    )
    with db.tx() as conn:
        (run_id,) = store_runs.enqueue(conn, task["id"])
    with running_worker(db):
        wait_for(lambda: finished(db, run_id), timeout=15)
    attempts = rows(
        db, "SELECT attempt, state, error FROM task_run WHERE run_id = :id ORDER BY attempt", id=run_id
    )
    assert [(a["attempt"], a["state"]) for a in attempts] == [(1, "failed"), (2, "failed"), (3, "dead")]
    assert all(a["error"]["code"] == "HTTP_UNREACHABLE" for a in attempts)
    with db.tx() as conn:
        assert store_runs.get(conn, run_id)["state"] == "dead"


def test_a_permanent_failure_is_dead_at_once(db):
    task = add_task(
        db,
        max_retries=5,
        payload={
            "pipeline": [{"id": "a", "uses": "echo.message", "with": {"message": "${params.n}"}}],
            "params": {"n": 1},
        },
    )
    with db.tx() as conn:
        (run_id,) = store_runs.enqueue(conn, task["id"])
    with running_worker(db):
        wait_for(lambda: finished(db, run_id))
    assert scalar(db, "SELECT count(*) FROM task_run WHERE run_id = :id", id=run_id) == 1
    assert scalar(db, "SELECT error->>'code' FROM task_run WHERE run_id = :id", id=run_id) == "INPUT_INVALID"


def test_a_running_run_is_canceled_at_the_next_step_boundary(db):
    GATE.clear()
    ENTERED.clear()
    values = task_document.validate(
        {
            "title": "gated",
            "schedule_kind": "manual",
            "payload": {
                "pipeline": [
                    {"id": "wait", "uses": "test.gated"},
                    {"id": "after", "uses": "echo.message", "with": {"message": "must not run"}},
                ]
            },
        },
        WITH_GATE,
        now=datetime.now(UTC),
    )
    with db.tx() as conn:
        task = store_tasks.create(conn, values, store_tasks.LOCAL_AGENT_ID)
        (run_id,) = store_runs.enqueue(conn, task["id"])
    with running_worker(db, registry=WITH_GATE, lease_s=3):
        assert ENTERED.wait(10)
        with db.tx() as conn:
            assert store_runs.cancel(conn, run_id)["cancel_requested"]
        time.sleep(1.5)  # one heartbeat (lease_s / 3) carries the request to the worker
        GATE.set()
        wait_for(lambda: finished(db, run_id))
    run = rows(db, "SELECT state, steps FROM task_run WHERE run_id = :id", id=run_id)[0]
    assert run["state"] == "canceled"
    assert [s["id"] for s in run["steps"]] == ["wait"]


def test_notify_wakes_an_idle_worker_long_before_its_poll_interval(db):
    task = add_task(db)
    with running_worker(db, poll_s=30):
        time.sleep(0.5)  # the worker is idle, waiting on NOTIFY
        started = time.monotonic()
        with db.tx() as conn:
            (run_id,) = store_runs.enqueue(conn, task["id"])
        wait_for(lambda: finished(db, run_id), timeout=10)
        assert time.monotonic() - started < 10  # far below poll_s: the wake-up came from NOTIFY


def test_stopping_lets_a_running_run_finish_within_the_grace_period(db):
    GATE.clear()
    ENTERED.clear()
    values = task_document.validate(
        {
            "title": "gated",
            "schedule_kind": "manual",
            "payload": {"pipeline": [{"id": "wait", "uses": "test.gated"}]},
        },
        WITH_GATE,
        now=datetime.now(UTC),
    )
    with db.tx() as conn:
        task = store_tasks.create(conn, values, store_tasks.LOCAL_AGENT_ID)
        (run_id,) = store_runs.enqueue(conn, task["id"])
    opener = threading.Timer(1.0, GATE.set)
    with running_worker(db, registry=WITH_GATE, shutdown_grace_s=10):
        assert ENTERED.wait(10)
        opener.start()
    assert finished(db, run_id) == "succeeded"
    assert scalar(db, "SELECT state FROM worker") == "stopped"


_ACTIVE = {"now": 0, "max": 0}
_ACTIVE_LOCK = threading.Lock()


def _occupy(args, ctx):
    with _ACTIVE_LOCK:
        _ACTIVE["now"] += 1
        _ACTIVE["max"] = max(_ACTIVE["max"], _ACTIVE["now"])
    time.sleep(0.05)
    with _ACTIVE_LOCK:
        _ACTIVE["now"] -= 1
    return {}


OCCUPY = Tool(
    address="test.occupy",
    description="holds a slot for 50 ms and counts how many run at once",
    input_schema={"type": "object"},
    output_schema={"type": "object"},
    timeout_s=5,
    scopes=(),
    runs={"kind": "python", "callable": "tests:none"},
    func=_occupy,
)


def test_a_concurrency_key_caps_runs_across_workers(db):
    registry = ToolRegistry([*REGISTRY.values(), OCCUPY])
    values = task_document.validate(
        {
            "title": "press",
            "schedule_kind": "manual",
            "concurrency_key": "press-7",
            "concurrency_limit": 2,
            "payload": {"pipeline": [{"id": "work", "uses": "test.occupy"}]},
        },
        registry,
        now=datetime.now(UTC),
    )
    with db.tx() as conn:
        task = store_tasks.create(conn, values, store_tasks.LOCAL_AGENT_ID)
        run_ids = store_runs.enqueue(conn, task["id"], n=12)
    _ACTIVE.update(now=0, max=0)
    with (
        running_worker(db, registry=registry, concurrency=4),
        running_worker(db, registry=registry, concurrency=4),
    ):
        wait_for(lambda: all(finished(db, r) for r in run_ids), timeout=30, what="all keyed runs")
    assert {finished(db, r) for r in run_ids} == {"succeeded"}
    assert _ACTIVE["max"] == 2
