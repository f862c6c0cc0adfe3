"""Adding and changing tasks: bad input is refused with a clear error and writes nothing."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import text

from scheduler import task_document
from store import runs as store_runs
from store import tasks as store_tasks
from store.errors import Conflict, InvalidPipeline, InvalidSchedule, InvalidTask, NotFound, UnknownTool
from tests.helpers import REGISTRY, add_task, echo_payload, scalar

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)

BAD = [
    ({"schedule_kind": "cron", "schedule_expr": "61 * * * *"}, InvalidSchedule),
    ({"schedule_kind": "cron", "schedule_expr": "* * * *"}, InvalidSchedule),
    ({"schedule_kind": "rrule", "schedule_expr": "FREQ=FORTNIGHTLY"}, InvalidSchedule),
    ({"schedule_kind": "rrule", "schedule_expr": "FREQ=DAILY;BYHOUR=25"}, InvalidSchedule),
    (
        {"schedule_kind": "rrule", "schedule_expr": "FREQ=DAILY", "timezone": "Europe/Chisinau2"},
        InvalidSchedule,
    ),
    ({"schedule_kind": "once", "schedule_expr": "2020-01-01T00:00:00+00:00"}, InvalidSchedule),
    ({"schedule_kind": "once", "schedule_expr": "tomorrow"}, InvalidSchedule),
    ({"schedule_kind": "event", "schedule_expr": "bad topic!"}, InvalidSchedule),
    ({"payload": {"pipeline": [{"id": "a", "uses": "no.such.tool"}]}}, UnknownTool),
    ({"payload": {"pipeline": [{"id": "a", "with": {"message": "x"}}]}}, InvalidPipeline),
    (
        {"payload": {"pipeline": [{"id": "a", "uses": "echo.message", "with": {"message": "x"}}] * 2}},
        InvalidPipeline,
    ),
    (
        {
            "payload": {
                "pipeline": [
                    {"id": "a", "uses": "echo.message", "with": {"message": "${steps.b.message}"}},
                    {"id": "b", "uses": "echo.message", "with": {"message": "x"}},
                ]
            }
        },
        InvalidPipeline,
    ),
    (
        {"payload": {"pipeline": [{"id": "a", "uses": "echo.message", "with": {"message": 42}}]}},
        InvalidPipeline,
    ),
    ({"priority": 10}, InvalidTask),
    ({"title": ""}, InvalidTask),
    ({"backoff": {"base_s": 10, "cap_s": 1}}, InvalidTask),
    ({"unexpected": True}, InvalidTask),
]


@pytest.mark.parametrize(("fields", "error"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_task_documents_are_refused_and_nothing_is_stored(db, fields, error):
    with pytest.raises(error) as info:
        add_task(db, now=NOW, **fields)
    assert info.value.message
    assert info.value.status in (400, 403, 422)
    assert scalar(db, "SELECT count(*) FROM task") == 0


def test_an_rrule_task_gets_its_first_occurrence_in_its_zone(db):
    task = add_task(
        db,
        now=NOW,
        schedule_kind="rrule",
        schedule_expr="FREQ=DAILY;BYHOUR=8;BYMINUTE=0",
        timezone="Europe/Chisinau",
    )
    # 2026-03-21 08:00 in Chisinau is still winter time (UTC+2).
    assert task_document.next_occurrence(task, now=NOW) == datetime(2026, 3, 21, 6, 0, tzinfo=UTC)
    assert task_document.public(task, now=NOW)["next_fire_at"] == "2026-03-21T06:00:00.000000+00:00"
    assert task["schedule_expr"].startswith("DTSTART;TZID=Europe/Chisinau:")


def place(db, task_id):
    """The scheduler's place in the task's schedule (None: nothing to expand)."""
    return scalar(db, "SELECT expand_from FROM task_expansion WHERE task_id = :id", id=task_id)


def test_pause_withdraws_unstarted_occurrences_and_resume_starts_from_now(db):
    task = add_task(db, now=NOW, schedule_kind="cron", schedule_expr="*/5 * * * *")
    with db.tx() as conn:
        conn.execute(
            text(
                "INSERT INTO due_work (task_id, origin, scheduled_for, run_at, priority, max_attempts, "
                "agent_id) VALUES (:t, 'schedule', :at, :at, 5, 1, (SELECT agent_id FROM task WHERE id = :t))"
            ),
            {"t": task["id"], "at": NOW + timedelta(minutes=5)},
        )
        manual = store_runs.enqueue(conn, task["id"])[0]
        paused = store_tasks.pause(conn, task["id"])
    assert paused["status"] == "paused" and place(db, task["id"]) is None
    assert task_document.next_occurrence(paused, now=NOW) is None
    assert scalar(db, "SELECT count(*) FROM due_work WHERE origin = 'schedule'") == 0
    assert scalar(db, "SELECT state FROM due_work WHERE id = :id", id=manual) == "queued"
    later = NOW + timedelta(hours=1, minutes=2)
    with db.tx() as conn:
        resumed = store_tasks.resume(conn, task["id"], now=later)
    assert resumed["status"] == "active" and place(db, task["id"]) == later
    assert task_document.next_occurrence(resumed, now=later) == NOW + timedelta(hours=1, minutes=5)


def test_cancel_is_final_and_cancels_waiting_runs(db):
    task = add_task(db, now=NOW)
    with db.tx() as conn:
        run_id = store_runs.enqueue(conn, task["id"])[0]
        store_tasks.cancel(conn, task["id"])
    with db.tx() as conn:
        assert store_runs.get(conn, run_id)["state"] == "canceled"
    with db.tx() as conn, pytest.raises(Conflict):
        store_tasks.resume(conn, task["id"], now=NOW)
    with db.tx() as conn, pytest.raises(Conflict):
        store_runs.enqueue(conn, task["id"])


def test_changing_the_schedule_replans_and_keeps_the_rest(db):
    task = add_task(db, now=NOW, schedule_kind="cron", schedule_expr="0 * * * *")
    with db.tx() as conn:
        updated = task_document.edit(
            conn, task["id"], {"schedule_expr": "30 * * * *", "priority": 9}, REGISTRY, now=NOW
        )
    assert updated["version"] == task["version"] + 1
    assert task_document.next_occurrence(updated, now=NOW) == NOW + timedelta(minutes=30)
    assert updated["priority"] == 9 and updated["payload"] == task["payload"]


def test_an_invalid_change_leaves_the_task_untouched(db):
    task = add_task(db, now=NOW, schedule_kind="cron", schedule_expr="0 * * * *")
    with db.tx() as conn, pytest.raises(InvalidSchedule):
        task_document.edit(conn, task["id"], {"schedule_expr": "0 25 * * *"}, REGISTRY, now=NOW)
    assert scalar(db, "SELECT version FROM task") == task["version"]


def test_unknown_and_malformed_ids_are_not_found(db):
    with db.tx() as conn:
        with pytest.raises(NotFound):
            store_tasks.get(conn, "00000000-0000-0000-0000-0000000000aa")
        with pytest.raises(NotFound):
            store_tasks.get(conn, "not-a-uuid")
        with pytest.raises(NotFound):
            store_runs.get(conn, "abc")


def test_listing_pages_through_tasks_newest_first(db):
    ids = [add_task(db, now=NOW, title=f"task {i}", payload=echo_payload())["id"] for i in range(5)]
    seen = []
    cursor = None
    while True:
        with db.tx() as conn:
            page = store_tasks.list_page(conn, cursor=cursor, limit=2)
        seen += [t["id"] for t in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    with db.tx() as conn:
        assert [t["title"] for t in store_tasks.list_page(conn, text="task 3").items] == ["task 3"]
        assert store_tasks.list_page(conn, text="%").items == []


def test_get_async_on_a_psycopg_connection_answers_exactly_as_get(db):
    """The API's GET /tasks/{id} reads with `get_async` on a plain psycopg connection: the same row,
    with the same Python types, and the same NotFound for a missing task or another agent's."""
    task = add_task(db, schedule_kind="rrule", schedule_expr="FREQ=DAILY;BYHOUR=5", now=NOW)
    other_agent = uuid.uuid4()

    async def read() -> tuple[dict, list[type]]:
        async with await psycopg.AsyncConnection.connect(db.conninfo, autocommit=True) as conn:
            row = await store_tasks.get_async(conn, task["id"], store_tasks.LOCAL_AGENT_ID)
            errors = []
            for task_id, agent_id in ((uuid.uuid4(), None), (task["id"], other_agent), ("nope", None)):
                with pytest.raises(NotFound) as info:
                    await store_tasks.get_async(conn, task_id, agent_id)
                errors.append(info.value.message)
            return row, errors

    row, errors = asyncio.run(read())
    with db.tx() as conn:
        expected = store_tasks.get(conn, task["id"], store_tasks.LOCAL_AGENT_ID)
    assert row == expected
    assert {k: type(v) for k, v in row.items()} == {k: type(v) for k, v in expected.items()}
    assert all("not found" in message for message in errors)
