"""The scheduler service: expansion into due_work, idempotency, misfire policies, leadership."""

import copy
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import structlog
from sqlalchemy import text

from scheduler.expand import parse_schedule
from scheduler.service import SchedulerConfig, SchedulerService
from store import tasks as store_tasks
from tests.helpers import add_task, rows, scalar

NOW = datetime(2026, 3, 20, 12, 0, 30, tzinfo=UTC)


def service(db, name="s1", **cfg):
    return SchedulerService(
        db, SchedulerConfig(**{"horizon_s": 600, **cfg}), structlog.get_logger("test"), name
    )


@pytest.fixture
def scheduler(db):
    s = service(db)
    yield s
    s.step_down()


def occurrences(db, task_id=None):
    """Scheduled runs, pending (due_work) or already in history (task_run), by instant."""
    return rows(
        db,
        "SELECT scheduled_for, state FROM ("
        " SELECT task_id, scheduled_for, state FROM due_work WHERE origin = 'schedule'"
        " UNION ALL"
        " SELECT task_id, scheduled_for, state FROM task_run WHERE origin = 'schedule' AND final) o "
        "WHERE CAST(:t AS uuid) IS NULL OR task_id = :t ORDER BY scheduled_for",
        t=task_id,
    )


def test_a_tick_writes_occurrences_inside_the_horizon_and_advances_the_task(db, scheduler):
    task = add_task(db, now=NOW, schedule_kind="cron", schedule_expr="*/5 * * * *")
    result = scheduler.tick(now=NOW)
    assert result.queued == 2
    assert [o["scheduled_for"] for o in occurrences(db)] == [
        datetime(2026, 3, 20, 12, 5, tzinfo=UTC),
        datetime(2026, 3, 20, 12, 10, tzinfo=UTC),
    ]
    assert scalar(
        db, "SELECT expand_from FROM task_expansion WHERE task_id = :id", id=task["id"]
    ) == datetime(2026, 3, 20, 12, 15, tzinfo=UTC)


def test_a_steady_tick_with_nothing_new_writes_nothing(db, scheduler):
    add_task(db, now=NOW, schedule_kind="cron", schedule_expr="0 * * * *")
    scheduler.tick(now=NOW)
    again = scheduler.tick(now=NOW + timedelta(seconds=1))
    assert (again.tasks, again.queued) == (0, 0)


def test_expanding_the_same_window_twice_adds_nothing_twice(db, scheduler):
    task = add_task(db, now=NOW, schedule_kind="cron", schedule_expr="*/5 * * * *")
    scheduler.tick(now=NOW)
    # A second scheduler working from stale state re-expands the same window.
    with db.tx() as conn:
        conn.execute(
            text("UPDATE task_expansion SET expand_from = :t WHERE task_id = :id"),
            {"t": NOW, "id": task["id"]},
        )
    result = scheduler.tick(now=NOW)
    assert result.queued == 0
    assert len(occurrences(db)) == 2


@pytest.mark.parametrize(
    ("policy", "grace_s", "expected"),
    [
        ("run_once", 3600, ["skipped", "skipped", "queued", "queued"]),
        ("skip", 3600, ["skipped", "skipped", "skipped", "queued"]),
        ("run_all", 9000, ["skipped", "queued", "queued", "queued"]),
    ],
)
def test_missed_occurrences_follow_the_misfire_policy(db, scheduler, policy, grace_s, expected):
    """No scheduler ran from 08:30 to 12:00:30: 09:00, 10:00 and 11:00 were missed; 12:00 is merely late."""
    task = add_task(
        db,
        now=NOW - timedelta(hours=3, minutes=30),
        schedule_kind="cron",
        schedule_expr="0 * * * *",
        misfire_policy=policy,
        misfire_grace_s=grace_s,
    )
    scheduler.tick(now=NOW)
    past = [o for o in occurrences(db, task["id"]) if o["scheduled_for"] < NOW]
    assert [o["scheduled_for"].hour for o in past] == [9, 10, 11, 12]
    assert [o["state"] for o in past] == expected


def test_tasks_sharing_a_schedule_share_its_expansion_but_each_keeps_its_own_policy(db, scheduler):
    """A tick works a plan out once for tasks alike (same schedule, place and misfire policy): each
    still gets its own occurrences, and a task differing only in its policy gets its own plan."""
    missed_since = NOW - timedelta(hours=3, minutes=30)
    alike = [
        add_task(db, now=missed_since, schedule_kind="cron", schedule_expr="0 * * * *", misfire_policy="skip")
        for _ in range(3)
    ]
    other = add_task(
        db, now=missed_since, schedule_kind="cron", schedule_expr="0 * * * *", misfire_policy="run_once"
    )
    result = scheduler.tick(now=NOW)
    assert result.tasks == 4
    for task in alike:
        assert [o["state"] for o in occurrences(db, task["id"])] == ["skipped"] * 3 + ["queued"]
    assert [o["state"] for o in occurrences(db, other["id"])] == ["skipped", "skipped", "queued", "queued"]
    messages = rows(db, "SELECT task_id, error->>'message' AS m FROM task_run WHERE state = 'skipped'")
    assert {r["m"].rsplit(" ", 1)[1] for r in messages if r["task_id"] == other["id"]} == {"run_once"}
    assert {r["m"].rsplit(" ", 1)[1] for r in messages if r["task_id"] != other["id"]} == {"skip"}
    assert scalar(db, "SELECT count(DISTINCT expand_from) FROM task_expansion") == 1


def test_tasks_sharing_a_schedule_each_give_their_runs_their_own_settings(db, scheduler):
    """Tasks alike but for what their runs take from them (priority, retries, concurrency key): each
    occurrence carries its own task's."""
    plain = add_task(db, now=NOW, schedule_kind="cron", schedule_expr="*/5 * * * *")
    keyed = add_task(
        db,
        now=NOW,
        schedule_kind="cron",
        schedule_expr="*/5 * * * *",
        priority=8,
        max_retries=0,
        concurrency_key="k",
        concurrency_limit=2,
    )
    assert scheduler.tick(now=NOW).queued == 4
    written = rows(
        db,
        "SELECT task_id, priority, max_attempts, concurrency_key, concurrency_limit FROM due_work"
        " ORDER BY scheduled_for, priority",
    )
    assert [tuple(r.values()) for r in written] == 2 * [
        (plain["id"], 5, 4, None, None),
        (keyed["id"], 8, 1, "k", 2),
    ]


def test_tasks_whose_schedule_became_unreadable_stop_each_and_the_others_go_on(db, scheduler):
    """Stored when their zone existed (here: a zone tzdata does not know, written behind the API's
    back): each task alike is counted and stopped on its own; a readable task is expanded as ever."""
    lost = [add_task(db, now=NOW, schedule_kind="cron", schedule_expr="*/5 * * * *") for _ in range(2)]
    fine = add_task(db, now=NOW, schedule_kind="cron", schedule_expr="*/5 * * * *")
    with db.tx() as conn:
        conn.execute(
            text("UPDATE task SET timezone = 'Atlantis/Lost' WHERE id = ANY(:ids)"),
            {"ids": [t["id"] for t in lost]},
        )
    result = scheduler.tick(now=NOW)
    assert (result.tasks, result.errors, result.queued) == (3, 2, 2)
    assert [o["scheduled_for"] for o in occurrences(db, fine["id"])] == [
        datetime(2026, 3, 20, 12, 5, tzinfo=UTC),
        datetime(2026, 3, 20, 12, 10, tzinfo=UTC),
    ]
    for task in lost:
        assert occurrences(db, task["id"]) == []
        assert scalar(db, "SELECT expand_from FROM task_expansion WHERE task_id = :id", id=task["id"]) is None
    assert scheduler.tick(now=NOW + timedelta(minutes=20)).errors == 0


def test_a_paused_task_is_not_expanded_and_resumes_from_now(db, scheduler):
    task = add_task(db, now=NOW, schedule_kind="cron", schedule_expr="*/5 * * * *")
    with db.tx() as conn:
        store_tasks.pause(conn, task["id"])
    assert scheduler.tick(now=NOW).queued == 0
    later = NOW + timedelta(hours=2)
    with db.tx() as conn:
        store_tasks.resume(conn, task["id"], now=later)
    scheduler.tick(now=later)
    assert min(o["scheduled_for"] for o in occurrences(db)) == datetime(2026, 3, 20, 14, 5, tzinfo=UTC)


def test_a_daily_0800_chisinau_task_runs_at_0800_local_on_both_sides_of_each_transition(db):
    scheduler = service(db, horizon_s=86400)
    zone = ZoneInfo("Europe/Chisinau")
    start = datetime(2026, 3, 26, 12, 0, tzinfo=UTC)
    add_task(
        db,
        now=start,
        schedule_kind="rrule",
        schedule_expr="FREQ=DAILY;BYHOUR=8;BYMINUTE=0",
        timezone="Europe/Chisinau",
    )
    for day in range(5):
        scheduler.tick(now=start + timedelta(days=day))
    scheduler.step_down()
    local = [o["scheduled_for"].astimezone(zone) for o in occurrences(db)]
    assert {(t.hour, t.minute) for t in local} == {(8, 0)}
    assert [t.utcoffset() for t in local[:4]] == [
        timedelta(hours=2),
        timedelta(hours=2),
        timedelta(hours=3),
        timedelta(hours=3),
    ]


def test_only_one_scheduler_leads_and_a_standby_takes_over_when_it_stops(db):
    first, second = service(db, "first"), service(db, "second", standby_retry_s=0.01)
    try:
        add_task(db, now=NOW, schedule_kind="cron", schedule_expr="*/5 * * * *")
        assert first.tick(now=NOW).queued == 2 and first.is_leader
        assert second.tick(now=NOW).tasks == 0 and not second.is_leader
        assert scalar(db, "SELECT scheduler_id FROM scheduler_leader") == "first"
        first.step_down()
        second.tick(now=NOW)
        assert second.is_leader
        assert scalar(db, "SELECT scheduler_id FROM scheduler_leader") == "second"
    finally:
        first.step_down()
        second.step_down()


def test_a_leader_whose_session_dies_loses_leadership_and_writes_nothing(db):
    first, second = service(db, "first"), service(db, "second")
    try:
        add_task(db, now=NOW, schedule_kind="cron", schedule_expr="*/5 * * * *")
        first.tick(now=NOW)
        with db.tx() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'ordo' AND pid IN (SELECT pid FROM pg_locks "
                    "WHERE locktype = 'advisory' AND objid = 7420003)"
                )
            )
        assert first.tick(now=NOW + timedelta(minutes=10)).errors == 1
        assert not first.is_leader
        second.tick(now=NOW + timedelta(minutes=10))
        assert second.is_leader
        assert len(occurrences(db)) == 4
    finally:
        first.step_down()
        second.step_down()


def test_tasks_alike_but_for_their_schedule_each_get_their_own_after_the_schedule_cache_starts_afresh(
    db, scheduler, monkeypatch
):
    """A tick plans tasks alike once, by their schedule: when the cache of parsed schedules starts afresh
    within a batch (here every schedule: it keeps one), a schedule parsed later is still another
    schedule, even where it lands in the memory of one that went (one-off tasks created together share
    their place and policy, and differ only in their instant)."""
    monkeypatch.setattr("scheduler.service._SCHEDULES_KEPT", 1)
    # Each schedule a fresh object, made after what parsing it allocated is freed: where CPython puts it
    # again in the memory of one that went (as a process parsing 100,000 schedules does).
    monkeypatch.setattr(
        "scheduler.service.parse_schedule", lambda *a, **kw: copy.copy(parse_schedule(*a, **kw))
    )
    instants = [NOW + timedelta(seconds=3 * n) for n in range(1, 121)]
    tasks = [add_task(db, now=NOW, schedule_kind="once", schedule_expr=at.isoformat()) for at in instants]
    assert scheduler.tick(now=NOW).queued == len(instants)
    for task, at in zip(tasks, instants, strict=True):
        assert [o["scheduled_for"] for o in occurrences(db, task["id"])] == [at]


def test_a_group_split_by_the_batch_size_gives_each_task_its_own_occurrences_once(db):
    """Batches smaller than a group of tasks alike: each batch plans its part of the group, and the
    tasks differing in a run setting or their misfire grace still get their own."""
    alike = [add_task(db, now=NOW, schedule_kind="cron", schedule_expr="*/5 * * * *") for _ in range(5)]
    urgent = add_task(
        db, now=NOW, schedule_kind="cron", schedule_expr="*/5 * * * *", priority=9, max_retries=0
    )
    caught_up = add_task(
        db,
        now=NOW - timedelta(minutes=30),
        schedule_kind="cron",
        schedule_expr="*/5 * * * *",
        misfire_policy="run_all",
        misfire_grace_s=600,
    )
    s = service(db, batch=2)
    try:
        assert s.tick(now=NOW).tasks == 7
        for task in [*alike, urgent]:
            assert [o["scheduled_for"].minute for o in occurrences(db, task["id"])] == [5, 10]
        assert [(o["scheduled_for"].minute, o["state"]) for o in occurrences(db, caught_up["id"])] == [
            *((m, "skipped") for m in (35, 40, 45, 50)),
            *((m, "queued") for m in (55, 0, 5, 10)),
        ]
        assert rows(
            db, "SELECT DISTINCT priority, max_attempts FROM due_work WHERE task_id = :t", t=urgent["id"]
        ) == [{"priority": 9, "max_attempts": 1}]
        assert s.tick(now=NOW + timedelta(minutes=5)).queued == 7
        assert scalar(db, "SELECT count(DISTINCT expand_from) FROM task_expansion") == 1
    finally:
        s.step_down()
