"""The state of the moving parts, read from PostgreSQL: the queue (what is due now, how long it has
waited, what is running), the workers, the scheduler leader and webhook breakers.

One reading (`system`) feeds /health/ready and the system gauges of /metrics; `overview` adds the
last hour's runs and the worker list and is GET /status and `ordo status`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from store.domain import ENDPOINT_STATES, RECORDED_STATES, iso_utc
from store.settings import Settings
from store.sql import load_queries

__all__ = [
    "PRIORITY_BANDS",
    "WEBHOOK_ENDPOINT_STATES",
    "Freshness",
    "System",
    "overview",
    "ping",
    "priority_band",
    "prune_workers",
    "system",
]

Q = load_queries("store", "status.sql")

PRIORITY_BANDS = ("low", "normal", "high")  # priorities 1-3, 4-6, 7-9
WEBHOOK_ENDPOINT_STATES = ENDPOINT_STATES


def priority_band(priority: int) -> str:
    return PRIORITY_BANDS[(priority - 1) // 3]


@dataclass(frozen=True)
class Freshness:
    """How recent a heartbeat must be to count as alive: the one rule readiness, metrics and status
    share. Workers renew every lease_s / 3 (at most 5 s); the leader writes on every tick."""

    worker_s: float
    leader_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Freshness:
        return cls(worker_s=max(15.0, settings.lease_s), leader_s=max(10.0, 5 * settings.scheduler_tick_s))


@dataclass(frozen=True)
class System:
    due: dict[str, int]  # runs due now and waiting, by priority band
    lag_s: dict[str, float]  # age of the oldest due run, by priority band (0: none waits)
    leased: int
    leader_id: str | None
    leader_since: datetime | None
    leader_heartbeat_at: datetime | None
    leader_age_s: float | None  # None: no scheduler has ever led
    workers_alive: int
    worker_slots: int
    workers_lost: int
    worker_age_s: float | None  # None: no running worker row
    failing_loops: str | None  # background loops of live workers that fail, described
    webhook_endpoints: dict[str, int]  # by state: active, paused, breaker_open
    db_now: datetime
    read_s: float

    @property
    def due_total(self) -> int:
        return sum(self.due.values())

    @property
    def lag_max_s(self) -> float:
        return max(self.lag_s.values())


def system(conn: Connection, fresh: Freshness) -> System:
    started = time.perf_counter()
    row = conn.execute(Q["system"], {"worker_fresh_s": fresh.worker_s}).mappings().one()
    webhooks = dict.fromkeys(WEBHOOK_ENDPOINT_STATES, 0)
    for state, n in zip(row["webhook_states"] or [], row["webhook_endpoints"] or [], strict=True):
        webhooks[state] = int(n)
    due: dict[str, int] = dict.fromkeys(PRIORITY_BANDS, 0)
    lag: dict[str, float] = dict.fromkeys(PRIORITY_BANDS, 0.0)
    for priority, runs, lag_s in zip(
        row["due_priorities"] or [], row["due_runs"] or [], row["due_lag_s"] or [], strict=True
    ):
        band = priority_band(priority)
        due[band] += int(runs)
        lag[band] = max(lag[band], max(0.0, float(lag_s)))
    return System(
        due=due,
        lag_s=lag,
        leased=int(row["leased"]),
        leader_id=row["leader_id"],
        leader_since=row["leader_since"],
        leader_heartbeat_at=row["leader_heartbeat_at"],
        leader_age_s=None if row["leader_age_s"] is None else float(row["leader_age_s"]),
        workers_alive=int(row["workers_alive"]),
        worker_slots=int(row["worker_slots"]),
        workers_lost=int(row["workers_lost"]),
        worker_age_s=None if row["worker_age_s"] is None else float(row["worker_age_s"]),
        failing_loops=row["failing_loops"],
        webhook_endpoints=webhooks,
        db_now=row["db_now"],
        read_s=time.perf_counter() - started,
    )


def overview(conn: Connection, fresh: Freshness) -> dict[str, Any]:
    """GET /status and `ordo status`: queue, last hour's runs, workers, scheduler, webhook breakers."""
    s = system(conn, fresh)
    finished = dict.fromkeys(RECORDED_STATES, 0)
    for r in conn.execute(Q["runs_last_hour"]):
        finished[r.state] = int(r.n)
    workers = [
        {
            "id": w.id,
            "host": w.hostname,
            "pid": w.pid,
            "concurrency": w.concurrency,
            "busy": int(w.busy),
            "state": w.state,
            "alive": w.state == "running" and float(w.last_seen_s) <= fresh.worker_s,
            "started_at": iso_utc(w.started_at),
            "last_seen_at": iso_utc(w.heartbeat_at),
            "last_seen_s": round(float(w.last_seen_s), 3),
        }
        for w in conn.execute(Q["workers"])
    ]
    breakers_open = [str(r.id) for r in conn.execute(Q["webhook_breakers_open"])]
    leader_ok = s.leader_age_s is not None and s.leader_age_s <= fresh.leader_s
    return {
        "at": iso_utc(s.db_now),
        "queue": {
            "due": s.due_total,
            "due_by_priority_band": s.due,
            "leased": s.leased,
            "lag_s": round(s.lag_max_s, 3),
            "lag_s_by_priority_band": {band: round(v, 3) for band, v in s.lag_s.items()},
        },
        "runs_last_hour": finished,
        "workers": {
            "alive": s.workers_alive,
            "slots": s.worker_slots,
            "busy": sum(w["busy"] for w in workers if w["alive"]),
            "lost": s.workers_lost,
            "processes": workers,
        },
        "scheduler": {
            "leader": s.leader_id,
            "leader_since": iso_utc(s.leader_since),
            "last_tick_at": iso_utc(s.leader_heartbeat_at),
            "last_tick_age_s": None if s.leader_age_s is None else round(s.leader_age_s, 3),
            "ok": leader_ok,
        },
        "webhooks": {"endpoints_by_state": s.webhook_endpoints, "breakers_open": breakers_open},
    }


def ping(conn: Connection) -> None:
    conn.execute(Q["ping"]).scalar_one()


def prune_workers(conn: Connection, cutoff: datetime) -> int:
    return conn.execute(Q["prune_workers"], {"cutoff": cutoff}).rowcount
