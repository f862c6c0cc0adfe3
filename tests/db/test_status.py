"""What the system gauges, GET /status and the KEDA trigger read from the real schema: runs due now
(and nothing else), their lag by priority band, leases, workers alive and lost, the scheduler
leader, the last hour's outcomes, and webhook endpoints once their table exists."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from engine.webhook_signing import new_secret
from store import status, webhooks
from store.db import Database
from store.tasks import LOCAL_AGENT_ID
from tests.helpers import add_task, scalar
from tests.opsfiles import keda_query

FRESH = status.Freshness(worker_s=15.0, leader_s=10.0)


def _queue(db: Database, task_id: str, rows: list[tuple[str, int, str, str | None]]) -> None:
    """due_work rows as (state, priority, run_at offset from now as SQL interval, concurrency_key)."""
    with db.tx() as conn:
        for state, priority, offset, key in rows:
            conn.execute(
                text(
                    """
                    INSERT INTO due_work (task_id, origin, scheduled_for, run_at, priority, state, attempt,
                                          max_attempts, concurrency_key, concurrency_limit,
                                          lease_token, lease_until, worker_id, started_at, agent_id)
                    SELECT :task_id, 'manual',
                           now() + CAST(:offset AS interval), now() + CAST(:offset AS interval),
                           :priority, :state, CASE WHEN :state = 'queued' THEN 0 ELSE 1 END, 3,
                           CAST(:key AS text), CASE WHEN :key IS NULL THEN NULL ELSE 1 END,
                           CASE WHEN :state = 'running' THEN gen_random_uuid() END,
                           CASE WHEN :state = 'running' THEN now() + interval '30 seconds' END,
                           CASE WHEN :state = 'running' THEN 'w-fresh' END,
                           CASE WHEN :state = 'running' THEN now() END,
                           (SELECT agent_id FROM task WHERE id = :task_id)
                    """
                ),
                {"task_id": task_id, "state": state, "priority": priority, "offset": offset, "key": key},
            )


def _history(db: Database, task_id: str, rows: list[tuple[str, str]]) -> None:
    """task_run rows as (state, finished offset from now)."""
    with db.tx() as conn:
        for i, (state, offset) in enumerate(rows):
            conn.execute(
                text(
                    """
                    INSERT INTO task_run (run_id, attempt, task_id, origin, scheduled_for, created_at,
                                          priority, max_attempts, state, final, started_at, finished_at,
                                          agent_id)
                    VALUES (:run_id, 1, :task_id, 'manual', now(), now(), 5, 3, :state, :state <> 'failed',
                            now() + CAST(:offset AS interval) - interval '1 second',
                            now() + CAST(:offset AS interval),
                            (SELECT agent_id FROM task WHERE id = :task_id))
                    """
                ),
                {"run_id": 900_000 + i, "task_id": task_id, "state": state, "offset": offset},
            )


@pytest.fixture
def busy(db: Database) -> Database:
    """A queue holding due, future, leased and backing-off runs, keyed and not, and history."""
    task_id = str(add_task(db)["id"])
    _queue(
        db,
        task_id,
        [
            ("queued", 2, "-120 seconds", None),  # due, low band, waited 2 minutes
            ("queued", 5, "-5 seconds", None),  # due, normal
            ("failed", 5, "-1 second", None),  # a retry whose time has come: due
            ("queued", 8, "-30 seconds", None),  # due, high
            ("queued", 8, "-10 seconds", "line-1"),  # due under a concurrency key
            ("queued", 5, "+10 minutes", None),  # written ahead: not due
            ("queued", 9, "+1 second", None),  # not due yet
            ("failed", 5, "+5 minutes", None),  # retry still backing off: not due
            ("queued", 5, "+10 minutes", "line-1"),  # keyed, not due
            ("running", 5, "-1 minute", None),  # leased: not waiting
            ("running", 5, "-1 minute", "line-2"),  # leased under a key
        ],
    )
    _history(
        db,
        task_id,
        [
            ("succeeded", "-1 minute"),
            ("succeeded", "-59 minutes"),
            ("failed", "-2 minutes"),
            ("dead", "-3 minutes"),
            ("succeeded", "-2 hours"),  # outside the last hour
        ],
    )
    return db


def test_the_keda_query_counts_exactly_the_runs_due_now(busy: Database):
    """Due: queued or awaiting retry, run_at reached, not leased. Not: written ahead, backing off,
    leased, finished."""
    assert scalar(busy, keda_query()) == 5


def test_the_due_gauges_count_what_keda_counts_by_priority_band(busy: Database):
    with busy.tx() as conn:
        s = status.system(conn, FRESH)
    assert s.due == {"low": 1, "normal": 2, "high": 2}
    assert s.due_total == scalar(busy, keda_query())
    assert s.leased == 2


def test_lag_is_the_age_of_the_oldest_due_run_per_band(busy: Database):
    with busy.tx() as conn:
        s = status.system(conn, FRESH)
    assert 119 < s.lag_s["low"] < 130
    assert 29 < s.lag_s["high"] < 40
    assert 4 < s.lag_s["normal"] < 15
    assert s.lag_max_s == s.lag_s["low"]


def test_an_empty_queue_reads_zero_everywhere(db: Database):
    with db.tx() as conn:
        s = status.system(conn, FRESH)
    assert s.due == {"low": 0, "normal": 0, "high": 0} and s.lag_s == {"low": 0.0, "normal": 0.0, "high": 0.0}
    assert (s.leased, s.workers_alive, s.workers_lost, s.leader_id, s.leader_age_s) == (0, 0, 0, None, None)
    assert s.webhook_endpoints == {"active": 0, "paused": 0, "breaker_open": 0}
    assert scalar(db, keda_query()) == 0


def _workers(db: Database) -> None:
    with db.tx() as conn:
        conn.execute(
            text(
                """
                INSERT INTO worker (id, hostname, pid, concurrency, state, heartbeat_at, stopped_at) VALUES
                  ('w-fresh', 'box-a', 101, 8, 'running', now() - interval '2 seconds', NULL),
                  ('w-lost', 'box-b', 202, 4, 'running', now() - interval '10 minutes', NULL),
                  ('w-stopped', 'box-a', 303, 4, 'stopped', now() - interval '5 minutes', now()),
                  ('w-ancient', 'box-c', 404, 4, 'running', now() - interval '2 hours', NULL)
                """
            )
        )
        conn.execute(
            text(
                """
                INSERT INTO scheduler_leader (scheduler_id, since, heartbeat_at)
                VALUES ('box-a:999', now() - interval '1 hour', now() - interval '2 seconds')
                """
            )
        )


def test_workers_alive_lost_and_the_leader(busy: Database):
    _workers(busy)
    with busy.tx() as conn:
        s = status.system(conn, FRESH)
    assert (s.workers_alive, s.worker_slots, s.workers_lost) == (1, 8, 1)
    assert s.leader_id == "box-a:999" and 1 < (s.leader_age_s or 0) < 10


def test_overview_reports_queue_last_hour_workers_and_scheduler(busy: Database):
    _workers(busy)
    with busy.tx() as conn:
        report = status.overview(conn, FRESH)
    assert report["queue"]["due"] == 5 and report["queue"]["leased"] == 2
    assert report["queue"]["due_by_priority_band"] == {"low": 1, "normal": 2, "high": 2}
    assert report["runs_last_hour"] == {"succeeded": 2, "failed": 1, "dead": 1, "canceled": 0, "skipped": 0}
    processes = {w["id"]: w for w in report["workers"]["processes"]}
    assert set(processes) == {"w-fresh", "w-lost", "w-stopped"}  # heard from in the last hour
    assert processes["w-fresh"]["alive"] and processes["w-fresh"]["busy"] == 2
    assert processes["w-fresh"]["host"] == "box-a" and processes["w-fresh"]["pid"] == 101
    assert not processes["w-lost"]["alive"] and processes["w-lost"]["busy"] == 0
    assert report["workers"] | {"processes": None} == {
        "alive": 1,
        "slots": 8,
        "busy": 2,
        "lost": 1,
        "processes": None,
    }
    assert report["scheduler"]["leader"] == "box-a:999" and report["scheduler"]["ok"]
    assert report["webhooks"] == {
        "endpoints_by_state": {"active": 0, "paused": 0, "breaker_open": 0},
        "breakers_open": [],
    }


def test_a_leader_that_stopped_ticking_is_not_ok(db: Database):
    with db.tx() as conn:
        conn.execute(
            text(
                "INSERT INTO scheduler_leader (scheduler_id, since, heartbeat_at) "
                "VALUES ('gone:1', now() - interval '1 hour', now() - interval '1 minute')"
            )
        )
        report = status.overview(conn, FRESH)
    assert report["scheduler"]["leader"] == "gone:1" and not report["scheduler"]["ok"]
    assert 59 < report["scheduler"]["last_tick_age_s"] < 70


def test_webhook_endpoints_are_counted_by_state_with_the_open_breakers(db: Database):
    """Endpoints as the webhooks feature stores them; an open breaker as its deliverer leaves it
    (tests/db/test_webhook_metrics.py opens one through real deliveries)."""
    with db.tx() as conn:
        made = [
            webhooks.create(
                conn,
                LOCAL_AGENT_ID,
                url=f"https://h{i}.example/",
                events=["e"],
                description="",
                secret=new_secret(),
            )
            for i in range(4)
        ]
        webhooks.update(conn, made[1]["id"], {"state": "paused"})
        conn.execute(
            text(
                "UPDATE webhook_endpoint SET state = 'breaker_open', breaker_opened_at = now(), "
                "breaker_probe_at = now() + interval '30 seconds', consecutive_failures = 5 WHERE id = :id"
            ),
            {"id": made[2]["id"]},
        )
        s = status.system(conn, FRESH)
        report = status.overview(conn, FRESH)
    assert s.webhook_endpoints == {"active": 2, "paused": 1, "breaker_open": 1}
    assert report["webhooks"] == {
        "endpoints_by_state": {"active": 2, "paused": 1, "breaker_open": 1},
        "breakers_open": [str(made[2]["id"])],
    }


def test_rows_of_long_gone_workers_are_pruned(db: Database):
    _workers(db)
    with db.tx() as conn:
        pruned = status.prune_workers(conn, datetime.now(UTC) - timedelta(hours=1))
    assert pruned == 1
    assert scalar(db, "SELECT count(*) FROM worker") == 3


def test_the_scheduler_leader_age_is_infinite_in_metrics_when_none_ever_led(db: Database):
    from observability.metrics import SystemGauges

    with db.tx() as conn:
        s = status.system(conn, FRESH)
    (age,) = [
        f
        for f in SystemGauges(lambda: s).collect()
        if f.name == "ordo_scheduler_leader_heartbeat_age_seconds"
    ]
    assert math.isinf(age.samples[0].value)
