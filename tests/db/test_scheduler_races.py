"""Edits racing the scheduler's tick: what the tick writes is what the task says once both are done."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import structlog
from sqlalchemy import Connection, text

from scheduler import task_document
from scheduler.service import SchedulerConfig, SchedulerService
from store import tasks as store_tasks
from store.db import Database
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
