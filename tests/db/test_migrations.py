"""Migrations that move data: what a database held before one is there after it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import text

from store import migrate as migrations
from store import runs as store_runs
from store import tasks as store_tasks
from store.db import Database
from store.errors import StoreError
from tests.conftest import _admin_url, _with_db
from tests.helpers import rows, scalar

PLACE = datetime(2026, 3, 20, 12, 15, tzinfo=UTC)


@pytest.fixture
def empty_db(server_url):
    name = f"m_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin_url(server_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    db = Database(_with_db(server_url, name), pool_size=2)
    try:
        yield db
    finally:
        db.dispose()
        with psycopg.connect(_admin_url(server_url), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _migrate_up_to(db: Database, version: int) -> None:
    """Apply the migrations before `version` as `migrate` would (recorded, so it goes on from there)."""
    with db.tx() as conn:
        conn.execute(text(migrations._CREATE_TABLE))
        for m in migrations.available():
            if m.version >= version:
                break
            conn.exec_driver_sql(m.sql)
            conn.execute(
                text("INSERT INTO schema_migration (version, name, checksum) VALUES (:v, :n, :c)"),
                {"v": m.version, "n": m.name, "c": m.checksum},
            )


def test_0009_carries_each_tasks_place_over_to_task_expansion(empty_db):
    _migrate_up_to(empty_db, 9)
    with empty_db.tx() as conn:
        ids = {}
        for title, kind, expr, status, place in (
            ("active", "cron", "*/5 * * * *", "active", PLACE),
            ("paused", "cron", "*/5 * * * *", "paused", None),
            ("manual", "manual", "", "active", None),
        ):
            ids[title] = conn.execute(
                text(
                    "INSERT INTO task (agent_id, title, schedule_kind, schedule_expr, timezone, payload,"
                    " status, expand_from)"
                    " VALUES (:agent, :title, :kind, :expr, 'UTC', '{}', :status, :place)"
                    " RETURNING id"
                ),
                {
                    "agent": store_tasks.LOCAL_AGENT_ID,
                    "title": title,
                    "kind": kind,
                    "expr": expr,
                    "status": status,
                    "place": place,
                },
            ).scalar_one()
    assert migrations.migrate(empty_db) == [
        f"{m.version:04d}_{m.name}" for m in migrations.available() if m.version >= 9
    ]
    assert [dict(r) for r in rows(empty_db, "SELECT task_id, expand_from FROM task_expansion")] == [
        {"task_id": ids["active"], "expand_from": PLACE}
    ]
    assert (
        scalar(empty_db, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'expand_from'")
        == 1
    )  # task_expansion's only

    # The rule the task CHECK held: only an active time-based task has a place.
    for change in ("UPDATE task SET status = 'paused'", "UPDATE task SET schedule_kind = 'event'"):
        with pytest.raises(StoreError), empty_db.tx() as conn:
            conn.execute(text(change + " WHERE id = :id"), {"id": ids["active"]})
    with pytest.raises(StoreError), empty_db.tx() as conn:
        conn.execute(
            text("INSERT INTO task_expansion (task_id, expand_from) VALUES (:id, :at)"),
            {"id": ids["paused"], "at": PLACE},
        )
    # Pausing through the store withdraws the place; deleting a task deletes it.
    with empty_db.tx() as conn:
        store_tasks.pause(conn, ids["active"])
    assert scalar(empty_db, "SELECT count(*) FROM task_expansion") == 0
    with empty_db.tx() as conn:
        store_tasks.resume(conn, ids["active"], now=PLACE)
        store_tasks.delete(conn, ids["active"])
    assert scalar(empty_db, "SELECT count(*) FROM task_expansion") == 0


def test_0010_keeps_the_queue_and_what_its_task_key_guaranteed(empty_db):
    """Upgrading a database with tasks and runs keeps the runs; the foreign key's checks go on per
    statement: deleting a task deletes its runs, a run for a missing task is refused."""
    _migrate_up_to(empty_db, 10)
    with empty_db.tx() as conn:
        ids = [
            conn.execute(
                text(
                    "INSERT INTO task (agent_id, title, schedule_kind, schedule_expr, timezone, payload)"
                    " VALUES (:agent, :title, 'manual', '', 'UTC', '{}') RETURNING id"
                ),
                {"agent": store_tasks.LOCAL_AGENT_ID, "title": title},
            ).scalar_one()
            for title in ("deleted", "kept")
        ]
        for task_id in ids:
            conn.execute(
                text(
                    "INSERT INTO due_work (task_id, origin, scheduled_for, run_at, priority, max_attempts)"
                    " VALUES (:t, 'manual', :at, :at, 5, 1)"
                ),
                {"t": task_id, "at": PLACE},
            )
    assert migrations.migrate(empty_db) == [
        f"{m.version:04d}_{m.name}" for m in migrations.available() if m.version >= 10
    ]
    assert scalar(empty_db, "SELECT count(*) FROM due_work") == 2
    assert scalar(empty_db, "SELECT count(*) FROM pg_constraint WHERE conname = 'due_work_task_id_fkey'") == 0

    with empty_db.tx() as conn:
        store_tasks.delete(conn, ids[0])
    assert [r["task_id"] for r in rows(empty_db, "SELECT task_id FROM due_work")] == [ids[1]]
    with pytest.raises(StoreError) as refused, empty_db.tx() as conn:
        conn.execute(
            text(
                "INSERT INTO due_work (task_id, origin, scheduled_for, run_at, priority, max_attempts,"
                " agent_id) VALUES (:t, 'manual', :at, :at, 5, 1, :agent)"
            ),
            {"t": ids[0], "at": PLACE, "agent": store_tasks.LOCAL_AGENT_ID},
        )
    assert refused.value.details == {"constraint": "due_work_task_id_fkey"}


def test_0012_gives_history_from_before_it_its_owner(empty_db):
    """Runs recorded before 0012 are listed for their owner after it, interleaved with runs recorded
    after; a history row recorded without its owner is refused from then on."""
    _migrate_up_to(empty_db, 12)
    history = (
        "INSERT INTO task_run (run_id, attempt, task_id, origin, scheduled_for, created_at, priority,"
        " max_attempts, state, final, started_at, finished_at{owner})"
        " VALUES (:id, 1, :t, 'manual', :at, :at, 5, 1, 'succeeded', true, :at, :at{owner_value})"
    )
    with empty_db.tx() as conn:
        other = conn.execute(text("INSERT INTO agent (name) VALUES ('other') RETURNING id")).scalar_one()
        owners = {store_tasks.LOCAL_AGENT_ID: [], other: []}
        for owner in owners:
            owners[owner].append(
                conn.execute(
                    text(
                        "INSERT INTO task (agent_id, title, schedule_kind, schedule_expr, timezone, payload)"
                        " VALUES (:agent, 't', 'manual', '', 'UTC', '{}') RETURNING id"
                    ),
                    {"agent": owner},
                ).scalar_one()
            )
        for i in range(6):  # before 0012: every other run is the other agent's
            owner = other if i % 2 else store_tasks.LOCAL_AGENT_ID
            conn.execute(
                text(history.format(owner="", owner_value="")),
                {"id": i + 1, "t": owners[owner][0], "at": PLACE.replace(minute=i)},
            )
    migrations.migrate(empty_db)
    with empty_db.tx() as conn:
        conn.execute(
            text(history.format(owner=", agent_id", owner_value=", :agent")),
            {"id": 7, "t": owners[other][0], "at": PLACE.replace(minute=7), "agent": other},
        )
    with pytest.raises(StoreError), empty_db.tx() as conn:
        conn.execute(
            text(history.format(owner="", owner_value="")),
            {"id": 8, "t": owners[other][0], "at": PLACE.replace(minute=8)},
        )

    def listed(agent_id):
        with empty_db.tx() as conn:
            return [run["id"] for run in store_runs.list_page(conn, agent_id=agent_id, limit=10).items]

    assert listed(other) == [7, 6, 4, 2]
    assert listed(store_tasks.LOCAL_AGENT_ID) == [5, 3, 1]
    assert listed(None) == [7, 6, 5, 4, 3, 2, 1]


def test_0013_gives_queued_runs_their_owner_and_refuses_another(empty_db):
    """Runs queued before 0013 are listed for their owner after it; a run queued under an owner other
    than its task's is refused, and its statement writes nothing."""
    _migrate_up_to(empty_db, 13)
    with empty_db.tx() as conn:
        other = conn.execute(text("INSERT INTO agent (name) VALUES ('other') RETURNING id")).scalar_one()
        tasks = {}
        for owner in (store_tasks.LOCAL_AGENT_ID, other):
            tasks[owner] = conn.execute(
                text(
                    "INSERT INTO task (agent_id, title, schedule_kind, schedule_expr, timezone, payload)"
                    " VALUES (:agent, 't', 'manual', '', 'UTC', '{}') RETURNING id"
                ),
                {"agent": owner},
            ).scalar_one()
        for minute, owner in enumerate((other, store_tasks.LOCAL_AGENT_ID, other)):
            conn.execute(
                text(
                    "INSERT INTO due_work (task_id, origin, scheduled_for, run_at, priority, max_attempts)"
                    " VALUES (:t, 'manual', :at, :at, 5, 1)"
                ),
                {"t": tasks[owner], "at": PLACE.replace(minute=minute)},
            )
    migrations.migrate(empty_db)

    def listed(agent_id):
        with empty_db.tx() as conn:
            page = store_runs.list_page(conn, agent_id=agent_id, now=PLACE.replace(hour=13))
            return [run["task_id"] for run in page.items]

    assert listed(other) == [str(tasks[other])] * 2
    assert listed(store_tasks.LOCAL_AGENT_ID) == [str(tasks[store_tasks.LOCAL_AGENT_ID])]
    assert len(listed(None)) == 3
    with pytest.raises(StoreError) as refused, empty_db.tx() as conn:
        conn.execute(
            text(
                "INSERT INTO due_work (task_id, origin, scheduled_for, run_at, priority, max_attempts,"
                " agent_id) SELECT t, 'manual', :at, :at, 5, 1, :agent FROM unnest(CAST(:ts AS uuid[])) AS t"
            ),
            {"ts": list(tasks.values()), "at": PLACE, "agent": other},
        )
    assert refused.value.details == {"constraint": "due_work_agent_id_owner"}
    assert scalar(empty_db, "SELECT count(*) FROM due_work") == 3
