"""Authorisation at run time, the cases no NOTIFY announces or that end an agent as a whole: a worker
in a thread of this process against a real database, calling a real HTTP server on 127.0.0.1.

- The agent's only token granting `tools:http` expires: nothing is revoked, so no NOTIFY empties the
  worker's scope cache; the cache must not outlive the token (it is kept no later than the first
  expiry of a token it relies on).
- The agent is deleted (disabled): its tasks are paused at once, and a run queued by hand after that
  fails with SCOPE_REVOKED rather than calling out on the agent's behalf.
"""

import time
from datetime import UTC, datetime, timedelta

import pytest

from scheduler import task_document
from store import agents
from store import runs as store_runs
from store import tasks as store_tasks
from tests.helpers import REGISTRY, HttpTarget, rows, running_worker, scalar, wait_for


@pytest.fixture
def target():
    with HttpTarget() as server:
        yield server


def _http_task(conn, agent_id, url):
    values = task_document.validate(
        {
            "title": "poll",
            "schedule_kind": "manual",
            "max_retries": 3,
            "payload": {"pipeline": [{"id": "poll", "uses": "http.request", "with": {"url": url}}]},
        },
        REGISTRY,
        now=datetime.now(UTC),
    )
    return store_tasks.create(conn, values, agent_id)


def _run(db, task_id):
    """Queue one run by hand and wait for its final attempt: (state, error code, attempt)."""
    with db.tx() as conn:
        (run_id,) = store_runs.enqueue(conn, task_id)
    (row,) = wait_for(
        lambda: rows(db, "SELECT state, error, attempt FROM task_run WHERE run_id = :r AND final", r=run_id),
        timeout=20,
        what=f"run {run_id} to end",
    )
    return row["state"], (row["error"] or {}).get("code"), row["attempt"]


def _paused_events(db, task_id):
    """The task.paused events Ordo recorded about this task (pauses Ordo made, with their reason)."""
    return rows(
        db,
        "SELECT agent_id, payload FROM event WHERE topic = 'task.paused' AND payload->>'task_id' = :t",
        t=str(task_id),
    )


def test_a_task_whose_only_http_token_expires_fails_its_next_run_with_scope_revoked(db, target):
    db_now = scalar(db, "SELECT now()")
    with db.tx() as conn:
        owner = agents.ensure_agent(conn, "expiring")
        agents.create_token(conn, owner["id"], ["tools:http"], expires_at=db_now + timedelta(seconds=4))
        agents.create_token(conn, owner["id"], ["runs:read"])  # alive, but grants no tool scope
        task = _http_task(conn, owner["id"], target.url)
    with running_worker(db) as worker:
        worker.owners.ttl_s = 3600.0  # only the token's expiry may end the cached grant
        assert _run(db, task["id"]) == ("succeeded", None, 1)
        hits = target.hits
        wait_for(
            lambda: scalar(db, "SELECT now()") > db_now + timedelta(seconds=4.2),
            timeout=15,
            what="the token to expire",
        )
        assert _run(db, task["id"]) == ("dead", "SCOPE_REVOKED", 1)
        wait_for(
            lambda: scalar(db, "SELECT status FROM task WHERE id = :t", t=task["id"]) == "paused",
            timeout=10,
            what="the task to be paused",
        )
    assert target.hits == hits  # the expired grant called nobody
    (event,) = _paused_events(db, task["id"])
    assert event["agent_id"] == owner["id"]
    assert event["payload"]["reason"] == "SCOPE_REVOKED"
    assert event["payload"]["missing_scopes"] == ["tools:http"]


def test_a_run_of_a_deleted_agents_task_fails_with_scope_revoked_and_calls_nobody(db, target):
    with db.tx() as conn:
        owner = agents.ensure_agent(conn, "leaving")
        admin = agents.ensure_agent(conn, "admin")
        agents.create_token(conn, owner["id"], ["tools:http", "tasks:write"])
        task = _http_task(conn, owner["id"], target.url)
    with running_worker(db) as worker:
        worker.owners.ttl_s = 3600.0  # the deletion's NOTIFY must empty the cache, not its age
        assert _run(db, task["id"]) == ("succeeded", None, 1)
        hits = target.hits
        with db.tx() as conn:
            agents.disable_agent(conn, owner["id"], by=admin["id"])
        assert scalar(db, "SELECT status FROM task WHERE id = :t", t=task["id"]) == "paused"
        # A paused task may still be run by hand; its owner no longer holds what its tool needs.
        deadline = time.monotonic() + 10
        outcome = _run(db, task["id"])
        while outcome[0] == "succeeded" and time.monotonic() < deadline:  # NOTIFY not heard yet
            outcome = _run(db, task["id"])
        assert outcome == ("dead", "SCOPE_REVOKED", 1)
        hits_after = target.hits
        assert _run(db, task["id"]) == ("dead", "SCOPE_REVOKED", 1)
    assert target.hits == hits_after
    # Paused by the deletion itself; the failed runs do not pause it a second time.
    assert _paused_events(db, task["id"]) == []
    assert hits_after - hits <= 1
