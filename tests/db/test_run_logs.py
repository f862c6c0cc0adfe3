"""Every log line about a run names the run, its task and the worker (and the step, for a step's
lines), including the lines of a lease lost to another worker and of its fenced result."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import structlog
from jsonschema import Draft202012Validator
from sqlalchemy import text
from structlog.testing import capture_logs

from engine import Tool, ToolRegistry
from scheduler import task_document
from store import runs as store_runs
from store import tasks as store_tasks
from tests.helpers import REGISTRY, running_worker, scalar, wait_for

GATE = threading.Event()
ENTERED = threading.Event()


def _tool(address: str, func: Any) -> Tool:
    return Tool(
        address=address,
        description=address,
        input_schema={"type": "object"},
        output_schema={"type": "object"},
        timeout_s=20,
        scopes=(),
        runs={"kind": "python", "callable": "tests:none"},
        func=func,
        inline=False,
        input_validator=Draft202012Validator({"type": "object"}),
        output_validator=Draft202012Validator({"type": "object"}),
    )


def _chatty(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    ctx.log.info("tool_says", detail="working")
    return {}


def _crashes(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    raise RuntimeError("the tool broke")


def _gated(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    ENTERED.set()
    GATE.wait(20)
    return {}


TOOLS = ToolRegistry(
    [
        *REGISTRY.values(),
        _tool("test.chatty", _chatty),
        _tool("test.crashes", _crashes),
        _tool("test.gated", _gated),
    ]
)


def _task(db: Any, uses: str) -> dict[str, Any]:
    doc = {
        "title": uses,
        "schedule_kind": "manual",
        "max_retries": 0,
        "payload": {"pipeline": [{"id": "only", "uses": uses, "with": {}}]},
    }
    values = task_document.validate(doc, TOOLS, now=datetime.now(UTC))
    with db.tx() as conn:
        return store_tasks.create(conn, values, store_tasks.LOCAL_AGENT_ID)


def _run(db: Any, task: dict[str, Any]) -> int:
    with db.tx() as conn:
        (run_id,) = store_runs.enqueue(conn, task["id"])
    return run_id


def _finished(db: Any, run_id: int) -> Any:
    return scalar(db, "SELECT state FROM task_run WHERE run_id = :id AND final", id=run_id)


def test_every_line_about_a_run_names_run_task_and_worker(db):
    GATE.clear()
    ENTERED.clear()
    chatty, crashes, gated = _task(db, "test.chatty"), _task(db, "test.crashes"), _task(db, "test.gated")
    with (
        capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs,
        running_worker(db, TOOLS, lease_s=3) as worker,
    ):
        said, crashed = _run(db, chatty), _run(db, crashes)
        wait_for(lambda: _finished(db, said) and _finished(db, crashed), what="two runs to finish")
        lost = _run(db, gated)
        wait_for(ENTERED.is_set, what="the gated run to start")
        # Another worker took the lease (as a rescue would): this worker's lease is gone.
        with db.tx() as conn:
            conn.execute(
                text("UPDATE due_work SET lease_token = gen_random_uuid() WHERE id = :id"), {"id": lost}
            )
        wait_for(lambda: any(e["event"] == "lease_lost" for e in logs), timeout=15, what="lease_lost")
        GATE.set()
        wait_for(lambda: any(e["event"] == "completion_fenced" for e in logs), timeout=15, what="fenced")
    by_run = [e for e in logs if "run_id" in e and not isinstance(e["run_id"], list)]
    events = {e["event"] for e in by_run}
    assert {"tool_says", "tool_crashed", "run_finished", "lease_lost", "completion_fenced"} <= events
    for entry in by_run:
        assert entry.get("task_id") and entry.get("worker_id") == worker.id, entry
    for entry in by_run:
        if entry["event"] in ("tool_says", "tool_crashed"):
            assert entry["step"] == "only", entry
    run_of = {said: chatty["id"], crashed: crashes["id"], lost: gated["id"]}
    for entry in by_run:
        assert entry["task_id"] == str(run_of[entry["run_id"]]), entry
