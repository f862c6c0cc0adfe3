"""The rescuer: returns runs whose lease expired (their worker died or hung) to the queue.

Every worker runs one (on its heartbeat thread); expired leases are locked with SKIP LOCKED, so a
fleet keeps rescuing as long as any worker lives. The abandoned attempt is recorded like any other,
through record_outcomes: retried at once, or dead when it was the last attempt allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from observability import metrics
from store.db import Database
from store.settings import Settings
from store.sql import load_queries
from workers.outcomes import Outcome, record, serialise

__all__ = ["Rescuer", "RescuerConfig"]

Q = load_queries("workers", "queries.sql")

# Large enough for any rescue record: it holds no steps, only the error below.
_RECORD_MAX_BYTES = 64 * 1024


@dataclass(frozen=True)
class RescuerConfig:
    interval_s: float = Settings.rescue_interval_s  # ORDO_RESCUE_INTERVAL_S, defined there once
    batch: int = 1000

    def __post_init__(self) -> None:
        if self.interval_s <= 0 or self.batch < 1:
            raise ValueError(f"invalid rescuer config {self}")


class Rescuer:
    def __init__(self, db: Database, cfg: RescuerConfig, log: Any, worker_id: str) -> None:
        self.db = db
        self.cfg = cfg
        self.log = log
        self.worker_id = worker_id

    def run_once(self, now: datetime | None = None) -> int:
        """Record every lease expired at `now` (default: the database clock) as an abandoned
        attempt; return how many."""
        total = 0
        while True:
            with self.db.tx() as conn:
                rows = conn.execute(Q["expired_leases"], {"now": now, "n": self.cfg.batch}).mappings().all()
                if rows:
                    record(
                        conn,
                        [serialise(_abandoned(r), _RECORD_MAX_BYTES, r["task_id"]) for r in rows],
                        self.worker_id,
                    )
            for row in rows:
                self.log.warning(
                    "lease_expired",
                    run_id=row["id"],
                    task_id=str(row["task_id"]),
                    attempt=row["attempt"],
                    new_state=_state(row),
                    lost_by=row["worker_id"],
                )
            total += len(rows)
            if len(rows) < self.cfg.batch:
                break
        if total:
            metrics.LEASES_RESCUED.inc(total)
            self.log.info("leases_rescued", count=total)
        return total


def _state(row: Any) -> str:
    return "dead" if row["attempt"] >= row["max_attempts"] else "failed"


def _abandoned(row: Any) -> Outcome:
    state = _state(row)
    return Outcome(
        id=row["id"],
        token=row["lease_token"],
        attempt=row["attempt"],
        state=state,
        retry_in_s=0.0 if state == "failed" else None,
        duration_s=float(row["duration_s"]),
        steps=[],
        output=None,
        error={
            "code": "LEASE_EXPIRED",
            "message": f"worker {row['worker_id'] or '?'} stopped renewing its lease; attempt abandoned",
            "retryable": True,
        },
    )
