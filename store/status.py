"""Liveness of the scheduler leader and the workers, read from their heartbeats."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from store.sql import load_queries

__all__ = ["Liveness", "liveness", "ping"]

Q = load_queries("store", "status.sql")


@dataclass(frozen=True)
class Liveness:
    leader_id: str | None
    leader_age_s: float | None  # None: no scheduler has ever led
    workers_fresh: int
    worker_slots: int
    worker_age_s: float | None  # None: no running worker row
    db_now: datetime
    failing_loops: str | None = None  # background loops of fresh workers that fail, described


def liveness(conn: Connection, *, worker_fresh_s: float) -> Liveness:
    row = conn.execute(Q["liveness"], {"worker_fresh_s": worker_fresh_s}).mappings().one()
    return Liveness(
        leader_id=row["leader_id"],
        leader_age_s=None if row["leader_age_s"] is None else float(row["leader_age_s"]),
        workers_fresh=int(row["workers_fresh"]),
        worker_slots=int(row["worker_slots"]),
        worker_age_s=None if row["worker_age_s"] is None else float(row["worker_age_s"]),
        db_now=row["db_now"],
        failing_loops=row["failing_loops"],
    )


def ping(conn: Connection) -> None:
    conn.execute(Q["ping"]).scalar_one()
