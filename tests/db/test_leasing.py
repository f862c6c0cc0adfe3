"""The leasing SQL: order, SKIP LOCKED, fencing, rescue, hand-back and concurrency keys."""

from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import text

from scheduler import task_document
from store import agents
from store import runs as store_runs
from store import tasks as store_tasks
from store.sql import load_queries
from tests.helpers import REGISTRY, add_task, echo_payload, rows, scalar
from workers.outcomes import Outcome, record, serialise
from workers.rescuer import Rescuer, RescuerConfig

Q = load_queries("workers", "queries.sql")


def lease(db, n=10, worker="w1", lease_s=30, now=None):
    """Claim due unkeyed runs and lease them, as a worker does for runs with blocking tools."""
    with db.tx() as conn:
        claimed = conn.execute(Q["claim_batch"], {"n": n, "now": now}).mappings().all()
        if not claimed:
            return []
        tokens = dict(
            conn.execute(
                Q["lease_claimed"],
                {"ids": [r["id"] for r in claimed], "lease_s": lease_s, "worker_id": worker},
            ).all()
        )
    return [{**r, "lease_token": tokens[r["id"]]} for r in claimed]


def lease_keyed(db, key, n=10, worker="w1", agent_id=store_tasks.LOCAL_AGENT_ID):
    owned = {"key": key, "agent_id": agent_id}
    with db.tx() as conn:
        conn.execute(Q["lock_key"], owned)
        return [
            dict(r)
            for r in conn.execute(
                Q["lease_keyed"], {**owned, "n": n, "now": None, "lease_s": 30, "worker_id": worker}
            ).mappings()
        ]


def succeed(db, leased, state="succeeded", retry_in_s=None):
    outcomes = [
        Outcome(
            r["id"],
            r["lease_token"],
            r["attempt"],
            state,
            retry_in_s,
            0.01,
            [],
            None,
            None if state == "succeeded" else {"code": "X", "message": "x"},
        )
        for r in leased
    ]
    with db.tx() as conn:
        return record(conn, [serialise(o, 1 << 20) for o in outcomes], "w1")


def rescue(db, now):
    return Rescuer(db, RescuerConfig(), structlog.get_logger("test"), "rescuer").run_once(now)


def enqueue(db, task, n=1):
    with db.tx() as conn:
        return store_runs.enqueue(conn, task["id"], n=n)


def test_highest_priority_first_then_earliest_and_only_what_is_due(db):
    low = add_task(db, title="low", priority=3)
    high = add_task(db, title="high", priority=7)
    (low_run,) = enqueue(db, low)
    (high_run,) = enqueue(db, high)
    future = add_task(db, title="future", priority=9)
    with db.tx() as conn:
        conn.execute(
            text(
                "INSERT INTO due_work (task_id, origin, scheduled_for, run_at, priority, max_attempts, "
                "agent_id) VALUES (:t, 'schedule', now() + interval '1 hour', now() + interval '1 hour', "
                "9, 1, (SELECT agent_id FROM task WHERE id = :t))"
            ),
            {"t": future["id"]},
        )
    assert [r["id"] for r in lease(db, n=1)] == [high_run]
    assert [r["id"] for r in lease(db, n=5)] == [low_run]
    assert lease(db) == []


def test_rows_locked_by_another_worker_are_skipped_not_waited_for(db):
    task = add_task(db)
    first, second = enqueue(db, task, n=2)
    with db.engine.connect() as other:
        other.execute(text("SELECT 1 FROM due_work WHERE id = :id FOR UPDATE"), {"id": first})
        assert [r["id"] for r in lease(db)] == [second]
        other.rollback()
    assert [r["id"] for r in lease(db)] == [first]


def test_a_lease_records_the_attempt_and_the_worker(db):
    task = add_task(db)
    enqueue(db, task)
    (leased,) = lease(db, worker="w7")
    row = rows(db, "SELECT state, attempt, worker_id, lease_token FROM due_work")[0]
    assert (row["state"], row["attempt"], row["worker_id"]) == ("running", 1, "w7")
    assert row["lease_token"] == leased["lease_token"]


def test_a_fenced_late_completion_is_rejected(db):
    task = add_task(db, max_retries=3)
    enqueue(db, task)
    (stale,) = lease(db, worker="slow", lease_s=5)
    assert rescue(db, datetime.now(UTC) + timedelta(seconds=10)) == 1
    (fresh,) = lease(db, worker="fast")
    assert fresh["attempt"] == 2
    assert succeed(db, [stale]) == set()  # the slow worker's result is refused
    assert succeed(db, [fresh]) == {fresh["id"]}
    attempts = rows(db, "SELECT attempt, state, worker_id, final FROM task_run ORDER BY attempt")
    assert [(a["attempt"], a["state"], a["worker_id"], a["final"]) for a in attempts] == [
        (1, "failed", "slow", False),
        (2, "succeeded", "fast", True),
    ]
    assert scalar(db, "SELECT count(*) FROM due_work") == 0  # the run left the queue


def test_an_expired_lease_with_no_attempts_left_is_dead(db):
    task = add_task(db, max_retries=0)
    enqueue(db, task)
    lease(db, lease_s=5)
    assert rescue(db, datetime.now(UTC) + timedelta(seconds=10)) == 1
    assert scalar(db, "SELECT count(*) FROM due_work") == 0
    assert scalar(db, "SELECT state FROM task_run WHERE final") == "dead"
    error = scalar(db, "SELECT error FROM task_run")
    assert error["code"] == "LEASE_EXPIRED"


def test_renewal_keeps_a_lease_alive_and_reports_lost_ones(db):
    task = add_task(db)
    enqueue(db, task, n=2)
    mine, lost = lease(db, n=2)
    with db.tx() as conn:
        conn.execute(
            text("UPDATE due_work SET lease_token = gen_random_uuid() WHERE id = :id"), {"id": lost["id"]}
        )
        renewed = conn.execute(
            Q["renew_leases"],
            {
                "ids": [mine["id"], lost["id"]],
                "tokens": [mine["lease_token"], lost["lease_token"]],
                "lease_s": 60,
            },
        ).all()
    assert [r.id for r in renewed] == [mine["id"]]


def test_a_failed_attempt_waits_for_its_backoff_before_the_next_lease(db):
    task = add_task(db, max_retries=2)
    enqueue(db, task)
    first = lease(db)
    succeed(db, first, state="failed", retry_in_s=3600)
    assert scalar(db, "SELECT state FROM due_work") == "failed"
    assert lease(db) == []
    (again,) = lease(db, now=datetime.now(UTC) + timedelta(hours=2))
    assert again["attempt"] == 2


def test_unstarted_leases_handed_back_do_not_count_as_attempts(db):
    task = add_task(db)
    enqueue(db, task)
    (leased,) = lease(db)
    with db.tx() as conn:
        conn.execute(Q["release_unstarted"], {"ids": [leased["id"]], "tokens": [leased["lease_token"]]})
    row = rows(db, "SELECT state, attempt, lease_token FROM due_work")[0]
    assert (row["state"], row["attempt"], row["lease_token"]) == ("queued", 0, None)


def test_a_concurrency_key_caps_running_runs_across_workers(db):
    task = add_task(db, concurrency_key="press-7", concurrency_limit=2)
    enqueue(db, task, n=5)
    assert lease(db) == []  # keyed runs are only leased through the keyed pass
    first = lease_keyed(db, "press-7", n=10, worker="a")
    second = lease_keyed(db, "press-7", n=10, worker="b")
    assert (len(first), len(second)) == (2, 0)
    succeed(db, first[:1])
    assert len(lease_keyed(db, "press-7", n=10, worker="b")) == 1
    assert scalar(db, "SELECT count(*) FROM due_work WHERE state = 'running'") == 2


def test_a_concurrency_key_is_its_owners(db):
    """Two agents naming the same key each get their own limit: the other agent's running run does not
    count against it, nor does its smaller limit apply, and the keyed pass lists the key once per owner."""
    with db.tx() as conn:
        other = agents.create_agent(conn, "other")["id"]
        values = task_document.validate(
            {
                "title": "theirs",
                "schedule_kind": "manual",
                "payload": echo_payload(),
                "concurrency_key": "press-7",
                "concurrency_limit": 1,
            },
            REGISTRY,
            now=datetime.now(UTC),
        )
        theirs = store_tasks.create(conn, values, other)
    mine = add_task(db, concurrency_key="press-7", concurrency_limit=3)
    enqueue(db, theirs, n=2)
    assert len(lease_keyed(db, "press-7", agent_id=other)) == 1  # theirs: one at a time
    enqueue(db, mine, n=4)
    with db.tx() as conn:
        ready = conn.execute(Q["keys_ready"], {"now": None, "m": 10}).all()
    assert sorted((key, str(agent)) for key, agent in ready) == sorted(
        [("press-7", str(other)), ("press-7", str(store_tasks.LOCAL_AGENT_ID))]
    )

    assert [r["task_id"] for r in lease_keyed(db, "press-7")] == [mine["id"]] * 3
    assert lease_keyed(db, "press-7", agent_id=other) == []  # still one of theirs running


def claim(conn, n=10):
    return conn.execute(Q["claim_batch"], {"n": n, "now": None}).mappings().all()


def finish_claimed(conn, claimed, state="succeeded", retry_in_s=None):
    outcomes = [
        Outcome(
            r["id"],
            None,
            r["attempt"],
            state,
            retry_in_s,
            0.001,
            [{"id": "say", "state": "ok"}],
            None,
            None if state == "succeeded" else {"code": "X", "message": "x"},
        )
        for r in claimed
    ]
    return record(conn, [serialise(o, 1 << 20) for o in outcomes], "w9")


def test_a_claim_records_inline_runs_in_its_own_transaction(db):
    task = add_task(db, max_retries=1)
    first, second = enqueue(db, task, n=2)
    with db.tx() as conn:
        claimed = claim(conn)
        assert [r["attempt"] for r in claimed] == [1, 1]
        finish_claimed(conn, claimed[:1])
        finish_claimed(conn, claimed[1:], state="failed", retry_in_s=60)
    assert rows(db, "SELECT id, state, attempt FROM due_work") == [
        {"id": second, "state": "failed", "attempt": 1}
    ]
    recorded = rows(db, "SELECT run_id, attempt, state, final, worker_id FROM task_run ORDER BY run_id")
    assert [(r["run_id"], r["attempt"], r["state"], r["final"], r["worker_id"]) for r in recorded] == [
        (first, 1, "succeeded", True, "w9"),
        (second, 1, "failed", False, "w9"),
    ]


def test_a_claim_whose_worker_dies_before_commit_leaves_its_runs_due(db):
    """A worker killed mid-batch: its transaction rolls back, so nothing is lost or half-written."""
    task = add_task(db)
    enqueue(db, task, n=3)
    conn = db.engine.connect()
    conn.begin()
    claimed = claim(conn)
    finish_claimed(conn, claimed)
    conn.invalidate()  # the connection dies with the worker, mid-transaction
    conn.close()
    assert scalar(db, "SELECT count(*) FROM due_work WHERE state = 'queued' AND attempt = 0") == 3
    assert scalar(db, "SELECT count(*) FROM task_run") == 0


def test_claimed_runs_are_skipped_by_other_workers(db):
    task = add_task(db)
    enqueue(db, task, n=4)
    with db.engine.connect() as a, db.engine.connect() as b:
        mine = {r["id"] for r in claim(a, n=2)}
        theirs = {r["id"] for r in claim(b, n=10)}
        assert len(mine) == 2 and len(theirs) == 2 and not mine & theirs
        a.rollback()
        b.rollback()
