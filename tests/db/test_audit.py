"""Audit entries written by the statement that creates their target (store.audit.audited): the same
entry a separate record writes, none when the insert fails or creates nothing."""

from datetime import UTC, datetime
from uuid import uuid4

import pytest
from sqlalchemy import text

from scheduler import task_document
from store import audit
from store import tasks as store_tasks
from store.agents import Principal
from store.errors import OrdoError
from tests.helpers import REGISTRY, echo_payload, rows, scalar

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
WHO = Principal(store_tasks.LOCAL_AGENT_ID, "local", uuid4(), frozenset({"admin"}))
ENTRY_COLUMNS = "agent_id, token_id, action, target_type, target_id, CAST(details AS text) AS details, at"


def _values(**fields):
    doc = {"title": "Raport zilnic «ç»", "schedule_kind": "cron", "schedule_expr": "0 6 * * *"}
    return task_document.validate({**doc, "payload": echo_payload(), **fields}, REGISTRY, now=NOW)


def test_a_task_and_its_entry_are_one_statement_and_the_entry_is_what_record_writes(db):
    values = _values()
    details = {"title": values["title"], "n": [1, {"b": None}]}
    entry = audit.Entry(WHO, "task.create", "task", details)
    with db.tx() as conn:
        task = store_tasks.create(conn, values, WHO.agent_id, entry)
        audit.record(conn, WHO, "task.create", "task", task["id"], details)

    joined, separate = rows(db, f"SELECT {ENTRY_COLUMNS} FROM audit_log ORDER BY id")
    assert joined == separate  # same transaction, so the same `at` too
    assert joined["target_id"] == str(task["id"]) and joined["token_id"] == WHO.token_id
    # The task's place in its schedule is written by the same statement as well.
    assert scalar(db, "SELECT count(*) FROM task_expansion WHERE task_id = :id", id=task["id"]) == 1


def test_without_an_entry_the_task_is_stored_alone(db):
    with db.tx() as conn:
        task = store_tasks.create(conn, _values(), WHO.agent_id)

    assert scalar(db, "SELECT count(*) FROM task WHERE id = :id", id=task["id"]) == 1
    assert scalar(db, "SELECT count(*) FROM audit_log") == 0


@pytest.mark.parametrize("broken", [{"priority": 10}, {"agent": "unknown"}])
def test_an_insert_that_fails_writes_no_entry(db, broken):
    values = {**_values(), **({"priority": 10} if "priority" in broken else {})}
    agent_id = uuid4() if "agent" in broken else WHO.agent_id

    with pytest.raises(OrdoError), db.tx() as conn:
        store_tasks.create(conn, values, agent_id, audit.Entry(WHO, "task.create", "task"))

    assert scalar(db, "SELECT count(*) FROM task") == 0
    assert scalar(db, "SELECT count(*) FROM audit_log") == 0


@pytest.mark.parametrize("n", [0, 1, 3])
def test_a_bare_insert_writes_one_entry_per_created_row(db, n):
    insert = text("INSERT INTO widget (id) SELECT g FROM generate_series(1, :n) AS g RETURNING *")
    with db.tx() as conn:
        conn.execute(text("CREATE TEMP TABLE widget (id integer) ON COMMIT DROP"))
        created = audit.insert(conn, insert, {"n": n}, audit.Entry(WHO, "widget.create", "widget")).all()
        entries = conn.execute(text("SELECT target_id, details FROM audit_log ORDER BY id")).all()

    assert len(created) == n
    assert [tuple(e) for e in entries] == [(str(i), {}) for i in range(1, n + 1)]


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE task SET priority = 1 RETURNING *",
        "WITH t AS (INSERT INTO task_expansion (task_id) VALUES (NULL) RETURNING *) SELECT * FROM t",
        "WITH created AS (DELETE FROM task RETURNING *) SELECT id FROM created",
    ],
)
def test_a_statement_of_another_shape_is_refused(sql):
    with pytest.raises(ValueError, match="cannot audit"):
        audit.audited(text(sql))
