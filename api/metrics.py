"""/metrics of the API: its request metrics (summed over its server processes when there are several)
and the system gauges PostgreSQL computes at scrape time, so any API process reports the state of the
whole system (queue, workers, scheduler leader, webhook breakers)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from observability import metrics
from store.status import System

__all__ = ["Exposition"]


class Exposition:
    """Renders one scrape. `metrics_dir`: the multiprocess directory shared by this API's server
    processes (None when there is one process)."""

    def __init__(self, metrics_dir: str | None = None) -> None:
        self.own = metrics.multiprocess_registry(metrics_dir, metrics.API) if metrics_dir else metrics.API

    def render(self, system: System | None) -> bytes:
        """`system`: this scrape's reading of the database; None when it could not be read."""
        gauges = CollectorRegistry(auto_describe=False)
        gauges.register(metrics.SystemGauges(lambda: system))
        return generate_latest(self.own) + generate_latest(gauges)
