"""The worker: lease due runs in batches sized to free slots, run their pipelines, hand outcomes to
the completer, keep leases alive, rescue expired ones, and shut down in stages.

Threads, each with one job:
- dispatcher (the caller of `run`): leases when slots are free; sleeps until NOTIFY, a freed slot, the
  next known run_at, or the poll interval. Pipelines made only of inline tools run right here (they
  take microseconds, and a thread hand-off would cost more than the run); others get a run thread.
- listener: LISTEN ordo_due_work; wakes the dispatcher when work that is already due is enqueued.
- completer: group-commits outcomes (see completer.py).
- heartbeat: renews held leases, picks up cancel requests, marks leases lost, updates the worker row,
  and runs the rescuer.

Shutdown (stop event set): stop leasing, hand back leases of runs not yet started, let running runs
finish for up to `shutdown_grace_s`, then expire the leases of those still running so any worker's
rescuer retries them at once, flush outcomes, and mark the worker stopped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import Connection

from engine import Pipeline, ToolLimits, ToolRegistry, compile_pipeline, run_pipeline
from observability import metrics
from store.db import Database, translate_errors
from store.errors import OrdoError
from store.sql import load_queries
from workers.completer import Completer, CompleterConfig, Outcome, outcomes_json
from workers.rescuer import Rescuer, RescuerConfig
from workers.retry import RetryPolicy, decide

__all__ = ["NOTIFY_CHANNEL", "Worker", "WorkerConfig"]

Q = load_queries("workers", "queries.sql")
NOTIFY_CHANNEL = "ordo_due_work"
_KEY_CHECK_S = 0.1
# Labelled children resolved once: a label lookup per run is measurable at thousands of runs a second.
_FINISHED = {
    state: metrics.RUNS_FINISHED.labels(state) for state in ("succeeded", "failed", "dead", "canceled")
}


@dataclass(frozen=True)
class WorkerConfig:
    concurrency: int = 8
    lease_s: float = 30.0
    poll_s: float = 2.0
    shutdown_grace_s: float = 30.0
    rescue_interval_s: float = 5.0
    max_keys_per_lease: int = 16
    completer: CompleterConfig = field(default_factory=CompleterConfig)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.lease_s < 3 or self.poll_s <= 0 or self.shutdown_grace_s < 0 or self.rescue_interval_s <= 0:
            raise ValueError(f"invalid worker config {self}")

    @property
    def heartbeat_s(self) -> float:
        # Renew well before expiry; also bounds how long a cancel request waits to be seen.
        return min(self.lease_s / 3, 5.0)


@dataclass
class _TaskDef:
    version: int
    status: str
    pipeline: Pipeline | None
    compile_error: dict[str, Any] | None
    context_task: dict[str, Any]
    timeout_s: float
    policy: RetryPolicy


@dataclass
class _Lease:
    """A run this worker executes: leased (token set), or claimed inside an open transaction (None)."""

    id: int
    token: uuid.UUID | None
    task_id: uuid.UUID
    attempt: int
    max_attempts: int
    received: float  # monotonic time the lease arrived
    started_at: datetime  # database clock at lease
    row: dict[str, Any]
    started: bool = False
    finished: bool = False


_ISO_CACHE: dict[datetime, str] = {}


def _iso(value: datetime) -> str:
    """isoformat(), remembered: runs of one lease batch share their lease time (and bulk-queued runs
    their creation time), and formatting costs more than a dictionary lookup."""
    text = _ISO_CACHE.get(value)
    if text is None:
        if len(_ISO_CACHE) >= 4096:
            _ISO_CACHE.clear()
        text = _ISO_CACHE[value] = value.isoformat()
    return text


class _RunLog:
    """The run's logger, bound (run_id, task_id, attempt) only when something is logged: at thousands
    of runs a second with info logging off, most runs never log."""

    __slots__ = ("_base", "_bound", "_lease")

    def __init__(self, base: Any, lease: _Lease) -> None:
        self._base = base
        self._lease = lease
        self._bound: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._bound is None:
            lease = self._lease
            self._bound = self._base.bind(run_id=lease.id, task_id=str(lease.task_id), attempt=lease.attempt)
        return getattr(self._bound, name)


class Worker:
    def __init__(
        self,
        db: Database,
        registry: ToolRegistry,
        cfg: WorkerConfig,
        *,
        log: Any,
        limits: ToolLimits | None = None,
        worker_id: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.registry = registry
        self.cfg = cfg
        self.limits = limits or ToolLimits()
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.log = log.bind(worker_id=self.id)
        is_enabled = getattr(self.log, "is_enabled_for", None)
        self._log_successes = is_enabled(logging.INFO) if is_enabled is not None else True
        self.rng = rng or random.Random()
        self._lock = threading.Lock()
        self._held: dict[int, _Lease] = {}
        self._executing = 0
        self._cancel_requested: set[int] = set()
        self._lost: set[int] = set()
        self._tasks: dict[uuid.UUID, _TaskDef] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._aux_stop = threading.Event()
        self.completer = Completer(db, cfg.completer, self.log, self._on_flushed)
        metrics.WORKER_BUSY_SLOTS.set_function(lambda: self._executing)
        self.rescuer = Rescuer(db, RescuerConfig(interval_s=cfg.rescue_interval_s), self.log)
        self._lease_conn: Connection | None = None
        self._keys_seen = True
        self._next_key_check = 0.0

    # -- lifecycle -------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Work until `stop` is set, then shut down in stages. Blocks."""
        with self.db.tx() as conn:
            conn.execute(
                Q["register_worker"],
                {
                    "id": self.id,
                    "hostname": socket.gethostname(),
                    "pid": os.getpid(),
                    "concurrency": self.cfg.concurrency,
                },
            )
        self.log.info("worker_started", concurrency=self.cfg.concurrency, lease_s=self.cfg.lease_s)
        threads = [
            threading.Thread(target=self._wake_on, args=(stop,), name="stop-watch", daemon=True),
            threading.Thread(
                target=self.completer.run, args=(self._aux_stop,), name="completer", daemon=True
            ),
            threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True),
            threading.Thread(target=self._listen_loop, name="listener", daemon=True),
        ]
        for t in threads:
            t.start()
        try:
            self._dispatch_loop(stop)
        finally:
            self._shutdown(threads)

    def _wake_on(self, stop: threading.Event) -> None:
        """An idle dispatcher sleeps on its wake event; a stop request must end that sleep."""
        stop.wait()
        self._wake.set()

    def _shutdown(self, threads: list[threading.Thread]) -> None:
        self._stopping.set()
        self.log.info("worker_stopping", in_flight=self._executing, grace_s=self.cfg.shutdown_grace_s)
        self._set_worker_state("stopping")
        self._release_unstarted()
        deadline = time.monotonic() + self.cfg.shutdown_grace_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._executing == 0:
                    break
            time.sleep(0.02)
        with self._lock:
            overdue = [lease for lease in self._held.values() if not lease.finished]
        if overdue:
            self._expire(overdue)
        self._aux_stop.set()
        self.completer.wake()
        for t in threads:
            t.join(timeout=10)
        self.completer.close()
        if self._lease_conn is not None:
            self._lease_conn.close()
        with self.db.tx() as conn:
            conn.execute(Q["worker_stopped"], {"id": self.id})
        self.log.info("worker_stopped", abandoned=len(overdue))

    # -- dispatcher ------------------------------------------------------------------------------

    def _dispatch_loop(self, stop: threading.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            free = self._free_slots()
            if free <= 0:
                self._wake.wait(self.cfg.poll_s)
                self._wake.clear()
                continue
            self._wake.clear()
            try:
                leases = self._lease_keyed(free)
                if leases:
                    self._dispatch(leases)
                handled = len(leases)
                if handled < free:
                    handled += self._claim(free - handled)
                backoff = 0.5
            except OrdoError as e:
                self.log.warning("lease_failed", error=e.message, retry_in_s=backoff)
                self._drop_lease_conn()
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if handled:
                continue
            self._wake.wait(self._idle_wait())

    def _free_slots(self) -> int:
        with self._lock:
            # Finished runs waiting for the group commit still hold leases. Up to one batch of them
            # may wait while the next batch runs (so writing and running overlap); beyond that a
            # slow database slows leasing instead of piling up leases in memory.
            return min(self.cfg.concurrency - self._executing, 2 * self.cfg.concurrency - len(self._held))

    def _conn(self) -> Connection:
        if self._lease_conn is None:
            self._lease_conn = self.db.engine.connect()
        return self._lease_conn

    def _drop_lease_conn(self) -> None:
        if self._lease_conn is not None:
            with contextlib.suppress(Exception):  # the connection is broken; closing may fail too
                self._lease_conn.invalidate()
                self._lease_conn.close()
            self._lease_conn = None

    def _lease_keyed(self, n: int) -> list[_Lease]:
        """Leases of due runs under concurrency keys, within each key's limit."""
        # Keyed work is rare: look for it every cycle while some exists, otherwise every
        # KEY_CHECK_S, which saves a round trip per cycle and still serves keyed runs promptly
        # when unkeyed work saturates the worker.
        if not (self._keys_seen or time.monotonic() >= self._next_key_check):
            return []
        params = {"now": None, "lease_s": self.cfg.lease_s, "worker_id": self.id}
        rows: list[Any] = []
        with translate_errors():
            conn = self._conn()
            with conn.begin():  # the key locks must hold until the keyed leases commit
                keys = (
                    conn.execute(Q["keys_ready"], {"now": None, "m": self.cfg.max_keys_per_lease})
                    .scalars()
                    .all()
                )
                for key in sorted(keys):
                    if len(rows) >= n:
                        break
                    conn.execute(Q["lock_key"], {"key": key})
                    rows.extend(
                        conn.execute(Q["lease_keyed"], {**params, "key": key, "n": n - len(rows)})
                        .mappings()
                        .all()
                    )
        self._keys_seen = bool(keys)
        self._next_key_check = time.monotonic() + _KEY_CHECK_S
        return self._hold(rows, received=time.monotonic())

    def _hold(
        self, rows: list[Any], *, received: float, tokens: dict[int, uuid.UUID] | None = None
    ) -> list[_Lease]:
        leases = [
            _Lease(
                id=r["id"],
                token=tokens[r["id"]] if tokens is not None else r["lease_token"],
                task_id=r["task_id"],
                attempt=r["attempt"],
                max_attempts=r["max_attempts"],
                received=received,
                started_at=r["started_at"],
                row=r,
            )
            for r in rows
        ]
        if leases:
            with self._lock:
                for lease in leases:
                    self._held[lease.id] = lease
            metrics.RUNS_LEASED.inc(len(leases))
        return leases

    def _claim(self, n: int) -> int:
        """Claim up to `n` due unkeyed runs in one transaction: run the inline ones and record them
        before committing; lease the others and start them on their own threads after it."""
        with translate_errors():
            conn = self._conn()
            with conn.begin():
                rows = conn.execute(Q["claim_batch"], {"now": None, "n": n}).mappings().all()
                if not rows:
                    self._next_key_check = 0.0  # not saturated: the next cycle may as well look
                    return 0
                received = time.monotonic()
                self._ensure_tasks({r["task_id"]: r["task_version"] for r in rows})
                events = self._events([r["event_id"] for r in rows if r["event_id"]])
                outcomes: list[Outcome] = []
                blocking: list[Any] = []
                for r in rows:
                    task = self._tasks[r["task_id"]]
                    if (
                        task.pipeline is not None
                        and not task.pipeline.inline
                        and r["task_status"] != "canceled"
                    ):
                        blocking.append(r)
                        continue
                    claim = _Lease(
                        r["id"],
                        None,
                        r["task_id"],
                        r["attempt"],
                        r["max_attempts"],
                        received,
                        r["started_at"],
                        r,
                    )
                    outcomes.append(
                        self._run(claim, task, events.get(r["event_id"]) if r["event_id"] else None)
                    )
                if outcomes:
                    conn.execute(
                        Q["finish_claimed"],
                        {
                            "ids": [o.id for o in outcomes],
                            "batch": outcomes_json(outcomes),
                            "worker_id": self.id,
                        },
                    )
                tokens: dict[int, uuid.UUID] = {}
                if blocking:
                    leased = conn.execute(
                        Q["lease_claimed"],
                        {
                            "ids": [r["id"] for r in blocking],
                            "lease_s": self.cfg.lease_s,
                            "worker_id": self.id,
                        },
                    ).all()
                    tokens = {lease_row.id: lease_row.lease_token for lease_row in leased}
        metrics.RUNS_LEASED.inc(len(outcomes))
        if blocking:
            self._dispatch(self._hold(blocking, received=received, tokens=tokens), events=events)
        return len(rows)

    def _idle_wait(self) -> float:
        try:
            with self.db.tx() as conn:
                row = conn.execute(Q["next_due_at"]).one()
        except OrdoError:
            return self.cfg.poll_s
        if row.next_run_at is None:
            return self.cfg.poll_s
        until_due = (row.next_run_at - row.db_now).total_seconds()
        return min(self.cfg.poll_s, max(0.001, until_due))

    def _dispatch(self, leases: list[_Lease], events: dict[uuid.UUID, dict[str, Any]] | None = None) -> None:
        """Start leased runs: inline pipelines here, one after the other; others on their own threads."""
        self._ensure_tasks({lease.task_id: lease.row["task_version"] for lease in leases})
        if events is None:
            events = self._events([lease.row["event_id"] for lease in leases if lease.row["event_id"]])
        done: list[Outcome] = []
        for lease in leases:
            task = self._tasks[lease.task_id]
            event = events.get(lease.row["event_id"]) if lease.row["event_id"] else None
            with self._lock:
                self._executing += 1
            if task.pipeline is not None and task.pipeline.inline:
                self._execute(lease, task, event, done=done)
            else:
                threading.Thread(
                    target=self._execute, args=(lease, task, event), name=f"run-{lease.id}", daemon=True
                ).start()
        self.completer.add_many(done)

    def _ensure_tasks(self, wanted: dict[uuid.UUID, int]) -> None:
        missing = [
            tid
            for tid, version in wanted.items()
            if tid not in self._tasks or self._tasks[tid].version != version
        ]
        if not missing:
            return
        with self.db.tx() as conn:
            rows = conn.execute(Q["task_definitions"], {"ids": missing}).mappings().all()
        for row in rows:
            self._tasks[row["id"]] = self._compile_task(row)

    def _compile_task(self, row: Any) -> _TaskDef:
        pipeline, error = None, None
        try:
            pipeline = compile_pipeline(row["payload"], self.registry)
        except OrdoError as e:
            # The catalog changed since the task was accepted (a tool was removed): fail its runs clearly.
            error = {"code": e.code, "message": e.message, "retryable": False, "details": e.details}
        return _TaskDef(
            version=row["version"],
            status=row["status"],
            pipeline=pipeline,
            compile_error=error,
            context_task={
                "id": str(row["id"]),
                "title": row["title"],
                "timezone": row["timezone"],
                "agent_id": str(row["agent_id"]),
            },
            timeout_s=row["timeout_s"],
            policy=RetryPolicy(row["backoff_base_s"], row["backoff_cap_s"], row["backoff_jitter"]),
        )

    def _events(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
        if not ids:
            return {}
        with self.db.tx() as conn:
            rows = conn.execute(Q["events_by_id"], {"ids": ids}).mappings().all()
        return {
            r["id"]: {
                "id": str(r["id"]),
                "topic": r["topic"],
                "payload": r["payload"],
                "created_at": r["created_at"].isoformat(),
            }
            for r in rows
        }

    # -- running ---------------------------------------------------------------------------------

    def _execute(
        self, lease: _Lease, task: _TaskDef, event: dict[str, Any] | None, done: list[Outcome] | None = None
    ) -> None:
        """Run one lease. Inline runs (on the dispatcher) collect their outcome in `done`; runs on their
        own thread hand it to the completer and wake the dispatcher, which may wait for a free slot."""
        try:
            if self._stopping.is_set() and not lease.started:
                return  # handed back by _release_unstarted
            lease.started = True
            outcome = self._run(lease, task, event)
            lease.finished = True
            if done is not None:
                done.append(outcome)
            else:
                self.completer.add(outcome)
        except Exception:
            self.log.exception("run_crashed", run_id=lease.id)
        finally:
            with self._lock:
                self._executing -= 1
            if done is None:
                self._wake.set()

    def _run(self, lease: _Lease, task: _TaskDef, event: dict[str, Any] | None) -> Outcome:
        row = lease.row
        log = _RunLog(self.log, lease)
        if row["task_status"] == "canceled":
            return self._outcome(
                lease,
                "canceled",
                [],
                None,
                {"code": "TASK_CANCELED", "message": "the task was canceled"},
                log,
            )
        if task.pipeline is None:
            return self._outcome(lease, "dead", [], None, task.compile_error, log)
        now = lease.started_at
        params = dict(task.pipeline.params)
        if row["params"]:
            params.update(row["params"])
        context = {
            "params": params,
            "steps": {},
            "run": {
                "id": lease.id,
                "attempt": lease.attempt,
                "max_attempts": lease.max_attempts,
                "origin": row["origin"],
                "scheduled_for": _iso(row["scheduled_for"]),
            },
            "task": task.context_task,
            "event": event,
            "now": _iso(now),
        }
        result = run_pipeline(
            task.pipeline,
            context,
            now=now,
            timeout_s=task.timeout_s,
            limits=self.limits,
            is_canceled=lambda: lease.id in self._cancel_requested,
            log=log,
            db=self.db,
        )
        if result.state == "succeeded":
            return self._outcome(lease, "succeeded", result.steps, result.output, None, log)
        if result.state == "canceled":
            return self._outcome(lease, "canceled", result.steps, result.output, result.error, log)
        state, delay = decide(result.error, lease.attempt, lease.max_attempts, task.policy, self.rng)
        return self._outcome(lease, state, result.steps, result.output, result.error, log, retry_in_s=delay)

    def _outcome(
        self,
        lease: _Lease,
        state: str,
        steps: list[dict[str, Any]],
        output: dict[str, Any] | None,
        error: dict[str, Any] | None,
        log: Any,
        retry_in_s: float | None = None,
    ) -> Outcome:
        duration = time.monotonic() - lease.received
        _FINISHED[state].inc()
        metrics.RUN_SECONDS.observe(duration)
        if state == "succeeded":
            if self._log_successes:
                log.info("run_finished", state=state, duration_ms=round(duration * 1000, 3))
        else:
            log.warning(
                "run_finished",
                state=state,
                duration_ms=round(duration * 1000, 3),
                error_code=(error or {}).get("code"),
                error=(error or {}).get("message"),
                retry_in_s=retry_in_s,
            )
        return Outcome(
            id=lease.id,
            token=lease.token,
            state=state,
            retry_in_s=retry_in_s,
            duration_s=duration,
            steps=steps,
            output=output or None,
            error=error or None,
        )

    def _on_flushed(self, outcomes: list[Outcome], recorded: set[int]) -> None:
        with self._lock:
            for outcome in outcomes:
                self._held.pop(outcome.id, None)
                self._cancel_requested.discard(outcome.id)
                self._lost.discard(outcome.id)
        for outcome in outcomes:
            if outcome.id not in recorded:
                self.log.warning("completion_fenced", run_id=outcome.id, state=outcome.state)
        self._wake.set()

    # -- shutdown helpers ------------------------------------------------------------------------

    def _release_unstarted(self) -> None:
        with self._lock:
            unstarted = [lease for lease in self._held.values() if not lease.started]
            for lease in unstarted:
                lease.started = True  # a run thread that has not begun yet will now skip it
        if not unstarted:
            return
        with self.db.tx() as conn:
            released = (
                conn.execute(
                    Q["release_unstarted"],
                    {
                        "ids": [lease.id for lease in unstarted],
                        "tokens": [lease.token for lease in unstarted],
                    },
                )
                .scalars()
                .all()
            )
        with self._lock:
            for lease in unstarted:
                self._held.pop(lease.id, None)
        self.log.info("leases_handed_back", count=len(released))

    def _expire(self, leases: list[_Lease]) -> None:
        """Runs still going after the grace period: end their leases now so a rescuer retries them."""
        with self.db.tx() as conn:
            conn.execute(
                Q["expire_leases"],
                {"ids": [lease.id for lease in leases], "tokens": [lease.token for lease in leases]},
            )
        self.log.warning("runs_abandoned_at_shutdown", run_ids=[lease.id for lease in leases])
        with self._lock:
            for lease in leases:
                self._held.pop(lease.id, None)

    def _set_worker_state(self, state: str) -> None:
        try:
            with self.db.tx() as conn:
                conn.execute(Q["worker_heartbeat"], {"id": self.id, "state": state})
        except OrdoError:
            pass

    # -- heartbeat and listener ------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        next_rescue = time.monotonic() + self.cfg.rescue_interval_s
        while not self._aux_stop.wait(self.cfg.heartbeat_s):
            try:
                self.heartbeat_once()
                if time.monotonic() >= next_rescue:
                    self.rescuer.run_once()
                    next_rescue = time.monotonic() + self.cfg.rescue_interval_s
            except OrdoError as e:
                self.log.warning("heartbeat_failed", error=e.message)

    def heartbeat_once(self) -> None:
        with self._lock:
            held = list(self._held.values())
        with self.db.tx() as conn:
            conn.execute(
                Q["worker_heartbeat"],
                {"id": self.id, "state": "stopping" if self._stopping.is_set() else "running"},
            )
            if not held:
                return
            rows = conn.execute(
                Q["renew_leases"],
                {
                    "ids": [lease.id for lease in held],
                    "tokens": [lease.token for lease in held],
                    "lease_s": self.cfg.lease_s,
                },
            ).all()
        renewed = {r.id for r in rows}
        with self._lock:
            for r in rows:
                if r.cancel_requested:
                    self._cancel_requested.add(r.id)
            for lease in held:
                if lease.id not in renewed and lease.id in self._held and lease.id not in self._lost:
                    self._lost.add(lease.id)
                    self.log.warning("lease_lost", run_id=lease.id)

    def _listen_loop(self) -> None:
        backoff = 0.5
        while not self._aux_stop.is_set():
            try:
                with self.db.raw_connect() as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    backoff = 0.5
                    self._wake.set()  # anything enqueued while we were not listening
                    while not self._aux_stop.is_set():
                        for _ in conn.notifies(timeout=0.5, stop_after=1):
                            self._wake.set()
            except psycopg.Error as e:
                self.log.warning("listen_failed", error=str(e).strip(), retry_in_s=backoff)
                self._aux_stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
