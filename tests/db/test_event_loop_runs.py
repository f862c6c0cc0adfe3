"""Runs whose steps wait on I/O, awaited side by side on the worker's event loop: a real worker in a
thread, a real database, a real HTTP server on 127.0.0.1."""

import asyncio
import threading
from datetime import UTC, datetime

import pytest
from jsonschema import Draft202012Validator

from engine import Tool, ToolRegistry
from scheduler import task_document
from store import runs as store_runs
from store import tasks as store_tasks
from tests.helpers import REGISTRY, HttpTarget, add_task, rows, running_worker, scalar, wait_for


@pytest.fixture
def slow():
    with HttpTarget(delay_s=0.5) as target:
        yield target


def _http_task(db, url, **fields):
    return add_task(
        db,
        max_retries=0,
        payload={"pipeline": [{"id": "call", "uses": "http.request", "with": {"url": url, "timeout_s": 10}}]},
        **fields,
    )


def _enqueue(db, task, n):
    with db.tx() as conn:
        return store_runs.enqueue(conn, task["id"], n=n)


def _final_states(db, run_ids):
    return rows(
        db,
        "SELECT run_id, state, steps FROM task_run WHERE run_id = ANY(:ids) AND final ORDER BY run_id",
        ids=run_ids,
    )


def _run_threads():
    """Threads a worker starts for one run (run-<id>) or one blocking step (step-<id>)."""
    return [t.name for t in threading.enumerate() if t.name.startswith(("run-", "step-"))]


def test_runs_waiting_on_http_wait_together_on_the_event_loop_without_a_thread_each(db, slow):
    task = _http_task(db, slow.url)
    run_ids = _enqueue(db, task, 30)
    threads_seen = []
    with running_worker(db, concurrency=30) as worker:
        wait_for(lambda: slow.in_flight == 30, timeout=15, what="all 30 calls in flight at once")
        threads_seen = _run_threads()
        wait_for(lambda: len(_final_states(db, run_ids)) == 30, timeout=15, what="the runs to finish")
        loop_health = worker.health.report()["event_loop"]
    assert threads_seen == []
    assert slow.most_in_flight == 30 and slow.answered == 30
    finals = _final_states(db, run_ids)
    assert [f["state"] for f in finals] == ["succeeded"] * 30
    assert all(f["steps"][0]["output"]["json"] == {"ok": True} for f in finals)
    assert scalar(db, "SELECT count(*) FROM task_run WHERE run_id = ANY(:ids)", ids=run_ids) == 30
    assert loop_health["ok"]


def test_a_pipeline_with_a_blocking_step_keeps_a_thread_of_its_own(db, slow):
    task = _add(
        db,
        [
            {"id": "call", "uses": "http.request", "with": {"url": slow.url}},
            {"id": "then", "uses": "test.blocking"},
        ],
    )
    (run_id,) = _enqueue(db, task, 1)
    with running_worker(db, registry=WITH_TEST_TOOLS):
        wait_for(lambda: slow.in_flight == 1, what="the call in flight")
        threads = _run_threads()
        wait_for(lambda: _final_states(db, [run_id]), what="the run to finish")
    assert f"run-{run_id}" in threads
    assert _final_states(db, [run_id])[0]["state"] == "succeeded"


def test_a_graceful_stop_lets_runs_on_the_event_loop_finish(db, slow):
    task = _http_task(db, slow.url)
    run_ids = _enqueue(db, task, 8)
    with running_worker(db, concurrency=8, shutdown_grace_s=10):
        wait_for(lambda: slow.in_flight == 8, what="all calls in flight")
    # the worker has stopped: every run it had started finished and was recorded, once
    finals = _final_states(db, run_ids)
    assert [f["state"] for f in finals] == ["succeeded"] * 8
    assert scalar(db, "SELECT count(*) FROM task_run WHERE run_id = ANY(:ids)", ids=run_ids) == 8


def test_runs_still_waiting_after_the_grace_period_are_given_back_for_a_retry(db, slow):
    slow.delay_s = 3.0
    task = add_task(
        db,
        max_retries=1,
        payload={
            "pipeline": [{"id": "call", "uses": "http.request", "with": {"url": slow.url, "timeout_s": 10}}]
        },
    )
    run_ids = _enqueue(db, task, 4)
    with running_worker(db, concurrency=4, shutdown_grace_s=0.3):
        wait_for(lambda: slow.in_flight == 4, what="all calls in flight")
    # nothing recorded yet, and no run lost: each is due again for another worker
    assert _final_states(db, run_ids) == []
    waiting = rows(db, "SELECT id, lease_token FROM due_work WHERE id = ANY(:ids)", ids=run_ids)
    assert sorted(w["id"] for w in waiting) == sorted(run_ids)
    slow.delay_s = 0.01
    with running_worker(db, concurrency=4):
        wait_for(lambda: len(_final_states(db, run_ids)) == 4, timeout=20, what="the retried runs")
    assert {f["state"] for f in _final_states(db, run_ids)} == {"succeeded"}


# -- tools made for these tests -----------------------------------------------------------------------


async def _crash(args, ctx):
    await asyncio.sleep(0)
    if args.get("exit"):
        raise SystemExit(3)
    raise RuntimeError("boom")


async def _hang(args, ctx):
    await asyncio.sleep(30)
    return {}


def _tool(address, timeout_s, afunc=None):
    schema = {"type": "object"}
    return Tool(
        address=address,
        description="an asynchronous test tool",
        input_schema=schema,
        output_schema=schema,
        timeout_s=timeout_s,
        scopes=(),
        runs={"kind": "python", "callable": "tests:none"},
        func=lambda args, ctx: {"done": True},
        afunc=afunc,
        input_validator=Draft202012Validator(schema),
        output_validator=Draft202012Validator(schema),
    )


WITH_TEST_TOOLS = ToolRegistry(
    [
        *REGISTRY.values(),
        _tool("test.blocking", 5),
        _tool("test.crash", 5, afunc=_crash),
        _tool("test.hang", 0.3, afunc=_hang),
    ]
)


def _add(db, pipeline):
    doc = {"title": "t", "schedule_kind": "manual", "max_retries": 0, "payload": {"pipeline": pipeline}}
    values = task_document.validate(doc, WITH_TEST_TOOLS, now=datetime.now(UTC))
    with db.tx() as conn:
        return store_tasks.create(conn, values, store_tasks.LOCAL_AGENT_ID)


def test_an_async_tool_that_raises_or_hangs_fails_its_run_and_the_loop_goes_on(db, slow):
    def one_step(uses, with_=None):
        return _add(db, [{"id": "s", "uses": uses, "with": with_ or {}}])

    crash, exit_, hang = one_step("test.crash"), one_step("test.crash", {"exit": True}), one_step("test.hang")
    fine = _http_task(db, slow.url)
    ids = [_enqueue(db, t, 1)[0] for t in (crash, exit_, hang, fine)]
    with running_worker(db, registry=WITH_TEST_TOOLS) as worker:
        wait_for(lambda: len(_final_states(db, ids)) == 4, timeout=15, what="every run to end")
        healthy = worker.health.report()["event_loop"]["ok"]
    errors = rows(db, "SELECT run_id, state, error FROM task_run WHERE run_id = ANY(:ids) AND final", ids=ids)
    by_id = {e["run_id"]: e for e in errors}
    assert by_id[ids[0]]["error"]["code"] == "TOOL_CRASHED" and "boom" in by_id[ids[0]]["error"]["message"]
    assert (
        by_id[ids[1]]["error"]["code"] == "TOOL_CRASHED" and "SystemExit" in by_id[ids[1]]["error"]["message"]
    )
    assert by_id[ids[2]]["error"]["code"] == "STEP_TIMEOUT"
    assert by_id[ids[3]]["state"] == "succeeded"
    assert healthy
