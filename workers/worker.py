"""The worker process's composition and life: it registers, starts its threads, works until asked to
stop, then shuts down in stages.

Threads, each with one job (each in its own module):
- dispatcher (the caller of `run`): leases due runs and starts them (dispatch.py, execute.py);
- event loop: awaits the runs whose steps wait on I/O, side by side (event_loop.py);
- listener: wakes the dispatcher on NOTIFY, empties the owners' scope cache on revocations
  (listener.py);
- completer: group-commits outcomes (completer.py, outcomes.py);
- heartbeat: renews held leases, hears cancel requests, reports the worker and its loops' health,
  and runs the rescuer (heartbeat.py, rescuer.py);
- deliverer: leases, sends and records webhook deliveries on its own sender threads, and rescues
  deliveries whose worker died (deliverer.py).

Shutdown (stop event set): stop leasing, hand back leases of runs not yet started, let running runs
finish for up to `shutdown_grace_s`, then expire the leases of those still running so any worker's
rescuer retries them at once, flush outcomes, and mark the worker stopped. Webhook requests in flight
drain in the same grace period.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from engine import ToolLimits, ToolRegistry
from observability import metrics
from store.db import Database
from store.errors import OrdoError
from store.settings import Settings
from store.sql import load_queries
from workers.completer import Completer, CompleterConfig
from workers.deliverer import Deliverer, DelivererConfig
from workers.dispatch import DispatchConfig, Dispatcher
from workers.event_loop import EventLoop
from workers.execute import Executor
from workers.health import WorkerHealth
from workers.heartbeat import Heartbeat, HeartbeatConfig
from workers.inputs import TaskDefinitions
from workers.leases import Held, Lease
from workers.listener import NOTIFY_CHANNEL, Listener
from workers.outcomes import Finished
from workers.owners import Owners
from workers.rescuer import Rescuer, RescuerConfig

__all__ = ["NOTIFY_CHANNEL", "Worker", "WorkerConfig"]

Q = load_queries("workers", "queries.sql")


@dataclass(frozen=True)
class WorkerConfig:
    # Defaults are the settings' (store.settings.Settings, ORDO_*), defined there once.
    concurrency: int = Settings.worker_concurrency
    lease_s: float = Settings.lease_s
    poll_s: float = Settings.poll_s
    shutdown_grace_s: float = Settings.shutdown_grace_s
    rescue_interval_s: float = Settings.rescue_interval_s
    max_keys_per_lease: int = 16
    completer: CompleterConfig = field(default_factory=CompleterConfig)
    deliveries: DelivererConfig = field(default_factory=DelivererConfig)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.lease_s < 3 or self.poll_s <= 0 or self.shutdown_grace_s < 0 or self.rescue_interval_s <= 0:
            raise ValueError(f"invalid worker config {self}")

    @property
    def heartbeat_s(self) -> float:
        # Renew well before expiry; also bounds how long a cancel request waits to be seen.
        return min(self.lease_s / 3, 5.0)


# Every worker of this process (tests run several in one): the busy-slots gauge is their sum, so it
# does not follow whichever worker was built last.
_LIVE: weakref.WeakSet[Worker] = weakref.WeakSet()
metrics.WORKER_BUSY_SLOTS.set_function(lambda: float(sum(w.held.executing for w in list(_LIVE))))


class Worker:
    def __init__(
        self,
        db: Database,
        registry: ToolRegistry,
        cfg: WorkerConfig,
        *,
        log: Any,
        limits: ToolLimits | None = None,
        worker_id: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.cfg = cfg
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.log = log.bind(worker_id=self.id)
        self.held = Held(cfg.concurrency)
        self.health = WorkerHealth(heartbeat_s=cfg.heartbeat_s, rescue_interval_s=cfg.rescue_interval_s)
        self.owners = Owners()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._aux_stop = threading.Event()
        self.completer = Completer(
            db, cfg.completer, self.log, self.id, self._on_flushed, self.health["completer"]
        )
        executor = Executor(
            db, limits or ToolLimits(), self.log, rng or random.Random(), self.held.is_canceled, self.owners
        )
        self.event_loop = EventLoop(self.health["event_loop"], self.log)
        self.dispatcher = Dispatcher(
            db,
            DispatchConfig(lease_s=cfg.lease_s, poll_s=cfg.poll_s, max_keys_per_lease=cfg.max_keys_per_lease),
            self.held,
            TaskDefinitions(registry),
            self.owners,
            executor,
            self.completer,
            self.event_loop,
            self.log,
            self.id,
            self._wake,
            self._stopping,
            self.health["dispatcher"],
        )
        self.heartbeat = Heartbeat(
            db,
            HeartbeatConfig(cfg.heartbeat_s, cfg.lease_s, cfg.rescue_interval_s),
            self.held,
            Rescuer(db, RescuerConfig(interval_s=cfg.rescue_interval_s), self.log, self.id),
            self.health,
            self.log,
            self.id,
            self._stopping,
        )
        self.listener = Listener(db, self._wake, self.owners.invalidate, self.health["listener"], self.log)
        # One grace period, poll interval and rescue cadence for the whole worker.
        deliveries = replace(
            cfg.deliveries,
            shutdown_grace_s=cfg.shutdown_grace_s,
            poll_s=cfg.poll_s,
            rescue_interval_s=cfg.rescue_interval_s,
        )
        # Webhooks go through the outbound policy, without redirects (only the registered URL gets a
        # signed request), over keep-alive connections shared by the senders.
        self._webhook_client = httpx.Client(
            transport=(limits or ToolLimits()).outbound.transport(
                limits=httpx.Limits(
                    max_connections=deliveries.concurrency, max_keepalive_connections=deliveries.concurrency
                )
            ),
            timeout=deliveries.timeout_s,
            follow_redirects=False,
            trust_env=False,
        )
        self.deliverer = Deliverer(
            db,
            deliveries,
            self._webhook_client,
            log=self.log,
            worker_id=self.id,
            health=self.health["deliverer"],
        )
        self._deliverer_thread: threading.Thread | None = None

    # -- life --------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Work until `stop` is set, then shut down in stages. Blocks."""
        with self.db.tx() as conn:
            conn.execute(
                Q["register_worker"],
                {
                    "id": self.id,
                    "hostname": socket.gethostname(),
                    "pid": os.getpid(),
                    "concurrency": self.cfg.concurrency,
                },
            )
        _LIVE.add(self)
        self.log.info("worker_started", concurrency=self.cfg.concurrency, lease_s=self.cfg.lease_s)
        threads = [
            threading.Thread(target=self._wake_on, args=(stop,), name="stop-watch", daemon=True),
            threading.Thread(
                target=self.completer.run, args=(self._aux_stop,), name="completer", daemon=True
            ),
            threading.Thread(
                target=self.heartbeat.run, args=(self._aux_stop,), name="heartbeat", daemon=True
            ),
            threading.Thread(target=self.listener.run, args=(self._aux_stop,), name="listener", daemon=True),
        ]
        for t in threads:
            t.start()
        self.event_loop.start()
        self._deliverer_thread = threading.Thread(
            target=self.deliverer.run, args=(stop,), name="deliverer", daemon=True
        )
        self._deliverer_thread.start()
        try:
            self.dispatcher.run(stop)
        finally:
            self._shutdown(threads)

    def _wake_on(self, stop: threading.Event) -> None:
        """An idle dispatcher sleeps on its wake event; a stop request must end that sleep."""
        stop.wait()
        self._wake.set()

    # -- shutdown in stages --------------------------------------------------------------------------

    def _shutdown(self, threads: list[threading.Thread]) -> None:
        self._stopping.set()
        self.log.info("worker_stopping", in_flight=self.held.executing, grace_s=self.cfg.shutdown_grace_s)
        self._try("worker_state_failed", lambda: self.heartbeat.report("stopping"))
        self._try("hand_back_failed", self._release_unstarted)
        deadline = time.monotonic() + self.cfg.shutdown_grace_s
        while self.held.executing > 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        overdue = self.held.unfinished()
        if overdue:
            self._try("expire_failed", lambda: self._expire(overdue))
        self.event_loop.stop()  # after the grace period: what still runs there was just given up
        if self._deliverer_thread is not None:  # it drains its requests in the same grace period
            self._deliverer_thread.join(timeout=max(0.0, deadline - time.monotonic()) + 10)
        self._webhook_client.close()
        self._aux_stop.set()
        self.completer.wake()
        for t in threads:
            t.join(timeout=10)
        self.completer.close()
        self.dispatcher.close()
        self._try("worker_state_failed", self._mark_stopped)
        _LIVE.discard(self)
        self.health.retire()
        self.log.info("worker_stopped", abandoned=len(overdue))

    def _try(self, event: str, step: Any) -> None:
        """A shutdown stage that needs the database: if it is away, say so and go on to the next."""
        try:
            step()
        except OrdoError as e:
            self.log.warning(event, error=e.message)

    def _release_unstarted(self) -> None:
        unstarted = [lease for lease in self.held.take_unstarted() if lease.token is not None]
        if not unstarted:
            return
        try:
            with self.db.tx() as conn:
                released = (
                    conn.execute(
                        Q["release_unstarted"],
                        {
                            "ids": [lease.id for lease in unstarted],
                            "tokens": [lease.token for lease in unstarted],
                        },
                    )
                    .scalars()
                    .all()
                )
        finally:
            self.held.forget(lease.id for lease in unstarted)
        self.log.info("leases_handed_back", count=len(released))

    def _expire(self, leases: list[Lease]) -> None:
        """Runs still going after the grace period: end their leases now so a rescuer retries them."""
        with self.db.tx() as conn:
            conn.execute(
                Q["expire_leases"],
                {"ids": [lease.id for lease in leases], "tokens": [lease.token for lease in leases]},
            )
        self.log.warning("runs_abandoned_at_shutdown", run_ids=[lease.id for lease in leases])
        self.held.forget(lease.id for lease in leases)

    def _mark_stopped(self) -> None:
        with self.db.tx() as conn:
            conn.execute(Q["worker_stopped"], {"id": self.id})

    # -- completer callback --------------------------------------------------------------------------

    def _on_flushed(self, batch: list[Finished], recorded: set[int], lost: bool) -> None:
        self.held.forget(f.id for f in batch)
        for finished in batch:
            if finished.id in recorded:
                continue
            event = "completion_lost" if lost else "completion_fenced"
            task_id = None if finished.task_id is None else str(finished.task_id)
            self.log.warning(event, run_id=finished.id, task_id=task_id, state=finished.state)
        self._wake.set()
