"""A running Ordo for monitoring tests: `ordo api` (two server processes), `ordo scheduler` and
`ordo worker` as real processes, each with its own metrics port, and a workload that provokes what
the dashboard shows: successes, a failing run that retries and then dies, a 5xx, a busy worker,
webhook deliveries.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.acceptance.conftest import Ordo
from tests.helpers import HttpTarget, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveOrdo:
    ordo: Ordo
    api: str
    worker_metrics: str
    scheduler_metrics: str
    token: str
    processes: dict[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def metrics(self, base: str) -> str:
        response = httpx.get(f"{base}/metrics", timeout=10)
        response.raise_for_status()
        return response.text

    def targets(self) -> dict[str, str]:
        """Each process kind's /metrics base URL."""
        return {"api": self.api, "worker": self.worker_metrics, "scheduler": self.scheduler_metrics}

    def add_task(self, doc: dict[str, Any]) -> str:
        response = httpx.post(f"{self.api}/tasks", json=doc, headers=self.headers, timeout=10)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def run_now(self, task_id: str) -> int:
        response = httpx.post(f"{self.api}/tasks/{task_id}/run_now", headers=self.headers, timeout=10)
        assert response.status_code == 202, response.text
        body = response.json()
        return body["run_id"] if "run_id" in body else body["id"]

    def run(self, run_id: int) -> dict[str, Any]:
        response = httpx.get(f"{self.api}/runs/{run_id}", headers=self.headers, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def add_webhook(self, url: str, events: list[str], secret: str | None = None) -> dict[str, Any]:
        """Register an endpoint of the caller through the API; the response carries its secret."""
        body = {"url": url, "events": events, **({"secret": secret} if secret else {})}
        response = httpx.post(f"{self.api}/webhooks", json=body, headers=self.headers, timeout=10)
        assert response.status_code == 201, response.text
        return response.json()

    def publish(self, topic: str, payload: Any) -> None:
        response = httpx.post(
            f"{self.api}/events", json={"topic": topic, "payload": payload}, headers=self.headers, timeout=10
        )
        assert response.status_code == 202, response.text

    def wait_run(self, run_id: int, states: tuple[str, ...], timeout: float = 60) -> dict[str, Any]:
        return wait_for(
            lambda: (r := self.run(run_id))["state"] in states and r,
            timeout=timeout,
            interval=0.1,
            what=f"run {run_id} to reach {states}",
        )


def echo_task(title: str = "echo") -> dict[str, Any]:
    return {
        "title": title,
        "schedule_kind": "manual",
        "payload": {"pipeline": [{"id": "say", "uses": "echo.message", "with": {"message": "hi"}}]},
    }


def refused_call_task(port: int) -> dict[str, Any]:
    """A run that fails (connection refused, retryable), is retried once, then dies."""
    return {
        "title": "calls a closed port",
        "schedule_kind": "manual",
        "max_retries": 1,
        "backoff": {"base_s": 0.1, "cap_s": 0.1, "jitter": 0},
        "payload": {
            "pipeline": [
                {
                    "id": "call",
                    "uses": "http.request",
                    "with": {"url": f"http://127.0.0.1:{port}/", "timeout_s": 2},
                }
            ]
        },
    }


def sleepy_task(url: str) -> dict[str, Any]:
    """A run that keeps a worker slot busy while a slow local server answers."""
    return {
        "title": "waits on a slow server",
        "schedule_kind": "manual",
        "payload": {
            "pipeline": [{"id": "wait", "uses": "http.request", "with": {"url": url, "timeout_s": 30}}]
        },
    }


@contextmanager
def slow_server(delay_s: float = 3.0) -> Iterator[str]:
    with HttpTarget(delay_s=delay_s) as target:
        yield target.url


def start(ordo: Ordo, *, api_workers: int = 2) -> LiveOrdo:
    """Start the three process kinds; return once the API answers (before any worker is ready, so a
    caller can observe readiness failing)."""
    api_port, worker_port, scheduler_port = free_port(), free_port(), free_port()
    ordo.env.update(ORDO_OUTBOUND_ALLOW="127.0.0.1", ORDO_LOG_LEVEL="info")
    token = json.loads(ordo.run("token", "create", "--agent", "ops", "--admin", "--json").stdout)["token"]
    api = ordo.spawn("api", "--port", str(api_port), "--workers", str(api_workers), name="api")
    live = LiveOrdo(
        ordo=ordo,
        api=f"http://127.0.0.1:{api_port}",
        worker_metrics=f"http://127.0.0.1:{worker_port}",
        scheduler_metrics=f"http://127.0.0.1:{scheduler_port}",
        token=token,
        processes={"api": api},
    )
    wait_for(lambda: _answers(f"{live.api}/health"), timeout=60, interval=0.1, what="the API")
    return live


def start_rest(live: LiveOrdo, *, concurrency: int = 4) -> None:
    """Start the scheduler and a worker, each with its metrics port; wait until the API is ready."""
    live.processes["scheduler"] = live.ordo.spawn(
        "scheduler", "--metrics-port", live.scheduler_metrics.rsplit(":", 1)[1], name="scheduler"
    )
    live.processes["worker"] = live.ordo.spawn(
        "worker",
        "--concurrency",
        str(concurrency),
        "--metrics-port",
        live.worker_metrics.rsplit(":", 1)[1],
        name="worker",
    )
    wait_for(
        lambda: _answers(f"{live.api}/health/ready"), timeout=60, interval=0.2, what="the API to be ready"
    )
    for base in (live.worker_metrics, live.scheduler_metrics):
        wait_for(lambda b=base: _answers(f"{b}/metrics"), timeout=30, interval=0.1, what=f"{base}/metrics")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
