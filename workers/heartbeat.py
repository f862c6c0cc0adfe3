"""The heartbeat: keeps the worker's leases alive, hears cancel requests and lost leases, tells the
database the worker and its loops are alive, and runs the rescuer every `rescue_interval_s`.

Both duties survive anything: a failed pass is logged, counted against its loop's health, and the
next pass comes on schedule. A worker whose heartbeat stopped would let every lease it holds expire
mid-run, and one whose rescuer stopped would leave other workers' expired leases behind.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from store.db import Database
from store.sql import load_queries
from workers.health import WorkerHealth
from workers.leases import Held
from workers.rescuer import Rescuer

__all__ = ["Heartbeat", "HeartbeatConfig"]

Q = load_queries("workers", "queries.sql")


@dataclass(frozen=True)
class HeartbeatConfig:
    interval_s: float
    lease_s: float
    rescue_interval_s: float


class Heartbeat:
    def __init__(
        self,
        db: Database,
        cfg: HeartbeatConfig,
        held: Held,
        rescuer: Rescuer,
        health: WorkerHealth,
        log: Any,
        worker_id: str,
        stopping: threading.Event,
    ) -> None:
        self.db = db
        self.cfg = cfg
        self.held = held
        self.rescuer = rescuer
        self.health = health
        self.log = log
        self.worker_id = worker_id
        self.stopping = stopping

    def run(self, stop: threading.Event) -> None:
        next_rescue = time.monotonic() + self.cfg.rescue_interval_s
        while not stop.wait(self.cfg.interval_s):
            try:
                self.beat_once()
                self.health["heartbeat"].ok()
            except Exception as e:  # a database outage, or a bug: either way, beat again next time
                self.health["heartbeat"].failed(e)
                self.log.warning("heartbeat_failed", error=self.health["heartbeat"].error, exc_info=True)
            if time.monotonic() >= next_rescue:
                next_rescue = time.monotonic() + self.cfg.rescue_interval_s
                try:
                    self.rescuer.run_once()
                    self.health["rescuer"].ok()
                except Exception as e:
                    self.health["rescuer"].failed(e)
                    self.log.warning("rescue_failed", error=self.health["rescuer"].error, exc_info=True)

    def beat_once(self) -> None:
        """Renew held leases, note cancel requests and lost leases, and report the worker's state."""
        leased = self.held.leased()
        with self.db.tx() as conn:
            self._report(conn, "stopping" if self.stopping.is_set() else "running")
            if not leased:
                return
            rows = conn.execute(
                Q["renew_leases"],
                {
                    "ids": [lease.id for lease in leased],
                    "tokens": [lease.token for lease in leased],
                    "lease_s": self.cfg.lease_s,
                },
            ).all()
        for lease in self.held.renewed(leased, {r.id: r.cancel_requested for r in rows}):
            self.log.warning("lease_lost", run_id=lease.id, task_id=str(lease.task_id))

    def report(self, state: str) -> None:
        """The worker row: alive now, in `state`, with the health of every background loop."""
        with self.db.tx() as conn:
            self._report(conn, state)

    def _report(self, conn: Any, state: str) -> None:
        conn.execute(
            Q["worker_heartbeat"],
            {"id": self.worker_id, "state": state, "loops": json.dumps(self.health.report())},
        )
