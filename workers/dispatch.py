"""The dispatcher: leases due runs in batches sized to free slots and starts them.

It sleeps until NOTIFY, a freed slot, the next known run_at, or the poll interval. Unkeyed runs are
claimed with FOR UPDATE SKIP LOCKED: those whose pipeline is made only of inline tools run right here,
inside the claiming transaction, and are recorded before it commits (they take microseconds, and a
thread hand-off or a lease would cost more than the run); the others are turned into leases and get
a thread each. Runs under a concurrency key are leased in a pass of their own, within each key's
limit.

Runs whose every step is inline or asynchronous (an HTTP call) are awaited on the worker's one event
loop instead of a thread each (event_loop.py).

A batch of inline runs that the database refuses to record (one outcome holds what it cannot store)
rolls back whole; its runs are then leased like blocking ones the next time, so the completer can
find the culprit and record the others.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from observability import metrics
from store.db import Database, HeldConnection, translate_errors
from store.errors import OrdoError
from store.sql import load_queries
from workers.completer import Completer
from workers.event_loop import EventLoop
from workers.execute import Executor
from workers.health import LoopHealth
from workers.idle import seconds_until_due
from workers.inputs import TaskDefinitions, fetch_events
from workers.leases import Held, Lease
from workers.outcomes import Finished, is_refusal, record
from workers.owners import Owners

__all__ = ["DispatchConfig", "Dispatcher"]

Q = load_queries("workers", "queries.sql")

# Keyed work is rare: look for it every cycle while some exists, otherwise every this often, which
# saves a round trip per cycle and still serves keyed runs promptly when unkeyed work saturates.
_KEY_CHECK_S = 0.1
# Run ids whose inline batch the database refused, leased individually from then on. Bounded: a
# refusal is rare, and forgetting one only costs another rolled-back batch.
_SUSPECTS_MAX = 10_000


class DispatchConfig:
    def __init__(self, *, lease_s: float, poll_s: float, max_keys_per_lease: int) -> None:
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.max_keys_per_lease = max_keys_per_lease


class Dispatcher:
    def __init__(
        self,
        db: Database,
        cfg: DispatchConfig,
        held: Held,
        tasks: TaskDefinitions,
        owners: Owners,
        executor: Executor,
        completer: Completer,
        event_loop: EventLoop,
        log: Any,
        worker_id: str,
        wake: threading.Event,
        stopping: threading.Event,
        health: LoopHealth,
    ) -> None:
        self.db = db
        self.cfg = cfg
        self.held = held
        self.tasks = tasks
        self.owners = owners
        self.executor = executor
        self.completer = completer
        self.event_loop = event_loop
        self.log = log
        self.worker_id = worker_id
        self.wake = wake
        self.stopping = stopping
        self.health = health
        self._held = HeldConnection(db, log)
        self._keys_seen = True
        self._next_key_check = 0.0
        self._suspects: set[int] = set()

    def run(self, stop: threading.Event) -> None:
        """Lease and start runs until `stop` is set. Survives anything: a failed cycle is logged and
        the next one comes after a backoff."""
        backoff = 0.5
        while not stop.is_set():
            free = self.held.free_slots()
            if free <= 0:
                self.health.ok()  # every slot busy: nothing to lease
                self.wake.wait(self.cfg.poll_s)
                self.wake.clear()
                continue
            self.wake.clear()
            try:
                handled = self._cycle(free)
                self.owners.pause_revoked(self.db, self.log)
                backoff = 0.5
                self.health.ok()
            except Exception as e:  # the database is away, or a bug: back off, reconnect, go on
                self.health.failed(e)
                if isinstance(e, OrdoError):
                    self.log.warning("lease_failed", error=e.message, retry_in_s=backoff)
                else:
                    self.log.exception("dispatch_failed", retry_in_s=backoff)
                self._held.discard()
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if not handled:
                self.wake.wait(seconds_until_due(self.db, Q["next_due_at"], self.cfg.poll_s))

    def close(self) -> None:
        self._held.close()

    def _cycle(self, free: int) -> int:
        leases, events = self._lease_keyed(free)
        if leases:
            self._dispatch(leases, events)
        handled = len(leases)
        if handled < free:
            handled += self._claim(free - handled)
        return handled

    # -- leasing ----------------------------------------------------------------------------------

    def _lease_keyed(self, n: int) -> tuple[list[Lease], dict[uuid.UUID, dict[str, Any]]]:
        """Leases of due runs under concurrency keys, within each key's limit, with their events."""
        if not (self._keys_seen or time.monotonic() >= self._next_key_check):
            return [], {}
        params = {"now": None, "lease_s": self.cfg.lease_s, "worker_id": self.worker_id}
        rows: list[Any] = []
        with translate_errors():
            conn = self._held.get()
            with conn.begin():  # the key locks must hold until the keyed leases commit
                keys = conn.execute(Q["keys_ready"], {"now": None, "m": self.cfg.max_keys_per_lease}).all()
                # sorted: two workers lock keys in the same order
                for key, agent_id in sorted(keys, key=lambda k: (k[0], str(k[1]))):
                    if len(rows) >= n:
                        break
                    owned = {"key": key, "agent_id": agent_id}
                    conn.execute(Q["lock_key"], owned)
                    rows.extend(
                        conn.execute(Q["lease_keyed"], {**params, **owned, "n": n - len(rows)})
                        .mappings()
                        .all()
                    )
                # Before the leases commit: if this fails, no lease was taken.
                events = self._prepare(conn, rows) if rows else {}
        self._keys_seen = bool(keys)
        self._next_key_check = time.monotonic() + _KEY_CHECK_S
        return self._hold(rows, time.monotonic(), {r["id"]: r["lease_token"] for r in rows}), events

    def _claim(self, n: int) -> int:
        """Claim up to `n` due unkeyed runs in one transaction: run the inline ones and record them
        before committing; lease the others and start them on their own threads after it."""
        with translate_errors():
            conn = self._held.get()
            with conn.begin():
                rows = conn.execute(Q["claim_batch"], {"now": None, "n": n}).mappings().all()
                if not rows:
                    self._next_key_check = 0.0  # not saturated: the next cycle may as well look
                    return 0
                received = time.monotonic()
                events = self._prepare(conn, rows)
                inline: list[Finished] = []
                blocking: list[Any] = []
                for r in rows:
                    task = self.tasks[r["task_id"]]
                    if (not task.inline and task.pipeline is not None and r["task_status"] != "canceled") or (
                        r["id"] in self._suspects
                    ):
                        blocking.append(r)
                        continue
                    claim = Lease.of(r, received, token=None)
                    inline.append(self.executor.finish(claim, task, events.get(r["event_id"])))
                if inline:
                    self._record_claimed(conn, inline)
                tokens: dict[int, uuid.UUID] = {}
                if blocking:
                    leased = conn.execute(
                        Q["lease_claimed"],
                        {
                            "ids": [r["id"] for r in blocking],
                            "lease_s": self.cfg.lease_s,
                            "worker_id": self.worker_id,
                        },
                    ).all()
                    tokens = {row.id: row.lease_token for row in leased}
        metrics.RUNS_LEASED.inc(len(inline))
        if blocking:
            self._dispatch(self._hold(blocking, received, tokens), events)
        return len(rows)

    def _record_claimed(self, conn: Connection, inline: list[Finished]) -> None:
        """Record inline outcomes in the claiming transaction. If the database refuses what one of
        them holds, the whole claim rolls back: its runs are remembered and leased one by one next
        time, so the completer can record the others and end the culprit with the reason."""
        try:
            record(conn, inline, self.worker_id)
        except Exception as e:
            reason = is_refusal(e)
            if reason is not None:
                if len(self._suspects) > _SUSPECTS_MAX:
                    self._suspects.clear()
                self._suspects.update(f.id for f in inline)
                self.log.warning("claimed_batch_refused", runs=len(inline), reason=reason)
            raise

    def _prepare(self, conn: Connection, rows: list[Any]) -> dict[uuid.UUID, dict[str, Any]]:
        """Compile the tasks of these runs and learn their owners' scopes, if not known yet; return
        the events that triggered them."""
        self.tasks.ensure(conn, {r["task_id"]: r["task_version"] for r in rows})
        self.owners.ensure(conn, [self.tasks[tid] for tid in {r["task_id"] for r in rows}])
        return fetch_events(conn, (r["event_id"] for r in rows))

    def _hold(self, rows: list[Any], received: float, tokens: Mapping[int, uuid.UUID]) -> list[Lease]:
        leases = [Lease.of(r, received, tokens[r["id"]]) for r in rows]
        if leases:
            self.held.add(leases)
            metrics.RUNS_LEASED.inc(len(leases))
        return leases

    # -- starting runs ------------------------------------------------------------------------------

    def _dispatch(self, leases: list[Lease], events: dict[uuid.UUID, dict[str, Any]]) -> None:
        """Start leased runs: inline pipelines here, one after the other; asynchronous ones on the
        event loop; others on their own threads.
        A lease that cannot be started gets its WORKER_CRASH outcome, so it never stays held."""
        done: list[Finished] = []
        for lease in leases:
            event = events.get(lease.row["event_id"]) if lease.row["event_id"] else None
            try:
                task = self.tasks[lease.task_id]
                self.held.begin()
                if task.inline:
                    self._execute(lease, task, event, done)
                elif task.on_event_loop:
                    try:
                        self.event_loop.submit(self._execute_async(lease, task, event))
                    except BaseException:
                        self.held.end()  # the coroutine never ran, so it will not free its slot
                        raise
                else:
                    thread = threading.Thread(
                        target=self._execute, args=(lease, task, event), name=f"run-{lease.id}", daemon=True
                    )
                    try:
                        thread.start()
                    except BaseException:
                        self.held.end()  # the thread never ran, so it will not free its slot
                        raise
            except Exception as e:
                done.append(self.executor.crashed(lease, self.tasks.get(lease.task_id), e))
        self.completer.add_many(done)

    def _execute(self, lease: Lease, task: Any, event: Any, done: list[Finished] | None = None) -> None:
        """Run one lease. Inline runs (on the dispatcher) collect their outcome in `done`; runs on their
        own thread hand it to the completer and wake the dispatcher, which may wait for a free slot."""
        try:
            if not self.held.start(lease):
                return  # handed back at shutdown before it began
            finished = self.executor.finish(lease, task, event)
            lease.finished = True
            if done is not None:
                done.append(finished)
            else:
                self.completer.add(finished)
        finally:
            self.held.end()
            if done is None:
                self.wake.set()

    async def _execute_async(self, lease: Lease, task: Any, event: Any) -> None:
        """`_execute` for a run awaited on the worker's event loop."""
        try:
            if not self.held.start(lease):
                return
            finished = await self.executor.finish_async(lease, task, event)
            lease.finished = True
            self.completer.add(finished)
        finally:
            self.held.end()
            self.wake.set()
