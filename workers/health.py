"""Health of a worker's loops (the dispatcher that leases runs; heartbeat, rescuer, listener,
completer, deliverer; the event loop of asynchronous runs).

A loop that dies silently is the worst failure a queue has: leases stop being renewed and nothing
rescues them. Each loop therefore catches everything, logs it and keeps going, and tells its
`LoopHealth` how each pass went. A loop is healthy while its last pass succeeded and that pass is
recent. The heartbeat writes every loop's state to the worker's row (/health/ready reads it), and
Prometheus reads it through `ordo_worker_loop_healthy` and `ordo_worker_loop_failures_total`.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

from observability import metrics

__all__ = ["LOOPS", "LoopHealth", "WorkerHealth"]

LOOPS = ("dispatcher", "heartbeat", "rescuer", "listener", "completer", "deliverer", "event_loop")


class LoopHealth:
    """One loop's last good pass and its current error, updated by the loop, read by anyone."""

    def __init__(self, name: str, stale_after_s: float) -> None:
        self.name = name
        self.stale_after_s = stale_after_s
        self.last_ok = time.monotonic()
        self.error: str | None = None
        self.failures = 0
        self._failures_metric = metrics.WORKER_LOOP_FAILURES.labels(name)

    def ok(self) -> None:
        self.last_ok = time.monotonic()
        self.error = None

    def failed(self, exc: BaseException) -> None:
        text = str(exc).strip()
        self.error = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")[:500]
        self.failures += 1
        self._failures_metric.inc()

    def healthy(self, now: float | None = None) -> bool:
        age = (time.monotonic() if now is None else now) - self.last_ok
        return self.error is None and age <= self.stale_after_s

    def state(self, now: float) -> dict[str, Any]:
        age = round(now - self.last_ok, 3)
        out: dict[str, Any] = {"ok": self.healthy(now), "age_s": age}
        if self.error is not None:
            out["error"] = self.error
        elif not out["ok"]:
            out["error"] = f"no pass for {age:g} s (expected within {self.stale_after_s:g} s)"
        return out


class WorkerHealth:
    """The loops of one worker."""

    def __init__(self, *, heartbeat_s: float, rescue_interval_s: float) -> None:
        stale = {
            # it passes at least every poll interval; a claim's inline runs execute inside its cycle
            "dispatcher": 60.0,
            "heartbeat": 3 * heartbeat_s + 5,
            "rescuer": 3 * rescue_interval_s + 5,
            "listener": 15.0,  # it passes at least every half second while connected
            "completer": 15.0,  # it passes at least every tenth of a second
            "deliverer": 15.0,  # webhook deliveries: it passes at least every poll interval
            "event_loop": 15.0,  # it ticks every second unless a step holds it
        }
        self.loops = {name: LoopHealth(name, stale[name]) for name in LOOPS}
        with _LIVE_LOCK:
            _LIVE.add(self)

    def __getitem__(self, name: str) -> LoopHealth:
        return self.loops[name]

    def retire(self) -> None:
        """The worker stopped: its loops no longer count in the process-wide gauges."""
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def report(self) -> dict[str, dict[str, Any]]:
        """Every loop's state, for the worker row."""
        now = time.monotonic()
        return {name: loop.state(now) for name, loop in self.loops.items()}


# Process-wide gauges read every live worker (tests run several in one process): a loop counts as
# healthy only if it is healthy in all of them.
_LIVE: weakref.WeakSet[WorkerHealth] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def _all_healthy(name: str) -> float:
    with _LIVE_LOCK:
        workers = list(_LIVE)
    now = time.monotonic()
    return float(all(w.loops[name].healthy(now) for w in workers))


for _name in LOOPS:
    metrics.WORKER_LOOP_HEALTHY.labels(_name).set_function(lambda name=_name: _all_healthy(name))
