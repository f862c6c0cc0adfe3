"""Runs as people read them: history newest scheduled first without what is written ahead, upcoming
occurrences on their own, a dead run retried under its id, queue depth counting only runs due now."""

from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import text

from scheduler import task_document
from scheduler.service import SchedulerConfig, SchedulerService
from store import agents
from store import runs as store_runs
from store import tasks as store_tasks
from tests.helpers import REGISTRY, add_task, echo_payload, running_worker, scalar, wait_for

EVERY_2_S = "FREQ=SECONDLY;INTERVAL=2"


def _succeeded(db, task_id) -> int:
    return scalar(
        db, "SELECT count(*) FROM task_run WHERE task_id = :t AND final AND state = 'succeeded'", t=task_id
    )


def test_history_shows_what_ran_newest_first_and_not_what_is_written_ahead(db):
    """A 2-second RRULE with a 10-minute horizon has ~300 occurrences written ahead. After five have
    run, the first page of history is those runs, newest scheduled first; the ~295 others are listed
    by list_upcoming, soonest first."""
    start = datetime.now(UTC)
    task = add_task(db, now=start, schedule_kind="rrule", schedule_expr=EVERY_2_S)
    scheduler = SchedulerService(db, SchedulerConfig(horizon_s=600), structlog.get_logger("test"), "s1")
    try:
        scheduler.tick()
        with running_worker(db):
            wait_for(lambda: _succeeded(db, task["id"]) >= 5, timeout=30, what="five runs to succeed")
    finally:
        scheduler.step_down()
    now = datetime.now(UTC)

    with db.tx() as conn:
        page = store_runs.list_page(conn, task_id=task["id"], limit=5)
        ahead = store_runs.list_upcoming(conn, task_id=task["id"], limit=5)

    history = [run["scheduled_for"] for run in page.items]
    assert [run["state"] for run in page.items].count("succeeded") >= 4
    assert all(run["state"] != "scheduled" for run in page.items)
    assert history == sorted(history, reverse=True)
    assert all(datetime.fromisoformat(t) <= now for t in history)
    assert datetime.fromisoformat(history[0]) > now - timedelta(seconds=6)  # the newest, not the oldest
    upcoming = [run["scheduled_for"] for run in ahead.items]
    assert {run["state"] for run in ahead.items} == {"scheduled"}
    assert upcoming == sorted(upcoming) and upcoming[0] > history[0]


def test_history_and_upcoming_page_without_gaps_or_repeats(db):
    """Keyset pages over (scheduled_for, id) in both directions cover every run exactly once."""
    base = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
    task = add_task(db)
    with db.tx() as conn:
        # Three ended runs and four written ahead of `now`, two sharing an instant (ids break the tie).
        for minutes in (-30, -20, -10, 10, 10, 20, 30):
            conn.execute(
                text(
                    "INSERT INTO due_work (task_id, origin, scheduled_for, run_at, priority, max_attempts, "
                    "agent_id) VALUES (:t, 'manual', :at, :at, 5, 1, "
                    "(SELECT agent_id FROM task WHERE id = :t))"
                ),
                {"t": task["id"], "at": base + timedelta(minutes=minutes)},
            )
    now = base

    def pages(listing):
        seen, cursor = [], None
        while True:
            with db.tx() as conn:
                page = listing(conn, task_id=task["id"], cursor=cursor, limit=2, now=now)
            seen += [(run["scheduled_for"], run["id"]) for run in page.items]
            if page.next_cursor is None:
                return seen
            cursor = page.next_cursor

    history, upcoming = pages(store_runs.list_page), pages(store_runs.list_upcoming)

    assert len(history) == 3 and history == sorted(history, reverse=True)
    assert len(upcoming) == 4 and upcoming == sorted(upcoming)
    assert len({run_id for _, run_id in history + upcoming}) == 7


def test_each_agent_pages_through_its_own_history_whatever_others_ran(db):
    """Two agents' runs interleave in time, ended by a worker and by cancels of a run and of a task,
    and some still wait. Each agent's pages hold its own runs only, newest scheduled first, without
    gaps or repeats; an admin's hold everyone's. Every queued run and every history row carries its
    owner (task_run_owner_idx lists them)."""
    with db.tx() as conn:
        other = agents.ensure_agent(conn, "other-team")["id"]
        doc = {"title": "theirs", "schedule_kind": "manual", "payload": echo_payload()}
        theirs = store_tasks.create(conn, task_document.validate(doc, REGISTRY, now=datetime.now(UTC)), other)
    ours, ours_canceled = add_task(db), add_task(db)
    with db.tx() as conn:
        for _ in range(3):
            store_runs.enqueue(conn, ours["id"], n=2)
            store_runs.enqueue(conn, theirs["id"], n=3)
    with running_worker(db):
        wait_for(lambda: scalar(db, "SELECT count(*) FROM due_work") == 0, timeout=30, what="the runs")
    with db.tx() as conn:
        (waiting,) = store_runs.enqueue(conn, theirs["id"])
        store_runs.cancel(conn, waiting, agent_id=other)
        store_runs.enqueue(conn, ours_canceled["id"], n=2)
        store_tasks.cancel(conn, ours_canceled["id"])
        store_runs.enqueue(conn, ours["id"])
        store_runs.enqueue(conn, theirs["id"], n=2)

    def pages(agent_id):
        seen, cursor = [], None
        while True:
            with db.tx() as conn:
                page = store_runs.list_page(conn, agent_id=agent_id, cursor=cursor, limit=4)
            seen += [(run["scheduled_for"], run["id"], run["task_id"], run["state"]) for run in page.items]
            if page.next_cursor is None:
                return seen
            cursor = page.next_cursor

    mine, theirs_listed, everyone = pages(store_tasks.LOCAL_AGENT_ID), pages(other), pages(None)
    assert [run[:2] for run in everyone] == sorted((run[:2] for run in everyone), reverse=True)
    assert len({run[1] for run in everyone}) == len(everyone) == 6 + 9 + 1 + 2 + 3
    assert sorted(mine + theirs_listed, reverse=True) == everyone
    assert {run[2] for run in mine} == {str(ours["id"]), str(ours_canceled["id"])}
    assert {run[2] for run in theirs_listed} == {str(theirs["id"])}
    assert sorted(run[3] for run in theirs_listed) == ["canceled"] + ["queued"] * 2 + ["succeeded"] * 9
    assert sorted(run[3] for run in mine) == ["canceled"] * 2 + ["queued"] + ["succeeded"] * 6
    owned = "SELECT count(*) FROM {} r JOIN task t ON t.id = r.task_id WHERE r.agent_id = t.agent_id"
    assert scalar(db, owned.format("task_run")) == len(everyone) - 3
    assert scalar(db, owned.format("due_work")) == 3


def test_retrying_a_dead_run_makes_a_new_attempt_under_the_same_id(db):
    """A run that died (no retries left) gets one more attempt with the parameters it ran with."""
    task = add_task(
        db,
        max_retries=0,
        payload={"pipeline": [{"id": "say", "uses": "echo.message", "with": {"message": "${params.msg}"}}]},
    )
    with db.tx() as conn:
        (run_id,) = store_runs.enqueue(conn, task["id"], params={"other": 1})
    with running_worker(db):
        wait_for(lambda: _state(db, run_id) == "dead", what="the run to die")
        with db.tx() as conn:  # the run has left the queue: its params come back from its history
            retried = store_runs.retry(conn, run_id)
        wait_for(lambda: _state(db, run_id) == "dead", what="the retried run to end")
    with db.tx() as conn:
        run = store_runs.get(conn, run_id)

    assert retried["id"] == run_id and retried["state"] in ("failed", "running", "dead")
    assert [a["state"] for a in run["attempts"]] == ["failed", "dead"]
    assert run["attempt"] == 2 and run["max_attempts"] == 2
    assert scalar(db, "SELECT params FROM task_run WHERE run_id = :id AND final", id=run_id) == {"other": 1}


def test_retrying_a_failed_run_makes_it_due_now(db):
    task = add_task(db)
    with db.tx() as conn:
        (run_id,) = store_runs.enqueue(conn, task["id"])
        conn.execute(
            text(
                "UPDATE due_work SET state = 'failed', attempt = 1, run_at = now() + interval '1 hour' "
                "WHERE id = :id"
            ),
            {"id": run_id},
        )
    with db.tx() as conn:
        waiting = store_runs.get(conn, run_id)
        retried = store_runs.retry(conn, run_id)

    assert datetime.fromisoformat(waiting["run_at"]) > datetime.now(UTC) + timedelta(minutes=59)
    assert retried["state"] == "failed" and retried["attempt"] == 1
    assert scalar(db, "SELECT run_at <= now() FROM due_work WHERE id = :id", id=run_id)


def test_a_scheduled_run_is_not_due_and_a_due_one_is_not_scheduled(db):
    """`scheduled` (history leaves it out) and due now (ordo_due_runs: metrics, KEDA) are one rule seen
    from two sides: a queued run whose run_at is ahead is the one, a queued or failed run whose run_at
    has passed the other; a retry still waiting for its backoff is neither."""
    task = add_task(db)
    with db.tx() as conn:
        for minutes, state, attempt in (
            (-1, "queued", 0),
            (5, "queued", 0),
            (10, "queued", 0),
            (3, "failed", 1),
        ):
            conn.execute(
                text(
                    "INSERT INTO due_work (task_id, origin, scheduled_for, run_at, priority, max_attempts, "
                    "state, attempt, agent_id) "
                    "VALUES (:t, 'manual', now(), now() + make_interval(mins => :m), 5, 3, :s, :a, "
                    "(SELECT agent_id FROM task WHERE id = :t))"
                ),
                {"t": task["id"], "m": minutes, "s": state, "a": attempt},
            )
        due = conn.execute(text("SELECT coalesce(sum(runs), 0) FROM ordo_due_runs(now())")).scalar_one()
        upcoming = store_runs.list_upcoming(conn).items
        history = store_runs.list_page(conn).items

    assert due == 1
    assert len(upcoming) == 2 and {r["state"] for r in upcoming} == {"scheduled"}
    assert sorted(r["state"] for r in history) == ["failed", "queued"]


def _state(db, run_id):
    with db.tx() as conn:
        return store_runs.get(conn, run_id)["state"]
