"""Group commit of finished attempts: outcomes (each already serialised and size-checked on its own,
see outcomes.py) collect for a few milliseconds, or until a batch is full, and are written with one
fenced statement.

A batch the database cannot take because of what one outcome holds is split until that outcome is
alone; it is then replaced by the run's dead outcome with the database's reason, and the rest is
written. A batch that fails because the database is away is retried with backoff while the leases
are renewed; at shutdown, after the last try, its outcomes are reported lost (their leases expire and
the runs are retried elsewhere). Rows whose lease passed to another worker are reported as fenced.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from observability import metrics
from store.db import Database, HeldConnection, translate_errors
from store.errors import StoreError
from workers.health import LoopHealth
from workers.outcomes import Finished, chunked, is_refusal, record, refused

__all__ = ["Completer", "CompleterConfig"]

# on_flushed(batch, recorded ids, lost): lost is True when the batch was given up at shutdown.
OnFlushed = Callable[[list[Finished], set[int], bool], None]


@dataclass(frozen=True)
class CompleterConfig:
    max_batch: int = 500
    max_delay_s: float = 0.002
    retry_backoff_s: float = 0.5

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_delay_s < 0 or self.retry_backoff_s <= 0:
            raise ValueError(f"invalid completer config {self}")


class Completer:
    """Collects finished outcomes from any thread; one background thread writes them in batches."""

    def __init__(
        self,
        db: Database,
        cfg: CompleterConfig,
        log: Any,
        worker_id: str,
        on_flushed: OnFlushed,
        health: LoopHealth,
    ) -> None:
        self.db = db
        self.cfg = cfg
        self.log = log
        self.worker_id = worker_id
        self.on_flushed = on_flushed
        self.health = health
        self._pending: list[Finished] = []
        self._cond = threading.Condition()
        self._first_at: float | None = None
        # Autocommit: record_outcomes is one statement, so it needs no BEGIN/COMMIT round trips.
        self._held = HeldConnection(db, log, autocommit=True)

    def add(self, finished: Finished) -> None:
        with self._cond:
            if not self._pending:
                self._first_at = time.monotonic()
            self._pending.append(finished)
            if len(self._pending) >= self.cfg.max_batch or self.cfg.max_delay_s == 0:
                self._cond.notify()
            elif len(self._pending) == 1:
                self._cond.notify()  # start the delay clock in the writer thread

    def add_many(self, batch: list[Finished]) -> None:
        """Several outcomes under one lock: the dispatcher hands over a whole inline batch at once."""
        if not batch:
            return
        with self._cond:
            if not self._pending:
                self._first_at = time.monotonic()
            self._pending.extend(batch)
            self._cond.notify()

    def run(self, stop: threading.Event) -> None:
        """Write batches until `stop` is set and nothing is pending. Survives anything: a pass that
        raises is logged and counted against the loop's health, its batch goes back to the front of
        the queue, and the next pass goes on (at shutdown, a batch that fails three times is
        reported lost instead)."""
        failures = 0
        while True:
            batch: list[Finished] | None = None
            try:
                batch = self._take(stop)
                if batch is None:
                    return
                if batch:
                    self._write(batch, stop)
                self.health.ok()
                failures = 0
            except Exception as e:  # a bug here must not end group commit for the whole worker
                failures += 1
                self.health.failed(e)
                self.log.exception("completer_failed", batch=len(batch or ()))
                if batch and stop.is_set() and failures >= 3:
                    self._give_up(batch, f"{type(e).__name__}: {e}")
                elif batch:
                    with self._cond:
                        self._pending[:0] = batch
                        self._first_at = time.monotonic()
                stop.wait(self.cfg.retry_backoff_s)

    def _take(self, stop: threading.Event) -> list[Finished] | None:
        with self._cond:
            while True:
                if self._pending:
                    assert self._first_at is not None
                    due = self._first_at + self.cfg.max_delay_s
                    wait = due - time.monotonic()
                    if len(self._pending) >= self.cfg.max_batch or wait <= 0 or stop.is_set():
                        # At most BATCH_MAX_BYTES of records: one statement, and a retry after an
                        # outage never finds part of its batch already written.
                        n = len(chunked(self._pending[: self.cfg.max_batch])[0])
                        batch = self._pending[:n]
                        self._pending = self._pending[n:]
                        self._first_at = time.monotonic() if self._pending else None
                        return batch
                    self._cond.wait(wait)
                elif stop.is_set():
                    return None
                else:
                    self._cond.wait(0.1)
                    return []  # an idle pass: the loop reports itself alive

    def _write(self, batch: list[Finished], stop: threading.Event) -> None:
        delay = self.cfg.retry_backoff_s
        while True:
            try:
                recorded = self._record(batch)
            except StoreError as e:
                self._held.discard()
                self.health.failed(e)
                # The database is away; outcomes stay in memory and leases keep being renewed.
                self.log.warning(
                    "completion_write_failed", error=e.message, batch=len(batch), retry_in_s=delay
                )
                if stop.wait(delay) and delay > 5:
                    self._give_up(batch, e.message)
                    return
                delay = min(delay * 2, 10.0)
                continue
            fenced = len(batch) - len(recorded)
            if fenced:
                metrics.COMPLETIONS_FENCED.inc(fenced)
            self.on_flushed(batch, recorded, False)
            return

    def _give_up(self, batch: list[Finished], reason: str) -> None:
        """Shutdown with outcomes that cannot be written: report them lost (not fenced). Their leases
        expire and a rescuer retries the runs."""
        metrics.COMPLETIONS_LOST.inc(len(batch))
        self.log.error(
            "completions_lost_on_shutdown", count=len(batch), run_ids=[f.id for f in batch], reason=reason
        )
        self.on_flushed(batch, set(), True)

    def _record(self, batch: list[Finished]) -> set[int]:
        """Write the batch; on a refusal caused by its data, halve it until the culprit is alone."""
        try:
            with translate_errors():
                return record(self._held.get(), batch, self.worker_id)
        except StoreError as e:
            reason = is_refusal(e)
            if reason is None:
                raise
        if len(batch) > 1:
            half = len(batch) // 2
            return self._record(batch[:half]) | self._record(batch[half:])
        (culprit,) = batch
        task_id = None if culprit.task_id is None else str(culprit.task_id)
        self.log.error("completion_refused", run_id=culprit.id, task_id=task_id, reason=reason)
        replacement = refused(culprit, reason)
        try:
            with translate_errors():
                return record(self._held.get(), [replacement], self.worker_id)
        except StoreError as e:
            if is_refusal(e) is None:
                raise
            # Not even the bare outcome can be stored: leave the lease to expire; the rescuer
            # records the attempt and max_attempts bounds how often this happens.
            self.log.error(
                "completion_unrecordable", run_id=culprit.id, task_id=task_id, reason=is_refusal(e)
            )
            return set()

    def close(self) -> None:
        self._held.close()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()
