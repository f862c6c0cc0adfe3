"""Every Prometheus metric Ordo exports, defined once.

Each process kind serves its own registry: `WORKER`, `SCHEDULER`, `API`. A worker's /metrics never
shows a scheduler gauge stuck at 0, and two kinds on one host never report each other's figures.
The system-wide gauges (queue depth and lag, live workers, the scheduler leader, webhook breakers)
are not kept by any process: PostgreSQL computes them once per scrape of the API (`SystemGauges`).

Labels are bounded: tool address (from the catalog), outcome, route template, HTTP method and
status, priority band. Never a run, task, agent or endpoint id.

Several processes of one kind on a host (see ops/README.md, "Metrics"):
- workers and schedulers: one port per process (`--metrics-port` / `ORDO_METRICS_PORT`); Prometheus
  scrapes each; `ordo up` gives its scheduler the port and its worker the port + 1;
- the API's server processes share one port, so they share figures through prometheus-client's
  multiprocess mode: a fresh directory per `ordo api`, counters and histograms summed over every
  server process that ever ran under it, so a restarted process does not reset them
  (`multiprocess_registry`).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from store.status import System

__all__ = [
    "API",
    "API_PROCESS_CPU",
    "API_PROCESS_GAUGES",
    "API_REQUESTS",
    "API_REQUEST_SECONDS",
    "COMPLETIONS_FENCED",
    "COMPLETIONS_LOST",
    "DURATION_BUCKETS",
    "LEASES_RESCUED",
    "PROCESS_FIGURES",
    "RUNS_FINISHED",
    "RUNS_LEASED",
    "RUNS_UNRECORDABLE",
    "RUN_SECONDS",
    "SCHEDULER",
    "SCHEDULER_IS_LEADER",
    "SCHEDULER_OCCURRENCES",
    "SCHEDULER_TICK_SECONDS",
    "STEPS_FINISHED",
    "STEP_SECONDS",
    "SYSTEM_GAUGES",
    "WEBHOOK_DELIVERIES",
    "WEBHOOK_DELIVERY_SECONDS",
    "WORKER",
    "WORKER_BUSY_SLOTS",
    "WORKER_LOOP_FAILURES",
    "WORKER_LOOP_HEALTHY",
    "WORKER_SLOTS",
    "ProcessFigures",
    "SystemGauges",
    "multiprocess_registry",
    "observe_steps",
]

# No `_created` series: they double the series count and no dashboard or alert reads them.
disable_created_metrics()

WORKER = CollectorRegistry(auto_describe=True)
SCHEDULER = CollectorRegistry(auto_describe=True)
API = CollectorRegistry(auto_describe=True)

# Wide enough for a 1 ms echo step (0.5, 1 and 2.5 ms buckets) and a 60 s solve (30, 60, 120 s).
DURATION_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800,
)  # fmt: skip
_API_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# -- workers --------------------------------------------------------------------------------------

RUNS_LEASED = Counter("ordo_runs_leased", "Runs this worker leased (or claimed inline).", registry=WORKER)
RUNS_FINISHED = Counter(
    "ordo_runs_finished",
    "Attempts this worker finished, by outcome: succeeded, failed (will be retried), dead, canceled.",
    ["outcome"],
    registry=WORKER,
)
RUN_SECONDS = Histogram(
    "ordo_run_duration_seconds",
    "Wall time of one attempt, from lease to outcome.",
    buckets=DURATION_BUCKETS,
    registry=WORKER,
)
STEPS_FINISHED = Counter(
    "ordo_steps",
    "Pipeline steps this worker ran, by tool address and outcome (ok, failed, timed_out, skipped).",
    ["tool", "outcome"],
    registry=WORKER,
)
STEP_SECONDS = Histogram(
    "ordo_step_duration_seconds",
    "Wall time of one pipeline step, by tool address.",
    ["tool"],
    buckets=DURATION_BUCKETS,
    registry=WORKER,
)
COMPLETIONS_FENCED = Counter(
    "ordo_completions_fenced",
    "Results dropped because the lease had passed to another worker.",
    registry=WORKER,
)
COMPLETIONS_LOST = Counter(
    "ordo_completions_lost",
    "Results a worker could not write before it stopped (the database was away); their leases expire "
    "and the runs are retried.",
    registry=WORKER,
)
RUNS_UNRECORDABLE = Counter(
    "ordo_runs_unrecordable",
    "Attempts whose record could not be stored as it was; they ended dead with the reason "
    "(code: OUTPUT_TOO_LARGE, UNRECORDABLE_OUTPUT).",
    ["code"],
    registry=WORKER,
)
LEASES_RESCUED = Counter(
    "ordo_leases_rescued",
    "Expired leases this worker's rescuer returned to the queue or ended as dead.",
    registry=WORKER,
)
WORKER_BUSY_SLOTS = Gauge(
    "ordo_worker_busy_slots", "Runs the workers of this process are executing now.", registry=WORKER
)
WORKER_LOOP_HEALTHY = Gauge(
    "ordo_worker_loop_healthy",
    "1 while this background loop (heartbeat, rescuer, listener, completer, deliverer, event_loop) "
    "passes in every worker of this process; 0 while it fails or stalls.",
    ["loop"],
    registry=WORKER,
)
WORKER_LOOP_FAILURES = Counter(
    "ordo_worker_loop_failures",
    "Failed passes of a worker background loop; each is logged and the loop goes on.",
    ["loop"],
    registry=WORKER,
)
WORKER_SLOTS = Gauge("ordo_worker_slots", "Runs this worker may execute at once.", registry=WORKER)
# Webhook deliveries run through the queue on workers. Outcomes: succeeded, failed (will be retried),
# dead (no retries left).
WEBHOOK_DELIVERIES = Counter(
    "ordo_webhook_deliveries",
    "Webhook delivery attempts, by outcome: succeeded, failed (will be retried), dead.",
    ["outcome"],
    registry=WORKER,
)
WEBHOOK_DELIVERY_SECONDS = Histogram(
    "ordo_webhook_delivery_duration_seconds",
    "Time from sending a webhook request to its response (or error).",
    buckets=DURATION_BUCKETS,
    registry=WORKER,
)

# -- scheduler ------------------------------------------------------------------------------------

SCHEDULER_IS_LEADER = Gauge(
    "ordo_scheduler_is_leader", "1 while this scheduler holds the leader lock.", registry=SCHEDULER
)
SCHEDULER_TICK_SECONDS = Histogram(
    "ordo_scheduler_tick_duration_seconds",
    "Duration of one leader tick (expansion of due schedules).",
    buckets=DURATION_BUCKETS,
    registry=SCHEDULER,
)
SCHEDULER_OCCURRENCES = Counter(
    "ordo_scheduler_occurrences",
    "Occurrences the leader wrote, by outcome: queued, skipped (misfire policy).",
    ["outcome"],
    registry=SCHEDULER,
)

# -- API ------------------------------------------------------------------------------------------

API_REQUESTS = Counter(
    "ordo_api_requests",
    "API requests, by method, route template and status code.",
    ["method", "route", "status"],
    registry=API,
)
API_REQUEST_SECONDS = Histogram(
    "ordo_api_request_duration_seconds",
    "API request latency, by method and route template.",
    ["method", "route"],
    buckets=_API_BUCKETS,
    registry=API,
)

_STEP_CHILDREN: dict[tuple[str, str], tuple[Counter, Histogram]] = {}


def observe_steps(steps: Iterable[dict]) -> None:
    """Count and time the steps of one finished attempt (records as engine.run_pipeline writes them:
    `uses`, `state`, `duration_ms`). Labelled children are resolved once per (tool, outcome)."""
    for step in steps:
        key = (step["uses"], step["state"])
        children = _STEP_CHILDREN.get(key)
        if children is None:
            children = _STEP_CHILDREN[key] = (STEPS_FINISHED.labels(*key), STEP_SECONDS.labels(key[0]))
        children[0].inc()
        if key[1] != "skipped":
            children[1].observe(step["duration_ms"] / 1000)


for _registry in (WORKER, SCHEDULER):
    # Memory and CPU of workers and schedulers (one process each), in Ordo's namespace.
    ProcessCollector(namespace="ordo", registry=_registry)

# The API's server processes share one port (see the module docstring), so their memory and CPU are
# figures of the multiprocess store like the rest of the API's: each process copies what
# prometheus-client's ProcessCollector reads of it into these (`ProcessFigures`). CPU seconds add up
# over every server process that ever ran under this `ordo api` (a counter never goes back), memory
# and open files over the live ones; the start time is the oldest live process's. The names are the
# ones workers and schedulers export.
API_PROCESS_CPU = Counter(
    "ordo_process_cpu_seconds", "Total user and system CPU time spent in seconds.", registry=API
)
API_PROCESS_GAUGES = {
    name: Gauge(name, help, registry=API, multiprocess_mode=mode)
    for name, help, mode in (
        ("ordo_process_resident_memory_bytes", "Resident memory size in bytes.", "livesum"),
        ("ordo_process_virtual_memory_bytes", "Virtual memory size in bytes.", "livesum"),
        ("ordo_process_open_fds", "Number of open file descriptors.", "livesum"),
        ("ordo_process_max_fds", "Maximum number of open file descriptors.", "livemin"),
        (
            "ordo_process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            "livemin",
        ),
    )
}


class ProcessFigures:
    """Copies this process's memory, CPU and file descriptors into the API's process metrics (one per
    process: `PROCESS_FIGURES`). Called at each scrape, and every few seconds in every server process
    when there are several (a scrape reaches only one of them)."""

    def __init__(self) -> None:
        self._reader = ProcessCollector(namespace="ordo", registry=None)
        self._cpu_counted = 0.0
        self._lock = threading.Lock()

    def sample(self) -> None:
        values = {s.name: s.value for family in self._reader.collect() for s in family.samples}
        with self._lock:
            cpu = values.get("ordo_process_cpu_seconds_total", 0.0)
            if cpu > self._cpu_counted:
                API_PROCESS_CPU.inc(cpu - self._cpu_counted)
                self._cpu_counted = cpu
            for name, gauge in API_PROCESS_GAUGES.items():
                if name in values:
                    gauge.set(values[name])


PROCESS_FIGURES = ProcessFigures()

# -- system gauges: read from PostgreSQL once per scrape of the API --------------------------------


@dataclass(frozen=True)
class _GaugeSpec:
    name: str
    help: str
    labels: tuple[str, ...] = ()


# Name, help and labels of each system gauge; SystemGauges emits exactly these.
SYSTEM_GAUGES = {
    spec.name: spec
    for spec in (
        _GaugeSpec("ordo_database_up", "1 if the API could read the database at this scrape."),
        _GaugeSpec(
            "ordo_system_scrape_duration_seconds", "Time PostgreSQL took to compute the system gauges."
        ),
        _GaugeSpec(
            "ordo_queue_due",
            "Runs due now and waiting for a worker (queued or awaiting retry, run_at reached), by "
            "priority band: low 1-3, normal 4-6, high 7-9. The KEDA trigger counts the same runs.",
            ("priority_band",),
        ),
        _GaugeSpec(
            "ordo_queue_lag_seconds",
            "Age of the oldest due run (how long it has waited since it became due), by priority band; "
            "0 when none waits.",
            ("priority_band",),
        ),
        _GaugeSpec("ordo_queue_leased", "Runs leased by a worker (running now)."),
        _GaugeSpec("ordo_workers_alive", "Workers with a recent heartbeat."),
        _GaugeSpec("ordo_workers_alive_slots", "Run slots (concurrency) of the workers alive."),
        _GaugeSpec(
            "ordo_workers_lost",
            "Workers that stopped sending heartbeats in the last hour without a clean stop "
            "(killed, out of memory, host lost).",
        ),
        _GaugeSpec(
            "ordo_scheduler_leader_heartbeat_age_seconds",
            "Seconds since the scheduler leader's last tick; +Inf when no scheduler has ever led.",
        ),
        _GaugeSpec(
            "ordo_webhook_endpoints",
            "Webhook endpoints by state: active, paused, breaker_open (its circuit breaker is open).",
            ("state",),
        ),
    )
}


class SystemGauges(Collector):
    """Collects the system gauges by calling `read` (None when the database cannot be read)."""

    def __init__(self, read: Callable[[], System | None]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        r = self.read()
        yield _family("ordo_database_up", value=0 if r is None else 1)
        if r is None:
            return
        yield _family("ordo_system_scrape_duration_seconds", value=r.read_s)
        yield _family("ordo_queue_due", [((band,), n) for band, n in r.due.items()])
        yield _family("ordo_queue_lag_seconds", [((band,), s) for band, s in r.lag_s.items()])
        yield _family("ordo_queue_leased", value=r.leased)
        yield _family("ordo_workers_alive", value=r.workers_alive)
        yield _family("ordo_workers_alive_slots", value=r.worker_slots)
        yield _family("ordo_workers_lost", value=r.workers_lost)
        age = math.inf if r.leader_age_s is None else r.leader_age_s
        yield _family("ordo_scheduler_leader_heartbeat_age_seconds", value=age)
        yield _family("ordo_webhook_endpoints", [((state,), n) for state, n in r.webhook_endpoints.items()])


def _family(
    name: str, samples: Iterable[tuple[tuple[str, ...], float]] = (), *, value: float | None = None
) -> GaugeMetricFamily:
    spec = SYSTEM_GAUGES[name]
    if value is not None:
        return GaugeMetricFamily(name, spec.help, value=value)
    family = GaugeMetricFamily(name, spec.help, labels=spec.labels)
    for labels, sample in samples:
        family.add_metric(list(labels), sample)
    return family


# -- several API server processes -----------------------------------------------------------------


class _Only(Collector):
    """The multiprocess collector's output restricted to one process kind's metrics: every module-level
    metric above exists (at zero) in every process, but an API server reports only the API's."""

    def __init__(self, inner: Collector, names: frozenset[str]) -> None:
        self.inner = inner
        self.names = names

    def collect(self) -> Iterator[Metric]:
        for metric in self.inner.collect():
            if metric.name in self.names:
                yield metric


def multiprocess_registry(path: str, kind: CollectorRegistry) -> CollectorRegistry:
    """A registry that sums `kind`'s metrics over every process writing to `path` (prometheus-client's
    multiprocess mode; PROMETHEUS_MULTIPROC_DIR must have been set to `path` before those processes
    imported prometheus_client)."""
    names = frozenset(metric.name for metric in kind.collect())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Only(MultiProcessCollector(None, path=path), names))
    return registry
