"""The scheduler service: one leader at a time expands time-based tasks into due_work.

Leadership is a session advisory lock held on the leader's own connection, and every tick writes
through that same connection: if the session dies, the lock is gone and so is the ability to write,
so a deposed leader cannot keep expanding. A standby retries the lock every few seconds.

Each tick (APScheduler calls `tick()` on an interval): lock the tasks whose next occurrence enters
the horizon, expand [expand_from, now + horizon) with scheduler.expand, apply the misfire policy to
occurrences that should already have run, insert them (ON CONFLICT DO NOTHING), and move each task's
expand_from to its first occurrence after the horizon. A steady tick with nothing new is one index
probe.

One task cannot hold the tick back: each expansion has a time budget (`expand_budget_s`). A rule
that costs more (an EXRULE that removes almost every occurrence, a COUNT with a long history to
count) writes what it found, its expand_from becomes the point the expansion reached (nothing
before it was missed), and it goes on from there in later ticks. Such tasks are remembered as slow:
a tick expands them after all the others, and gives them `slow_budget_s` in all.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Connection, text

from observability import metrics
from scheduler.expand import Budget, Schedule, ScheduleTooCostly, parse_schedule
from store import plant_availability, status
from store import runs as store_runs
from store.db import Database
from store.errors import InvalidSchedule, OrdoError
from store.settings import Settings
from store.sql import BinaryArray, load_queries

__all__ = ["Plan", "SchedulerConfig", "SchedulerService", "TickResult", "plan_occurrences"]

Q = load_queries("scheduler", "queries.sql")

# Occurrences missed longer ago than this are not even enumerated: a minutely task after a month of
# downtime must not produce forty thousand rows. Within it, skipped occurrences are recorded.
_MAX_MISSED_LOOKBACK = timedelta(days=1)
_MAX_SKIPPED_RECORDED = 100


@dataclass(frozen=True)
class SchedulerConfig:
    # Defaults are the settings' (store.settings.Settings, ORDO_*), defined there once.
    tick_s: float = Settings.scheduler_tick_s
    horizon_s: float = Settings.scheduler_horizon_s
    standby_retry_s: float = Settings.scheduler_standby_retry_s
    # An occurrence this far in the past when written was missed (no scheduler ran), not merely late.
    misfire_threshold_s: float = 60.0
    batch: int = 5000
    retention_days: float = Settings.run_retention_days
    availability_history_days: float = Settings.availability_history_days
    prune_every_s: float = 300.0
    # Rows of workers silent this long go: nothing reads them (status lists the last hour's).
    worker_rows_kept_s: float = 86400.0
    # The most one task's expansion may take in a tick (a 10-minute window of an ordinary rule takes
    # well under a millisecond); a costlier one goes on in later ticks from where it stopped.
    expand_budget_s: float = 0.02
    # What one tick gives, in all, to tasks whose expansion ran out of budget before (after the others).
    slow_budget_s: float = 0.25

    def __post_init__(self) -> None:
        if (
            min(
                self.tick_s,
                self.horizon_s,
                self.standby_retry_s,
                self.batch,
                self.retention_days,
                self.availability_history_days,
                self.expand_budget_s,
                self.slow_budget_s,
            )
            <= 0
        ):
            raise ValueError(f"invalid scheduler config {self}")


@dataclass
class TickResult:
    tasks: int = 0
    queued: int = 0
    skipped: int = 0
    errors: int = 0
    deferred: int = 0  # tasks whose expansion ran out of budget and goes on in a later tick
    duration_s: float = 0.0


@dataclass(frozen=True)
class Plan:
    """What one task's turn in a tick writes: occurrences as (instant, 'queued' | 'skipped'), the
    task's new expand_from, and whether the expansion stopped early (budget spent: expand_from is
    where it stopped, and every occurrence before it is in `occurrences`)."""

    occurrences: list[tuple[datetime, str]]
    expand_from: datetime | None
    deferred: bool = False


def plan_occurrences(
    schedule: Schedule,
    expand_from: datetime,
    *,
    now: datetime,
    horizon_end: datetime,
    policy: str,
    grace_s: float,
    misfire_threshold_s: float,
    budget: Budget | None = None,
) -> Plan:
    """The occurrences to write and the task's new expand_from.

    Occurrences earlier than now - threshold were missed. Policy run_once queues the latest missed
    one, skip queues none, run_all queues those within the grace window; the rest are skipped.
    With a budget, an expansion that runs out of it plans what it found so far (a run_once task
    catching up through a costly rule then queues the latest missed occurrence of each part).
    """
    missed_before = now - timedelta(seconds=misfire_threshold_s)
    start = max(expand_from, now - max(_MAX_MISSED_LOOKBACK, timedelta(seconds=grace_s)))
    occurrences: list[datetime] | None = None
    deferred = False
    try:
        occurrences = schedule.between(start, horizon_end, budget)
        resume_at = schedule.next_at_or_after(horizon_end, budget)
    except ScheduleTooCostly as e:
        # Stopped by between (e.found: what came before e.resume) or after it, looking for the next
        # occurrence past the window. Either way nothing before e.resume is missing.
        if occurrences is None:
            occurrences = e.found
        resume_at, deferred = e.resume, True
    missed = [at for at in occurrences if at < missed_before]
    upcoming = [at for at in occurrences if at >= missed_before]
    if policy == "run_all":
        grace_from = now - timedelta(seconds=grace_s)
        planned = [(at, "queued" if at >= grace_from else "skipped") for at in missed]
    elif policy == "run_once":
        planned = [(at, "skipped") for at in missed[:-1]] + [(at, "queued") for at in missed[-1:]]
    else:
        planned = [(at, "skipped") for at in missed]
    skipped = [p for p in planned if p[1] == "skipped"]
    if len(skipped) > _MAX_SKIPPED_RECORDED:
        keep = set(skipped[-_MAX_SKIPPED_RECORDED:])
        planned = [p for p in planned if p[1] == "queued" or p in keep]
    planned += [(at, "queued") for at in upcoming]
    return Plan(planned, resume_at, deferred)


_NO_SCHEDULE: Any = object()  # parsed: a kind without occurrences (event, manual)


@dataclass
class _BatchMemo:
    """What one batch of a tick works out once for all its tasks: tasks created together share their
    schedule, expansion point and misfire policy, so a first tick over 100,000 such tasks parses and
    expands each distinct schedule once, not once per task."""

    parsed: dict[tuple[str, str, str], Any] = field(default_factory=dict)  # Schedule | InvalidSchedule
    plans: dict[tuple[Any, ...], Plan] = field(default_factory=dict)


class SchedulerService:
    def __init__(self, db: Database, cfg: SchedulerConfig, log: Any, scheduler_id: str) -> None:
        self.db = db
        self.cfg = cfg
        self.id = scheduler_id
        self.log = log.bind(scheduler_id=scheduler_id)
        self._conn: Connection | None = None
        self._schedules: dict[UUID, tuple[int, Schedule | None]] = {}
        # Tasks whose last expansion ran out of budget: expanded after the others, within slow_budget_s.
        self._slow: set[UUID] = set()
        self._last_prune = 0.0
        self._last_attempt = 0.0
        self._lock = threading.Lock()

    @property
    def is_leader(self) -> bool:
        return self._conn is not None

    # -- leadership ------------------------------------------------------------------------------

    def try_lead(self) -> bool:
        """Take the leader lock if it is free. Returns whether this scheduler leads now."""
        if self._conn is not None:
            return True
        conn = None
        try:
            conn = self.db.engine.connect()
            leader = conn.execute(Q["try_lead"]).scalar_one()
            if not leader:
                conn.rollback()
                conn.close()
                return False
            conn.execute(Q["leader_keepalive"])
            conn.execute(Q["claim_leadership"], {"scheduler_id": self.id})
            conn.commit()
        except Exception as e:
            self.log.warning("leader_election_failed", error=str(e).splitlines()[0])
            if conn is not None:
                conn.invalidate()
            return False
        self._conn = conn
        metrics.SCHEDULER_IS_LEADER.set(1)
        self.log.info("leadership_acquired")
        return True

    def step_down(self) -> None:
        """Release leadership (shutdown): ending the session releases the lock at once."""
        if self._conn is None:
            return
        try:
            self._conn.execute(text("SELECT pg_advisory_unlock_all()"))
            self._conn.commit()
            self._conn.close()
        except Exception:
            self._conn.invalidate()
        self._conn = None
        metrics.SCHEDULER_IS_LEADER.set(0)
        self.log.info("leadership_released")

    def _lose_leadership(self, reason: str) -> None:
        if self._conn is not None:
            self._conn.invalidate()
        self._conn = None
        metrics.SCHEDULER_IS_LEADER.set(0)
        self.log.warning("leadership_lost", reason=reason)

    # -- the tick --------------------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> TickResult:
        """Expand due tasks. Only the leader writes; a standby tries to become leader instead."""
        with self._lock:
            if self._conn is None:
                if time.monotonic() - self._last_attempt < self.cfg.standby_retry_s and now is None:
                    return TickResult()
                self._last_attempt = time.monotonic()
                if not self.try_lead():
                    return TickResult()
            started = time.monotonic()
            try:
                result = self._expand(now)
                self._maybe_prune(now)
            except OrdoError as e:
                self._lose_leadership(e.message)
                return TickResult(errors=1)
            except Exception as e:  # the leader's session broke: the lock went with it
                self._lose_leadership(str(e).splitlines()[0] if str(e) else type(e).__name__)
                return TickResult(errors=1)
            result.duration_s = time.monotonic() - started
            metrics.SCHEDULER_TICK_SECONDS.observe(result.duration_s)
            if result.tasks:
                self.log.info(
                    "tick_expanded",
                    tasks=result.tasks,
                    queued=result.queued,
                    skipped=result.skipped,
                    errors=result.errors,
                    deferred=result.deferred,
                    duration_ms=round(result.duration_s * 1000, 2),
                )
            return result

    def _expand(self, now: datetime | None) -> TickResult:
        assert self._conn is not None
        conn = self._conn
        result = TickResult()
        # Slow tasks this tick has no time left for: not fetched again until the next tick.
        later: list[UUID] = []
        slow_left = self.cfg.slow_budget_s
        while True:
            with conn.begin():
                clock = now or conn.execute(text("SELECT now()")).scalar_one()
                horizon_end = clock + timedelta(seconds=self.cfg.horizon_s)
                rows = conn.execute(
                    Q["due_tasks"], {"horizon_end": horizon_end, "n": self.cfg.batch, "later": later}
                ).all()
                conn.execute(Q["leader_heartbeat"], {"scheduler_id": self.id})
                if not rows:
                    return result
                queued: tuple[list[UUID], list[datetime]] = (BinaryArray(), BinaryArray())
                skipped: tuple[list[UUID], list[datetime]] = (BinaryArray(), BinaryArray())
                advance_ids, advance_to = BinaryArray(), BinaryArray()
                memo = _BatchMemo()
                # Slow tasks last (a stable sort keeps expand_from order within each group).
                for row in sorted(rows, key=lambda r: r.id in self._slow):
                    slow = row.id in self._slow
                    if slow and slow_left <= 0:
                        later.append(row.id)
                        continue
                    started = time.monotonic()
                    plan = self._plan(row, clock, horizon_end, memo)
                    if slow:
                        slow_left -= time.monotonic() - started
                    if plan is None:
                        plan = Plan([], None)
                        result.errors += 1
                    elif plan.deferred:
                        result.deferred += 1
                        if row.id not in self._slow:
                            self._slow.add(row.id)
                            self.log.warning(
                                "schedule_expansion_deferred",
                                task_id=str(row.id),
                                budget_s=self.cfg.expand_budget_s,
                                resume=plan.expand_from.isoformat() if plan.expand_from else None,
                            )
                    else:
                        self._slow.discard(row.id)
                    for at, state in plan.occurrences:
                        target = queued if state == "queued" else skipped
                        target[0].append(row.id)
                        target[1].append(at)
                    advance_ids.append(row.id)
                    advance_to.append(plan.expand_from)
                if queued[0]:
                    written = conn.execute(
                        Q["insert_occurrences"], {"task_ids": queued[0], "ats": queued[1]}
                    ).scalar_one()
                    result.queued += written
                    metrics.SCHEDULER_OCCURRENCES.labels("queued").inc(written)
                if skipped[0]:
                    written = conn.execute(
                        Q["record_skipped"], {"task_ids": skipped[0], "ats": skipped[1]}
                    ).all()
                    result.skipped += len(written)
                    metrics.SCHEDULER_OCCURRENCES.labels("skipped").inc(len(written))
                if advance_ids:
                    conn.execute(Q["advance_tasks"], {"ids": advance_ids, "expand_from": advance_to})
                result.tasks += len(advance_ids)
            if len(rows) < self.cfg.batch:
                return result

    def _plan(self, row: Any, clock: datetime, horizon_end: datetime, memo: _BatchMemo) -> Plan | None:
        """One task's turn, within its budget; None: its schedule cannot be read."""
        schedule = self._schedule(row, clock, memo)
        if schedule is None:
            return None
        key = (id(schedule), row.expand_from, row.misfire_policy, row.misfire_grace_s)
        plan = memo.plans.get(key)
        if plan is None:
            plan = memo.plans[key] = plan_occurrences(
                schedule,
                row.expand_from,
                now=clock,
                horizon_end=horizon_end,
                policy=row.misfire_policy,
                grace_s=row.misfire_grace_s,
                misfire_threshold_s=self.cfg.misfire_threshold_s,
                budget=Budget(self.cfg.expand_budget_s),
            )
        return plan

    def _schedule(self, row: Any, now: datetime, memo: _BatchMemo) -> Schedule | None:
        """The parsed schedule, cached by (task, version) so steady ticks never re-parse."""
        cached = self._schedules.get(row.id)
        if cached is not None and cached[0] == row.version:
            return cached[1]
        key = (row.schedule_kind, row.schedule_expr, row.timezone)
        parsed = memo.parsed.get(key)
        if parsed is None:
            try:
                parsed = parse_schedule(*key, now=now) or _NO_SCHEDULE
            except InvalidSchedule as e:
                parsed = e
            memo.parsed[key] = parsed
        schedule = None if parsed is _NO_SCHEDULE else parsed
        if isinstance(schedule, InvalidSchedule):
            # Accepted once, unreadable now (e.g. a zone removed from tzdata): stop expanding, loudly.
            self.log.error("schedule_unreadable", task_id=str(row.id), error=schedule.message)
            schedule = None
        self._schedules[row.id] = (row.version, schedule)
        return schedule

    def _maybe_prune(self, now: datetime | None) -> None:
        if time.monotonic() - self._last_prune < self.cfg.prune_every_s:
            return
        self._last_prune = time.monotonic()
        assert self._conn is not None
        now = now or datetime.now(UTC)
        for event, prune, days in (
            ("runs_pruned", store_runs.prune, self.cfg.retention_days),
            ("generations_pruned", plant_availability.prune_generations, self.cfg.availability_history_days),
        ):
            cutoff = now - timedelta(days=days)
            pruned = 0
            while True:
                with self._conn.begin():
                    n = prune(self._conn, cutoff)
                pruned += n
                if n == 0:
                    break
            if pruned:
                self.log.info(event, count=pruned, cutoff=cutoff.isoformat())
        with self._conn.begin():
            status.prune_workers(self._conn, now - timedelta(seconds=self.cfg.worker_rows_kept_s))

    # -- the service loop ------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Tick on an interval (APScheduler) until `stop` is set; then release leadership."""
        scheduler = BackgroundScheduler(timezone=UTC)
        scheduler.add_job(
            self.tick,
            IntervalTrigger(seconds=self.cfg.tick_s, timezone=UTC),
            id="ordo-tick",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            next_run_time=datetime.now(UTC),
        )
        self.log.info("scheduler_started", tick_s=self.cfg.tick_s, horizon_s=self.cfg.horizon_s)
        scheduler.start()
        try:
            stop.wait()
        finally:
            scheduler.shutdown(wait=True)
            with self._lock:
                self.step_down()
            self.log.info("scheduler_stopped")
