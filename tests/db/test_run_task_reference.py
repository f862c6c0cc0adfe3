"""A run's task (migration 0010): checked once per statement, with each guarantee of the foreign key it
replaced: no run without its task, no task deleted from under a run being written, the runs go with
their task, and the reference never changes."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
from psycopg import errors
from sqlalchemy import text

from store import tasks as store_tasks
from store.db import Database
from store.errors import StoreError
from tests.helpers import add_task, scalar, wait_for

_INSERT_RUN = (
    "INSERT INTO due_work (task_id, origin, scheduled_for, run_at, priority, max_attempts, agent_id)"
    f" VALUES (%s, 'manual', now(), now(), 5, 1, '{store_tasks.LOCAL_AGENT_ID}')"
)


def _url(db: Database) -> str:
    return db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _runs(db: Database, task_id: object) -> int:
    return scalar(db, "SELECT count(*) FROM due_work WHERE task_id = :t", t=task_id)


def _waiting_on_a_lock(db: Database, pid: int) -> bool:
    return scalar(db, "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :p", p=pid)


def test_a_run_for_a_missing_task_is_refused_and_its_statement_writes_nothing(db):
    """A statement writing runs for a task that exists and one that does not writes neither, and the
    error names the key as the foreign key did."""
    task = add_task(db)
    with psycopg.connect(_url(db)) as conn, pytest.raises(errors.ForeignKeyViolation) as refused:
        conn.execute(
            "INSERT INTO due_work (task_id, origin, scheduled_for, run_at, priority, max_attempts, agent_id)"
            " SELECT t, 'manual', now(), now(), 5, 1, %s FROM unnest(%s::uuid[]) AS t",
            (store_tasks.LOCAL_AGENT_ID, [task["id"], uuid.uuid4()]),
        )
    assert refused.value.diag.constraint_name == "due_work_task_id_fkey"
    assert _runs(db, task["id"]) == 0


def test_deleting_tasks_deletes_their_runs_and_no_others(db):
    """Deleted together or through the store, each task's runs go with it; other tasks keep theirs."""
    a, b, c, kept = (add_task(db) for _ in range(4))
    with db.tx() as conn:
        for task in (a, b, c, kept):
            conn.execute(text(_INSERT_RUN.replace("%s", ":t")), {"t": task["id"]})
        conn.execute(text("DELETE FROM task WHERE id IN (:a, :b)"), {"a": a["id"], "b": b["id"]})
        store_tasks.delete(conn, c["id"])
    assert [_runs(db, t["id"]) for t in (a, b, c, kept)] == [0, 0, 0, 1]


def test_truncating_tasks_empties_the_queue(db):
    task = add_task(db)
    with db.tx() as conn:
        conn.execute(text(_INSERT_RUN.replace("%s", ":t")), {"t": task["id"]})
        conn.execute(text("TRUNCATE task CASCADE"))
    assert scalar(db, "SELECT count(*) FROM due_work") == 0


@pytest.mark.parametrize(
    "change",
    ["UPDATE due_work SET task_id = :other", "UPDATE task SET id = gen_random_uuid() WHERE id = :task"],
)
def test_neither_a_runs_task_nor_a_tasks_id_changes(db, change):
    task, other = add_task(db), add_task(db)
    with db.tx() as conn:
        conn.execute(text(_INSERT_RUN.replace("%s", ":t")), {"t": task["id"]})
    with pytest.raises(StoreError), db.tx() as conn:
        conn.execute(text(change), {"task": task["id"], "other": other["id"]})
    assert _runs(db, task["id"]) == 1


def test_a_task_without_runs_may_take_another_id(db):
    """As the key allowed: only a change that would orphan runs is refused."""
    task = add_task(db)
    with db.tx() as conn:
        conn.execute(text("UPDATE task SET id = gen_random_uuid() WHERE id = :task"), {"task": task["id"]})
    assert scalar(db, "SELECT count(*) FROM task WHERE id = :t", t=task["id"]) == 0


def test_a_task_is_not_deleted_under_a_transaction_snapshot(db):
    """Under REPEATABLE READ the cascade could miss runs committed after the snapshot: refused."""
    task = add_task(db)
    with psycopg.connect(_url(db)) as conn, pytest.raises(errors.FeatureNotSupported):
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute("DELETE FROM task WHERE id = %s", (task["id"],))
    assert scalar(db, "SELECT count(*) FROM task WHERE id = :t", t=task["id"]) == 1


def test_a_delete_waits_for_a_run_being_written_and_takes_it_along(db):
    """A task deleted while a run of it is written but not committed: the delete waits, then the run
    goes with the task (no orphan)."""
    task = add_task(db)
    with psycopg.connect(_url(db)) as writer, psycopg.connect(_url(db), autocommit=True) as deleter:
        writer.execute(_INSERT_RUN, (task["id"],))
        deleting = threading.Thread(
            target=deleter.execute, args=("DELETE FROM task WHERE id = %s", (task["id"],))
        )
        deleting.start()
        wait_for(lambda: _waiting_on_a_lock(db, deleter.info.backend_pid), what="the delete waiting")
        writer.commit()
        deleting.join(timeout=10)
    assert not deleting.is_alive()
    assert _runs(db, task["id"]) == 0
    assert scalar(db, "SELECT count(*) FROM task WHERE id = :t", t=task["id"]) == 0


def test_a_run_written_while_its_task_is_deleted_is_refused(db):
    """A run written while its task's delete is not yet committed waits for it, then is refused."""
    task = add_task(db)
    refused: list[BaseException] = []

    def write() -> None:
        try:
            with psycopg.connect(_url(db), autocommit=True) as writer:
                pids.append(writer.info.backend_pid)
                writer.execute(_INSERT_RUN, (task["id"],))
        except errors.ForeignKeyViolation as e:
            refused.append(e)

    pids: list[int] = []
    with psycopg.connect(_url(db)) as deleter:
        deleter.execute("DELETE FROM task WHERE id = %s", (task["id"],))
        writing = threading.Thread(target=write)
        writing.start()
        wait_for(lambda: pids and _waiting_on_a_lock(db, pids[0]), what="the write waiting")
        deleter.commit()
        writing.join(timeout=10)
    assert not writing.is_alive()
    assert len(refused) == 1
    assert scalar(db, "SELECT count(*) FROM due_work") == 0
