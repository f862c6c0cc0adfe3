"""Edits racing the scheduler's tick: what the tick writes is what the task says once both are done."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import structlog
from sqlalchemy import Connection, text

from scheduler import task_document
from scheduler.expand import parse_schedule
from scheduler.service import SchedulerConfig, SchedulerService
from store import tasks as store_tasks
from store.db import Database
from store.errors import Conflict, NotFound
from tests.helpers import REGISTRY, add_task, rows, scalar, wait_for

NOW = datetime(2026, 3, 20, 12, 0, 30, tzinfo=UTC)
_GATE = 7420099  # an advisory lock key of the test's own


def _service(db: Database, name: str = "s1") -> SchedulerService:
    return SchedulerService(db, SchedulerConfig(horizon_s=600), structlog.get_logger("test"), name)


def _install_gate(db: Database) -> None:
    """Make the leader's reads of task_expansion wait at a gate the test holds.

    An edit that commits after a tick's due_tasks took its snapshot but before it locked the task row
    is what this reproduces: the statement has read the task's place and is about to lock its row.
    Scans of task_expansion go through a view whose condition waits for the gate, on the leader's
    session only (the one holding the leader lock); edits on other sessions pass straight through.
    """
    with db.tx() as conn:
        conn.execute(
            text(
                f"""
ALTER TABLE task_expansion RENAME TO task_expansion_base;
CREATE FUNCTION test_gate() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = 7420003
                                         AND pid = pg_backend_pid() AND granted) THEN
        PERFORM pg_advisory_lock_shared({_GATE});
        PERFORM pg_advisory_unlock_shared({_GATE});
    END IF;
    RETURN true;
END $$;
CREATE VIEW task_expansion AS SELECT * FROM task_expansion_base WHERE test_gate();
"""
            )
        )


@contextmanager
def _gate_closed(db: Database) -> Iterator[None]:
    url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_GATE,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_GATE,))


def _tick_waiting_at_the_gate(db: Database) -> bool:
    return bool(
        scalar(
            db,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = :gate AND NOT granted",
            gate=_GATE,
        )
    )


def _tick_during(
    db: Database, scheduler: SchedulerService, now: datetime, edit: Callable[[Connection], Any]
) -> None:
    """Tick at `now`, and make `edit` commit while the tick's due_tasks has read but not yet locked."""
    _install_gate(db)
    with _gate_closed(db):
        ticking = threading.Thread(target=scheduler.tick, kwargs={"now": now})
        ticking.start()
        wait_for(lambda: _tick_waiting_at_the_gate(db), what="the tick at the gate")
        with db.tx() as conn:
            edit(conn)
    ticking.join(timeout=30)
    assert not ticking.is_alive()


def _pending(db: Database, task_id: UUID) -> list[datetime]:
    return [
        r["scheduled_for"]
        for r in rows(
            db,
            "SELECT scheduled_for FROM due_work WHERE task_id = :id AND origin = 'schedule' "
            "ORDER BY scheduled_for",
            id=task_id,
        )
    ]


def test_a_task_paused_while_a_tick_reads_it_gets_no_occurrences(db):
    scheduler = _service(db)
    try:
        task = add_task(db, now=NOW, schedule_kind="cron", schedule_expr="*/5 * * * *")
        scheduler.tick(now=NOW)  # 12:05, 12:10; the place moves to 12:15
        later = NOW + timedelta(minutes=10)
        _tick_during(db, scheduler, later, lambda conn: store_tasks.pause(conn, task["id"]))
        assert _pending(db, task["id"]) == []
        assert scalar(db, "SELECT count(*) FROM task_expansion WHERE task_id = :id", id=task["id"]) == 0
    finally:
        scheduler.step_down()


def test_a_schedule_changed_while_a_tick_reads_it_is_expanded_from_the_edit(db):
    scheduler = _service(db)
    try:
        task = add_task(db, now=NOW, schedule_kind="cron", schedule_expr="0 * * * *")
        scheduler.tick(now=NOW)  # nothing before 12:10:30; the place moves to 13:00
        edited_at = NOW + timedelta(minutes=54)  # 12:54:30
        _tick_during(
            db,
            scheduler,
            edited_at,
            lambda conn: task_document.edit(
                conn, task["id"], {"schedule_expr": "57 * * * *"}, REGISTRY, now=edited_at
            ),
        )
        # This tick or the next: 12:57 (the new schedule from the edit on), not only 13:57 onwards.
        scheduler.tick(now=edited_at + timedelta(seconds=1))
        assert _pending(db, task["id"]) == [datetime(2026, 3, 20, 12, 57, tzinfo=UTC)]
        assert scalar(
            db, "SELECT expand_from FROM task_expansion WHERE task_id = :id", id=task["id"]
        ) == datetime(2026, 3, 20, 13, 57, tzinfo=UTC)
    finally:
        scheduler.step_down()


_SCHEDULES = ("*/5 * * * *", "2-59/5 * * * *", "4-59/10 * * * *")  # no instant in common


def test_edits_racing_real_ticks_and_a_failover_leave_each_task_exactly_its_schedule(db):
    """Two schedulers (the leader steps down half way) tick on their own clock while edits of every
    kind race them. Afterwards: a place for each active task and only for those, nothing pending for a
    task that is not active, and each active task's pending occurrences are its current schedule's,
    each one there, from its last re-plan to its place."""
    tasks = [
        add_task(db, schedule_kind="cron", schedule_expr=_SCHEDULES[i % 3], priority=1 + i % 2)
        for i in range(40)
    ]
    ids = [t["id"] for t in tasks]
    cfg = SchedulerConfig(horizon_s=3600, tick_s=0.05, standby_retry_s=0.05, batch=7)
    first, second = (SchedulerService(db, cfg, structlog.get_logger("test"), n) for n in ("a", "b"))
    stops = [threading.Event(), threading.Event()]
    runners = [
        threading.Thread(target=s.run, args=(stop,)) for s, stop in zip((first, second), stops, strict=True)
    ]
    for r in runners:
        r.start()
    failures: list[BaseException] = []

    def edit(seed: int) -> None:
        rnd = random.Random(seed)
        end = time.monotonic() + 4
        while time.monotonic() < end:
            task_id = rnd.choice(ids)
            op = rnd.random()
            now = datetime.now(UTC)
            try:
                with db.tx() as conn:
                    if op < 0.35:
                        patch = {"schedule_expr": rnd.choice(_SCHEDULES)}
                        task_document.edit(conn, task_id, patch, REGISTRY, now=now)
                    elif op < 0.5:
                        task_document.edit(conn, task_id, {"priority": rnd.randint(1, 9)}, REGISTRY, now=now)
                    elif op < 0.7:
                        store_tasks.pause(conn, task_id)
                    elif op < 0.9:
                        store_tasks.resume(conn, task_id, now=now)
                    elif op < 0.95:
                        store_tasks.cancel(conn, task_id)
                    else:
                        store_tasks.delete(conn, task_id)
            except (Conflict, NotFound):  # a canceled or deleted task refuses edits (the API's 409/404)
                pass
            except Exception as e:
                failures.append(e)

    editors = [threading.Thread(target=edit, args=(seed,)) for seed in range(3)]
    for e in editors:
        e.start()
    time.sleep(2)
    stops[0].set()  # the leader (whichever it is) may be "a": the other takes over
    runners[0].join(timeout=30)
    for e in editors:
        e.join(timeout=60)
    time.sleep(0.5)  # a last tick or two after the last edit
    stops[1].set()
    runners[1].join(timeout=30)
    assert not failures, failures
    try:
        second.tick(now=datetime.now(UTC))  # whatever the last edits left due
    finally:
        second.step_down()

    state = {r["id"]: r for r in rows(db, "SELECT id, status, schedule_expr, updated_at FROM task")}
    places = {
        r["task_id"]: r["expand_from"] for r in rows(db, "SELECT task_id, expand_from FROM task_expansion")
    }
    pending: dict[UUID, list[datetime]] = {}
    for r in rows(
        db,
        "SELECT task_id, scheduled_for FROM due_work WHERE origin = 'schedule' AND attempt = 0 ORDER BY 2",
    ):
        pending.setdefault(r["task_id"], []).append(r["scheduled_for"])
    active = {i for i, t in state.items() if t["status"] == "active"}
    assert set(places) == active
    assert set(pending) <= active
    for task_id in active:
        task = state[task_id]
        schedule = parse_schedule("cron", task["schedule_expr"], "UTC", now=task["updated_at"])
        mine = pending.get(task_id, [])
        # Each pending occurrence is the current schedule's (a stale one would be another's minute) ...
        assert all(schedule.between(at, at + timedelta(seconds=1)) for at in mine), (task, mine)
        # ... and none is missing from the last re-plan (at most the edit's time) to the place.
        since = task["updated_at"] + timedelta(seconds=1)
        assert set(schedule.between(since, places[task_id])) <= set(mine), (task, mine, places[task_id])


def test_a_leader_killed_in_the_middle_of_a_tick_leaves_the_next_leader_each_occurrence_once(db):
    first, second = _service(db, "first"), _service(db, "second")
    try:
        tasks = [add_task(db, now=NOW, schedule_kind="cron", schedule_expr="*/5 * * * *") for _ in range(3)]
        first.tick(now=NOW)
        later = NOW + timedelta(minutes=10)  # each task's 12:15 and 12:20 are due
        _tick_during(
            db,
            first,
            later,
            lambda conn: conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND objid = 7420003 AND granted"
                )
            ),
        )
        assert not first.is_leader
        assert second.tick(now=later).queued == 6
        assert first.tick(now=later).tasks == 0  # a standby now: it writes nothing
        for task in tasks:
            assert [at.minute for at in _pending(db, task["id"])] == [5, 10, 15, 20]
        assert (
            scalar(
                db,
                "SELECT count(*) FROM task_expansion WHERE expand_from = :at",
                at=later + timedelta(minutes=14, seconds=30),
            )
            == 3
        )
    finally:
        first.step_down()
        second.step_down()
