"""Every Prometheus metric Ordo exports, defined once. Processes update them; /metrics serves them."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "API_REQUESTS",
    "API_REQUEST_SECONDS",
    "COMPLETIONS_FENCED",
    "COMPLETIONS_LOST",
    "LEASES_RESCUED",
    "QUEUE_DEPTH",
    "RUNS_FINISHED",
    "RUNS_LEASED",
    "RUNS_UNRECORDABLE",
    "RUN_SECONDS",
    "SCHEDULER_IS_LEADER",
    "SCHEDULER_OCCURRENCES",
    "SCHEDULER_TICK_SECONDS",
    "WORKER_BUSY_SLOTS",
    "WORKER_LOOP_FAILURES",
    "WORKER_LOOP_HEALTHY",
]

RUNS_LEASED = Counter("ordo_runs_leased_total", "Runs leased by this worker.")
RUNS_FINISHED = Counter(
    "ordo_runs_finished_total", "Attempts finished, by outcome.", ["state"]
)  # succeeded, failed, dead, canceled, skipped
RUN_SECONDS = Histogram(
    "ordo_run_duration_seconds",
    "Wall time of one attempt.",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800),
)
COMPLETIONS_FENCED = Counter(
    "ordo_completions_fenced_total", "Results dropped because the lease had passed to another worker."
)
COMPLETIONS_LOST = Counter(
    "ordo_completions_lost_total",
    "Results a worker could not write before it stopped (the database was away); their leases expire "
    "and the runs are retried.",
)
RUNS_UNRECORDABLE = Counter(
    "ordo_runs_unrecordable_total",
    "Attempts whose record could not be stored as it was; they ended dead with the reason.",
    ["code"],
)  # OUTPUT_TOO_LARGE, UNRECORDABLE_OUTPUT
LEASES_RESCUED = Counter("ordo_leases_rescued_total", "Expired leases returned to the queue or marked dead.")
WORKER_BUSY_SLOTS = Gauge("ordo_worker_busy_slots", "Runs the workers of this process are executing now.")
WORKER_LOOP_HEALTHY = Gauge(
    "ordo_worker_loop_healthy",
    "1 while this background loop (heartbeat, rescuer, listener, completer) passes in every worker of "
    "this process; 0 while it fails or stalls.",
    ["loop"],
)
WORKER_LOOP_FAILURES = Counter(
    "ordo_worker_loop_failures_total",
    "Failed passes of a worker background loop; each is logged and the loop goes on.",
    ["loop"],
)
QUEUE_DEPTH = Gauge(
    "ordo_queue_depth", "Runs waiting, by state (queued, failed = awaiting retry).", ["state"]
)
SCHEDULER_TICK_SECONDS = Histogram(
    "ordo_scheduler_tick_seconds",
    "Duration of one scheduler tick.",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10),
)
SCHEDULER_OCCURRENCES = Counter(
    "ordo_scheduler_occurrences_total", "Occurrences written to due_work, by outcome.", ["outcome"]
)  # queued, skipped (misfire)
SCHEDULER_IS_LEADER = Gauge("ordo_scheduler_is_leader", "1 while this scheduler holds the leader lock.")
API_REQUESTS = Counter(
    "ordo_api_requests_total", "API requests, by route and status.", ["method", "route", "status"]
)
API_REQUEST_SECONDS = Histogram(
    "ordo_api_request_seconds",
    "API request latency, by route.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
