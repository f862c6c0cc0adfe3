"""The scheduler with rules that cost far more to expand than they yield: one such task cannot hold
back the others' occurrences, and its own are all written, in later ticks, none missed or doubled."""

from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import text

from scheduler.service import SchedulerConfig, SchedulerService
from tests.helpers import add_task, rows, scalar

NOW = datetime(2026, 3, 20, 12, 0, 30, tzinfo=UTC)
ALL_BUT_0 = ",".join(str(n) for n in range(1, 60))
# One occurrence an hour, found among every second of the hour (three rules merged).
HOURLY_THE_HARD_WAY = "\n".join(
    (
        "RRULE:FREQ=SECONDLY",
        f"EXRULE:FREQ=SECONDLY;BYSECOND={ALL_BUT_0}",
        f"EXRULE:FREQ=SECONDLY;BYMINUTE={ALL_BUT_0}",
    )
)


def service(db, **cfg):
    return SchedulerService(db, SchedulerConfig(**cfg), structlog.get_logger("test"), "s1")


def scheduled(db, task_id):
    return [
        r["scheduled_for"]
        for r in rows(
            db,
            "SELECT scheduled_for FROM due_work WHERE task_id = :t AND origin = 'schedule'"
            " ORDER BY scheduled_for",
            t=task_id,
        )
    ]


def test_a_costly_task_is_expanded_over_several_ticks_without_holding_back_the_others(db):
    plain = add_task(db, now=NOW, schedule_kind="cron", schedule_expr="*/5 * * * *")
    costly = add_task(db, now=NOW, schedule_kind="rrule", schedule_expr=HOURLY_THE_HARD_WAY, timezone="UTC")
    s = service(db, horizon_s=6 * 3600, expand_budget_s=0.05, slow_budget_s=0.05)
    try:
        first = s.tick(now=NOW)
        assert first.deferred == 1 and first.errors == 0
        # The ordinary task got its whole horizon in the first tick.
        assert len(scheduled(db, plain["id"])) == 6 * 12
        ticks = 1
        while True:
            result = s.tick(now=NOW)
            ticks += 1
            assert ticks < 5000, "the costly task never caught up"
            if result.deferred == 0:
                break
        assert scheduled(db, costly["id"]) == [
            datetime(2026, 3, 20, 13 + h, tzinfo=UTC) for h in range(5)
        ] + [datetime(2026, 3, 20, 18, tzinfo=UTC)]
        # Its place: the next occurrence, or a point on the way to it past the horizon (nothing missed).
        place = scalar(db, "SELECT expand_from FROM task_expansion WHERE task_id = :id", id=costly["id"])
        assert NOW + timedelta(hours=6) <= place <= datetime(2026, 3, 20, 19, tzinfo=UTC)
        assert s.tick(now=NOW + timedelta(seconds=1)).tasks == 0
    finally:
        s.step_down()


def test_a_rule_that_never_yields_cannot_stall_the_tick(db):
    """A task whose rule removes every occurrence it makes (stored before such rules were refused at
    creation) costs each tick its budget, never more; the other tasks' occurrences are written."""
    plain = add_task(db, now=NOW, schedule_kind="cron", schedule_expr="*/5 * * * *")
    empty = add_task(db, now=NOW, schedule_kind="cron", schedule_expr="0 * * * *")
    with db.tx() as conn:
        conn.execute(
            text(
                "UPDATE task SET schedule_kind = 'rrule', timezone = 'UTC', version = version + 1,"
                " schedule_expr = :e WHERE id = :id"
            ),
            {"e": "DTSTART:20260101T000000Z\nRRULE:FREQ=MINUTELY\nEXRULE:FREQ=MINUTELY", "id": empty["id"]},
        )
        conn.execute(
            text("UPDATE task_expansion SET expand_from = :now WHERE task_id = :id"),
            {"id": empty["id"], "now": NOW},
        )
    s = service(db, horizon_s=600)
    try:
        result = s.tick(now=NOW)
        assert result.deferred == 1 and result.errors == 0
        assert len(scheduled(db, plain["id"])) == 2
        assert scheduled(db, empty["id"]) == []
        # Its place moved on past the horizon (nothing before it exists); when the clock gets there it
        # costs one more budget, and moves on again.
        moved = scalar(db, "SELECT expand_from FROM task_expansion WHERE task_id = :id", id=empty["id"])
        assert moved >= NOW + timedelta(seconds=600)
        again = s.tick(now=moved)
        assert (again.tasks, again.deferred) == (2, 1)
        assert (
            scalar(db, "SELECT expand_from FROM task_expansion WHERE task_id = :id", id=empty["id"]) > moved
        )
    finally:
        s.step_down()
