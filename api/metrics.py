"""/metrics: the process's own metrics (observability.metrics) plus gauges read from the database at
scrape time, so any API process reports the state of the whole system."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from observability.metrics import QUEUE_DEPTH
from store import runs as store_runs
from store import status
from store.db import Database
from store.errors import OrdoError

__all__ = ["scrape"]

_STATES = ("queued", "failed", "running")
_WORKER_FRESH_S = 15.0


class _SystemGauges(Collector):
    # Gauges about the whole system rather than this process; they exist only in the API's scrape.
    # (Candidates for observability/metrics.py if other processes ever serve them.)
    def __init__(self, readings: dict[str, Any]) -> None:
        self.readings = readings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        r = self.readings
        yield GaugeMetricFamily(
            "ordo_database_up", "1 if the API could read the database at scrape time.", value=r["up"]
        )
        if not r["up"]:
            return
        live: status.Liveness = r["live"]
        yield GaugeMetricFamily(
            "ordo_workers_alive",
            f"Workers with a heartbeat in the last {_WORKER_FRESH_S:g} s.",
            value=live.workers_fresh,
        )
        yield GaugeMetricFamily(
            "ordo_worker_slots", "Run slots of the live workers.", value=live.worker_slots
        )
        yield GaugeMetricFamily(
            "ordo_scheduler_leader_heartbeat_age_seconds",
            "Seconds since the scheduler leader's last heartbeat (NaN: no leader ever).",
            value=float("nan") if live.leader_age_s is None else live.leader_age_s,
        )
        oldest = GaugeMetricFamily(
            "ordo_queue_oldest_age_seconds", "Age of the oldest waiting run, by state.", labels=["state"]
        )
        for state, age in r["oldest"].items():
            oldest.add_metric([state], age)
        yield oldest


def scrape(db: Database) -> bytes:
    readings: dict[str, Any] = {"up": 0}
    try:
        with db.tx() as conn:
            depth = store_runs.queue_depth(conn)
            live = status.liveness(conn, worker_fresh_s=_WORKER_FRESH_S)
        readings.update(up=1, live=live, oldest={})
        for state in _STATES:
            entry = depth.get(state, {"count": 0, "oldest_run_at": None})
            QUEUE_DEPTH.labels(state).set(entry["count"])
            if entry["oldest_run_at"] is not None:
                readings["oldest"][state] = max(0.0, (live.db_now - entry["oldest_run_at"]).total_seconds())
    except OrdoError:
        pass
    system = CollectorRegistry(auto_describe=False)
    system.register(_SystemGauges(readings))
    return generate_latest(REGISTRY) + generate_latest(system)
