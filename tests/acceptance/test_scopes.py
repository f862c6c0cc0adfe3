"""Authorisation at run time, with a real scheduler and worker: a task whose owner loses the scope its
tools need fails its next run with SCOPE_REVOKED and is paused with a task.paused event; revoking one
of several tokens that grant the scope changes nothing; the local CLI owner needs no token."""

from datetime import UTC, datetime

import pytest

from scheduler import task_document
from store import agents
from store import tasks as store_tasks
from store.db import Database
from tests.helpers import REGISTRY, HttpTarget, rows, scalar, wait_for


@pytest.fixture
def mes_url():
    with HttpTarget() as mes:
        yield mes.url


def _poll_task(conn, agent_id, url, title):
    values = task_document.validate(
        {
            "title": title,
            "schedule_kind": "rrule",
            "schedule_expr": "FREQ=SECONDLY;INTERVAL=2",
            "max_retries": 3,
            "payload": {"pipeline": [{"id": "poll", "uses": "http.request", "with": {"url": url}}]},
        },
        REGISTRY,
        now=datetime.now(UTC),
    )
    return store_tasks.create(conn, values, agent_id)


def _states(db, task_id):
    return [
        (r["state"], (r["error"] or {}).get("code"))
        for r in rows(
            db, "SELECT state, error FROM task_run WHERE task_id = :t AND final ORDER BY run_id", t=task_id
        )
    ]


def test_revoking_an_agents_last_http_token_fails_its_next_scheduled_run_and_pauses_the_task(
    ordo, db_url, mes_url
):
    db = Database(db_url)
    try:
        with db.tx() as conn:
            poller = agents.ensure_agent(conn, "poller")
            only, _ = agents.create_token(conn, poller["id"], ["tasks:write", "tools:http"])
            agents.create_token(conn, poller["id"], ["runs:read"])  # grants no tool scope
            steady = agents.ensure_agent(conn, "steady")
            first, _ = agents.create_token(conn, steady["id"], ["tools:http"])
            agents.create_token(conn, steady["id"], ["tools:http", "runs:read"])
            revoked_task = _poll_task(conn, poller["id"], mes_url, "poller's")
            kept_task = _poll_task(conn, steady["id"], mes_url, "steady's")
            local_task = _poll_task(conn, store_tasks.LOCAL_AGENT_ID, mes_url, "the CLI's")
        env = {"ORDO_SCHEDULER_HORIZON_S": "3"}
        ordo.spawn("scheduler", env=env, name="scheduler")
        ordo.spawn("worker", env=env, name="worker")
        for task in (revoked_task, kept_task, local_task):
            wait_for(
                lambda t=task: ("succeeded", None) in _states(db, t["id"]),
                timeout=90,
                what=f"a first good run of {task['title']}",
            )

        with db.tx() as conn:
            agents.revoke_token(conn, poller["id"], only["id"])
            agents.revoke_token(conn, steady["id"], first["id"])
        wait_for(
            lambda: ("dead", "SCOPE_REVOKED") in _states(db, revoked_task["id"]),
            timeout=30,
            what="the next run to fail with SCOPE_REVOKED",
        )
        wait_for(
            lambda: scalar(db, "SELECT status FROM task WHERE id = :t", t=revoked_task["id"]) == "paused",
            timeout=10,
            what="the task to be paused",
        )
        (event,) = rows(db, "SELECT agent_id, payload FROM event WHERE topic = 'task.paused'")
        assert event["agent_id"] == poller["id"]
        assert event["payload"]["task_id"] == str(revoked_task["id"])
        assert event["payload"]["reason"] == "SCOPE_REVOKED"
        assert event["payload"]["missing_scopes"] == ["tools:http"]
        # Occurrences already due together (a loaded machine) may each fail so before the pause.
        failed = rows(
            db,
            "SELECT error FROM task_run WHERE task_id = :t AND state = 'dead'",
            t=revoked_task["id"],
        )
        assert failed and all(
            f["error"]["code"] == "SCOPE_REVOKED"
            and f["error"]["retryable"] is False
            and "tools:http" in f["error"]["message"]
            for f in failed
        )

        # Nothing more of it runs; the other agent (another token left) and the CLI's task go on.
        count = len(_states(db, revoked_task["id"]))
        kept_before = _states(db, kept_task["id"]).count(("succeeded", None))
        local_before = _states(db, local_task["id"]).count(("succeeded", None))
        wait_for(
            lambda: (
                _states(db, kept_task["id"]).count(("succeeded", None)) >= kept_before + 2
                and _states(db, local_task["id"]).count(("succeeded", None)) >= local_before + 2
            ),
            timeout=30,
            what="the other tasks to keep running",
        )
        assert len(_states(db, revoked_task["id"])) == count
        assert ("dead", "SCOPE_REVOKED") not in _states(db, kept_task["id"])
        assert scalar(db, "SELECT count(*) FROM due_work WHERE task_id = :t", t=revoked_task["id"]) == 0
    finally:
        db.dispose()
