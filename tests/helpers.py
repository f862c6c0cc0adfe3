"""Small helpers shared by database and acceptance tests."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import structlog
from sqlalchemy import text

from engine import ToolLimits, ToolRegistry
from engine.outbound import OutboundPolicy
from scheduler import task_document
from store import tasks as store_tasks
from store.db import Database
from workers.completer import CompleterConfig
from workers.deliverer import Deliverer, DelivererConfig
from workers.delivery_policy import DeliveryPolicy
from workers.worker import Worker, WorkerConfig

REGISTRY = ToolRegistry.load()
# Test servers listen on 127.0.0.1, which the outbound policy refuses unless allowed (as a deployment
# would with ORDO_OUTBOUND_ALLOW).
LOCAL_LIMITS = ToolLimits(outbound=OutboundPolicy.parse("127.0.0.1"))
# Webhook retries in tens of milliseconds, and a breaker that stays out of the way unless a test sets one.
FAST_DELIVERY = DeliveryPolicy(retry_delays_s=(0.05, 0.05, 0.05), breaker_failures=50, breaker_cooldown_s=0.5)


def echo_payload(message: str = "hello ${params.who}", **params: Any) -> dict[str, Any]:
    return {
        "params": {"who": "world", **params},
        "pipeline": [{"id": "say", "uses": "echo.message", "with": {"message": message}}],
    }


def add_task(db: Database, now: datetime | None = None, **fields: Any) -> dict[str, Any]:
    doc = {"title": "t", "schedule_kind": "manual", "payload": echo_payload(), **fields}
    values = task_document.validate(doc, REGISTRY, now=now or datetime.now(UTC))
    with db.tx() as conn:
        return store_tasks.create(conn, values, store_tasks.LOCAL_AGENT_ID)


def scalar(db: Database, sql: str, **params: Any) -> Any:
    with db.tx() as conn:
        return conn.execute(text(sql), params).scalar()


def rows(db: Database, sql: str, **params: Any) -> list[Any]:
    with db.tx() as conn:
        return list(conn.execute(text(sql), params).mappings().all())


def lease_every_queued(db: Database, worker_id: str = "w") -> list[Any]:
    """Mark every queued run leased by `worker_id` for a minute, as a worker that took them would;
    (run id, lease token) pairs."""
    with db.tx() as conn:
        return list(
            conn.execute(
                text(
                    "UPDATE due_work SET state = 'running', attempt = 1, lease_token = gen_random_uuid(), "
                    "lease_until = now() + interval '1 minute', worker_id = :worker, started_at = now() "
                    "RETURNING id, lease_token"
                ),
                {"worker": worker_id},
            ).all()
        )


def wait_for(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@contextmanager
def running_worker(
    db: Database, registry: ToolRegistry = REGISTRY, limits: ToolLimits = LOCAL_LIMITS, **cfg: Any
) -> Iterator[Worker]:
    """A worker in a thread of this process; stopped (gracefully) when the block ends."""
    settings = {
        "concurrency": 4,
        "lease_s": 5,
        "poll_s": 0.2,
        "shutdown_grace_s": 5,
        "rescue_interval_s": 0.5,
        "completer": CompleterConfig(max_delay_s=0.001),
        "deliveries": DelivererConfig(policy=FAST_DELIVERY, timeout_s=5),
    }
    settings.update(cfg)
    worker = Worker(
        db, registry, WorkerConfig(**settings), log=structlog.get_logger("test-worker"), limits=limits
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "worker did not stop"


@contextmanager
def delivering(
    db: Database,
    policy: DeliveryPolicy = FAST_DELIVERY,
    outbound: OutboundPolicy = LOCAL_LIMITS.outbound,
    **cfg: Any,
) -> Iterator[Deliverer]:
    """A deliverer alone (no run leasing) in a thread of this process, sending through `outbound` (by
    default the policy that opens 127.0.0.1); stopped when the block ends."""
    settings = {
        "concurrency": 4,
        "timeout_s": 5,
        "poll_s": 0.2,
        "rescue_interval_s": 0.2,
        "shutdown_grace_s": 5,
        **cfg,
    }
    client = httpx.Client(
        transport=outbound.transport(), timeout=settings["timeout_s"], follow_redirects=False
    )
    deliverer = Deliverer(
        db,
        DelivererConfig(policy=policy, **settings),
        client,
        log=structlog.get_logger("test"),
        worker_id="test-deliverer",
    )
    stop = threading.Event()
    thread = threading.Thread(target=deliverer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield deliverer
    finally:
        stop.set()
        thread.join(30)
        client.close()
        assert not thread.is_alive(), "deliverer did not stop"


def plan_row(
    job: str, operation: str, machine: str, start: Any, end: Any, operator: str | None = None
) -> dict[str, Any]:
    """One assignment of a solver.solve plan."""
    return {
        "job": job,
        "operation": operation,
        "machine": machine,
        "operator": operator,
        "start": start,
        "end": end,
    }


REPO_ROOT = Path(__file__).resolve().parents[1]


def run_ordo(
    *args: str, env: dict[str, str], input: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`ordo ARGS` as a subprocess of this interpreter, from the repository root; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        input=input,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=timeout,
    )


class HttpTarget:
    """A system that tasks call, on 127.0.0.1: answers every GET with `{"ok": true}` after `delay_s`
    (which a test may change while it runs), and counts the requests: all of them (`hits`, their
    paths), those it holds at once (`in_flight`, `most_in_flight`) and those it answered."""

    def __init__(self, delay_s: float = 0.0, path: str = "/work") -> None:
        self.delay_s = delay_s
        self.paths: list[str] = []
        self.in_flight = self.most_in_flight = self.answered = 0
        lock = threading.Lock()
        target = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the systems tasks call answer

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                with lock:
                    target.paths.append(self.path)
                    target.in_flight += 1
                    target.most_in_flight = max(target.most_in_flight, target.in_flight)
                time.sleep(target.delay_s)
                body = b'{"ok": true}'
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the caller gave up or was killed
                    self.close_connection = True
                finally:
                    with lock:
                        target.in_flight -= 1
                        target.answered += 1

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128  # many runs connect at once: the default backlog of 5 stalls them

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    @property
    def hits(self) -> int:
        return len(self.paths)

    def __enter__(self) -> HttpTarget:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
