"""/metrics of the API: its request metrics and its processes' memory and CPU (`ordo_process_*`;
summed over its server processes when there are several), and the system gauges PostgreSQL computes
at scrape time, so any API process reports the state of the whole system (queue, workers, scheduler
leader, webhook breakers)."""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from observability import metrics
from store.status import System

__all__ = ["Exposition", "keep_process_figures"]

# How often each of several server processes copies its memory and CPU into the shared store: well
# inside a scrape interval.
_PROCESS_SAMPLE_S = 5.0


class Exposition:
    """Renders one scrape. `metrics_dir`: the multiprocess directory shared by this API's server
    processes (None when there is one process)."""

    def __init__(self, metrics_dir: str | None = None) -> None:
        self.own = metrics.multiprocess_registry(metrics_dir, metrics.API) if metrics_dir else metrics.API

    def render(self, system: System | None) -> bytes:
        """`system`: this scrape's reading of the database; None when it could not be read."""
        metrics.PROCESS_FIGURES.sample()  # this process's memory and CPU, as of this scrape
        gauges = CollectorRegistry(auto_describe=False)
        gauges.register(metrics.SystemGauges(lambda: system))
        return generate_latest(self.own) + generate_latest(gauges)


def keep_process_figures(stop: threading.Event, log: Any) -> None:
    """Until `stop`: this server process's memory and CPU into the shared metrics store every few
    seconds (with several server processes a scrape reaches one, which reports them all)."""
    while True:
        try:
            metrics.PROCESS_FIGURES.sample()
        except Exception as e:  # a figure missed must not end the loop
            log.warning("process_figures_failed", error=str(e))
        if stop.wait(_PROCESS_SAMPLE_S):
            return
