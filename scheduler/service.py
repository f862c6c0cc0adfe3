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
# Parsed schedules kept between ticks (by kind, expression and zone): steady ticks never re-parse.
# Past this many the cache starts afresh, so schedules of edited and deleted tasks do not pile up.
_SCHEDULES_KEPT = 100_000


@dataclass
class _Batch:
    """What one batch of a tick writes, in groups of tasks alike (due_tasks answers them so). A group's
    tasks share one plan and what their runs take from the task, so the statements take each task with
    its group's number, and each group's occurrences and values once: the server pairs them up, and a
    first tick over 100,000 tasks created together sends a hundred-odd plans, not 150,000 occurrences.
    Groups are numbered from 1 in the order of the group arrays (WITH ORDINALITY)."""

    task_ids: list[UUID] = field(default_factory=BinaryArray)
    task_groups: list[int] = field(default_factory=BinaryArray)
    expand_from: list[datetime | None] = field(default_factory=BinaryArray)
    priorities: list[int] = field(default_factory=BinaryArray)
    max_attempts: list[int] = field(default_factory=BinaryArray)
    concurrency_keys: list[str | None] = field(default_factory=BinaryArray)
    concurrency_limits: list[int | None] = field(default_factory=BinaryArray)
    agent_ids: list[UUID] = field(default_factory=BinaryArray)
    policies: list[str] = field(default_factory=BinaryArray)
    queued: tuple[list[int], list[datetime]] = field(default_factory=lambda: (BinaryArray(), BinaryArray()))
    skipped: tuple[list[int], list[datetime]] = field(default_factory=lambda: (BinaryArray(), BinaryArray()))
    plans: dict[tuple[Any, ...], Plan] = field(default_factory=dict)  # worked out once per batch

    def add(self, group: Any, ids: list[UUID], plan: Plan) -> None:
        number = len(self.expand_from) + 1
        self.expand_from.append(plan.expand_from)
        self.priorities.append(group.priority)
        self.max_attempts.append(group.max_attempts)
        self.concurrency_keys.append(group.concurrency_key)
        self.concurrency_limits.append(group.concurrency_limit)
        self.agent_ids.append(group.agent_id)
        self.policies.append(group.misfire_policy)
        for at, state in plan.occurrences:
            target = self.queued if state == "queued" else self.skipped
            target[0].append(number)
            target[1].append(at)
        self.task_ids.extend(ids)
        self.task_groups.extend([number] * len(ids))

    def tasks(self) -> dict[str, Any]:
        return {"task_ids": self.task_ids, "task_groups": self.task_groups}

    def queued_params(self) -> dict[str, Any]:
        return {
            **self.tasks(),
            "occurrence_groups": self.queued[0],
            "ats": self.queued[1],
            "priorities": self.priorities,
            "max_attempts": self.max_attempts,
            "concurrency_keys": self.concurrency_keys,
            "concurrency_limits": self.concurrency_limits,
            "agent_ids": self.agent_ids,
        }

    def skipped_params(self) -> dict[str, Any]:
        return {
            **self.tasks(),
            "occurrence_groups": self.skipped[0],
            "ats": self.skipped[1],
            "priorities": self.priorities,
            "max_attempts": self.max_attempts,
            "policies": self.policies,
            "agent_ids": self.agent_ids,
        }


class SchedulerService:
    def __init__(self, db: Database, cfg: SchedulerConfig, log: Any, scheduler_id: str) -> None:
        self.db = db
        self.cfg = cfg
        self.id = scheduler_id
        self.log = log.bind(scheduler_id=scheduler_id)
        self._conn: Connection | None = None
        self._schedules: dict[tuple[str, str, str], Any] = {}  # Schedule | _NO_SCHEDULE | InvalidSchedule
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
                groups = conn.execute(
                    Q["due_tasks"], {"horizon_end": horizon_end, "n": self.cfg.batch, "later": later}
                ).all()
                conn.execute(Q["leader_heartbeat"], {"scheduler_id": self.id})
                if not groups:
                    return result
                fetched = 0
                batch = _Batch()
                slow_groups = []
                for group in groups:
                    fetched += len(group.ids)
                    ids = group.ids
                    if self._slow and not self._slow.isdisjoint(ids):
                        slow_ids = [i for i in ids if i in self._slow]
                        ids = [i for i in ids if i not in self._slow]
                        slow_groups.append((group, slow_ids))
                    if ids:
                        self._plan(group, ids, clock, horizon_end, batch, result)
                # Slow tasks last, within what the tick gives them in all (tasks alike go together:
                # the plan they share costs its expansion once).
                for group, ids in slow_groups:
                    if slow_left <= 0:
                        later.extend(ids)
                        continue
                    started = time.monotonic()
                    self._plan(group, ids, clock, horizon_end, batch, result)
                    slow_left -= time.monotonic() - started
                if batch.queued[0]:
                    written = conn.execute(Q["insert_occurrences"], batch.queued_params()).scalar_one()
                    result.queued += written
                    metrics.SCHEDULER_OCCURRENCES.labels("queued").inc(written)
                if batch.skipped[0]:
                    written = conn.execute(Q["record_skipped"], batch.skipped_params()).scalar_one()
                    result.skipped += written
                    metrics.SCHEDULER_OCCURRENCES.labels("skipped").inc(written)
                if batch.task_ids:
                    conn.execute(Q["advance_tasks"], {**batch.tasks(), "expand_from": batch.expand_from})
                result.tasks += len(batch.task_ids)
            if fetched < self.cfg.batch:
                return result

    def _plan(
        self,
        group: Any,
        ids: list[UUID],
        clock: datetime,
        horizon_end: datetime,
        batch: _Batch,
        result: TickResult,
    ) -> None:
        """The turn of tasks alike (`ids`, one group of due_tasks), within one expansion's budget."""
        schedule = self._schedule(group, ids, clock)
        if schedule is None:
            result.errors += len(ids)
            batch.add(group, ids, Plan([], None))
            return
        # By what the schedule was parsed from, not id(schedule): the cache may let a schedule go within
        # a batch, and an object made later can take its id.
        key = (
            group.schedule_kind,
            group.schedule_expr,
            group.timezone,
            group.expand_from,
            group.misfire_policy,
            group.misfire_grace_s,
        )
        plan = batch.plans.get(key)
        if plan is None:
            plan = batch.plans[key] = plan_occurrences(
                schedule,
                group.expand_from,
                now=clock,
                horizon_end=horizon_end,
                policy=group.misfire_policy,
                grace_s=group.misfire_grace_s,
                misfire_threshold_s=self.cfg.misfire_threshold_s,
                budget=Budget(self.cfg.expand_budget_s),
            )
        if plan.deferred:
            result.deferred += len(ids)
            for task_id in ids:
                if task_id not in self._slow:
                    self._slow.add(task_id)
                    self.log.warning(
                        "schedule_expansion_deferred",
                        task_id=str(task_id),
                        budget_s=self.cfg.expand_budget_s,
                        resume=plan.expand_from.isoformat() if plan.expand_from else None,
                    )
        elif self._slow:
            self._slow.difference_update(ids)
        batch.add(group, ids, plan)

    def _schedule(self, group: Any, ids: list[UUID], now: datetime) -> Schedule | None:
        """The parsed schedule of tasks alike, kept between ticks so steady ticks never re-parse."""
        key = (group.schedule_kind, group.schedule_expr, group.timezone)
        parsed = self._schedules.get(key)
        if parsed is None:
            try:
                parsed = parse_schedule(*key, now=now) or _NO_SCHEDULE
            except InvalidSchedule as e:
                parsed = e
            if len(self._schedules) >= _SCHEDULES_KEPT:
                self._schedules.clear()
            self._schedules[key] = parsed
        if isinstance(parsed, InvalidSchedule):
            # Accepted once, unreadable now (e.g. a zone removed from tzdata): stop expanding, loudly.
            for task_id in ids:
                self.log.error("schedule_unreadable", task_id=str(task_id), error=parsed.message)
            return None
        return None if parsed is _NO_SCHEDULE else parsed

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
