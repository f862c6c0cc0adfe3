"""The rescuer: returns runs whose lease expired (their worker died or hung) to the queue.

Every worker runs one; the statement is safe to run concurrently (SKIP LOCKED), so a fleet keeps
rescuing as long as any worker lives.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from observability import metrics
from store.db import Database
from store.sql import load_queries

__all__ = ["Rescuer", "RescuerConfig"]

Q = load_queries("workers", "queries.sql")


@dataclass(frozen=True)
class RescuerConfig:
    interval_s: float = 5.0
    batch: int = 1000

    def __post_init__(self) -> None:
        if self.interval_s <= 0 or self.batch < 1:
            raise ValueError(f"invalid rescuer config {self}")


class Rescuer:
    def __init__(self, db: Database, cfg: RescuerConfig, log: Any) -> None:
        self.db = db
        self.cfg = cfg
        self.log = log

    def run_once(self, now: datetime | None = None) -> int:
        total = 0
        while True:
            with self.db.tx() as conn:
                rows = conn.execute(Q["rescue_expired"], {"now": now, "n": self.cfg.batch}).mappings().all()
            for row in rows:
                self.log.warning(
                    "lease_expired",
                    run_id=row["work_id"],
                    task_id=str(row["task_id"]),
                    attempt=row["attempt"],
                    new_state=row["state"],
                )
            total += len(rows)
            if len(rows) < self.cfg.batch:
                break
        if total:
            metrics.LEASES_RESCUED.inc(total)
            self.log.info("leases_rescued", count=total)
        return total

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.cfg.interval_s):
            try:
                self.run_once()
            except Exception as e:  # keep rescuing after a database hiccup
                self.log.warning("rescue_failed", error=str(e))
