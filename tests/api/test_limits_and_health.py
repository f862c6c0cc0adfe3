"""The body cap (413), the per-agent rate limit (429), liveness, readiness and /metrics."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from api import create_app
from scheduler.service import SchedulerConfig, SchedulerService
from store.db import Database
from store.settings import Settings
from tests.api.conftest import TokenFactory, bearer, echo_task, serving
from tests.helpers import REGISTRY, running_worker, wait_for

CAP = 16 * 1024


@pytest.fixture
def capped_url(settings: Settings, db: Database) -> Iterator[str]:
    with serving(
        create_app(dataclasses.replace(settings, api_max_body_bytes=CAP), db, registry=REGISTRY)
    ) as url:
        yield url


def _raw_exchange(base_url: str, head: bytes, body_chunks: list[bytes] = ()) -> tuple[bytes, float]:
    """Send raw bytes and read the whole response (the server closes the connection); return it and
    how long the response took after the headers were sent."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head)
        started = time.monotonic()
        for chunk in body_chunks:
            sock.sendall(chunk)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received, time.monotonic() - started


def test_a_declared_oversized_body_is_refused_before_it_is_sent(
    capped_url: str, make_token: TokenFactory
) -> None:
    """Content-Length above the cap: 413 at once, without waiting for a single body byte, and the
    connection is closed so the body is never read."""
    token = make_token("una", "tasks:write")
    head = (
        f"POST /tasks HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {100 * CAP}\r\n\r\n"
    ).encode()

    response, elapsed = _raw_exchange(capped_url, head)

    status_line, _, rest = response.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413")
    assert b"connection: close" in rest.lower()
    assert b'"code":"BODY_TOO_LARGE"' in rest.replace(b" ", b"")
    assert elapsed < 5


def test_a_chunked_body_growing_past_the_cap_is_refused(capped_url: str, make_token: TokenFactory) -> None:
    """Without Content-Length, the body is counted as it streams and refused once it passes the cap."""
    token = make_token("una", "events:publish")
    head = (
        f"POST /events HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    piece = b"x" * 4096
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(CAP // len(piece) + 1)]

    response, _ = _raw_exchange(capped_url, head, chunks)

    assert response.startswith(b"HTTP/1.1 413")
    assert b"BODY_TOO_LARGE" in response


def test_a_body_under_the_cap_is_accepted(capped_url: str, make_token: TokenFactory) -> None:
    headers = bearer(make_token("una", "events:publish"))

    with httpx.Client(base_url=capped_url) as client:
        response = client.post(
            "/events", json={"topic": "big", "payload": {"blob": "x" * (CAP - 200)}}, headers=headers
        )

    assert response.status_code == 202, response.text


def test_an_agent_over_its_rate_limit_gets_429_with_retry_after(
    settings: Settings, db: Database, make_token: TokenFactory
) -> None:
    """The sixth request in a minute with a limit of five is 429 with Retry-After; other agents go on."""
    limited = dataclasses.replace(settings, api_rate_limit_per_min=5)
    busy, other = bearer(make_token("vera", "tasks:read")), bearer(make_token("walt", "tasks:read"))

    with serving(create_app(limited, db, registry=REGISTRY)) as url, httpx.Client(base_url=url) as client:
        statuses = [client.get("/tasks", headers=busy).status_code for _ in range(5)]
        refused = client.get("/tasks", headers=busy)
        unaffected = client.get("/tasks", headers=other)

    assert statuses == [200] * 5
    assert refused.status_code == 429
    assert refused.json()["code"] == "RATE_LIMITED"
    assert 1 <= int(refused.headers["retry-after"]) <= 12
    assert unaffected.status_code == 200


def test_health_answers_without_the_database(client: httpx.Client) -> None:
    response = client.get("/health")

    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_ready_is_503_naming_the_missing_scheduler_and_worker(client: httpx.Client) -> None:
    response = client.get("/health/ready")

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"]["ok"] and checks["migrations"]["ok"]
    assert not checks["scheduler"]["ok"] and not checks["workers"]["ok"]
    assert "never" in checks["workers"]["detail"]


def test_ready_is_200_with_a_leading_scheduler_and_a_live_worker(client: httpx.Client, db: Database) -> None:
    stop = threading.Event()
    scheduler = SchedulerService(
        db, SchedulerConfig(tick_s=0.2), structlog.get_logger("test"), "test-scheduler"
    )
    thread = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
    thread.start()
    try:
        with running_worker(db):
            response = wait_for(
                lambda: (r := client.get("/health/ready")).status_code == 200 and r, what="readiness"
            )
    finally:
        stop.set()
        thread.join(10)

    body = response.json()
    assert body["status"] == "ready"
    assert all(c["ok"] for c in body["checks"].values())
    assert "test-scheduler" in body["checks"]["scheduler"]["detail"]


def test_metrics_expose_requests_and_the_queue(client: httpx.Client, alice: dict[str, str]) -> None:
    task = client.post("/tasks", json=echo_task(), headers=alice).json()
    client.post(f"/tasks/{task['id']}/run_now", headers=alice)
    client.post(f"/tasks/{task['id']}/run_now", headers=alice)

    response = client.get("/metrics")

    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'ordo_api_requests_total{method="POST",route="/tasks/{task_id}/run_now",status="202"}' in text
    assert "ordo_api_request_duration_seconds_bucket{" in text
    assert 'ordo_queue_due{priority_band="normal"} 2.0' in text
    assert "ordo_workers_alive 0.0" in text and "ordo_database_up 1.0" in text
    # The API process's own memory and CPU, named as workers and schedulers name theirs.
    figures = {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples}
    assert figures["ordo_process_resident_memory_bytes"] > 10_000_000
    assert figures["ordo_process_cpu_seconds_total"] > 0
    assert figures["ordo_process_open_fds"] >= 3 and figures["ordo_process_start_time_seconds"] > 1.7e9


def test_ready_is_503_naming_a_workers_failing_background_loop(client: httpx.Client, db: Database) -> None:
    stop = threading.Event()
    scheduler = SchedulerService(
        db, SchedulerConfig(tick_s=0.2), structlog.get_logger("test"), "test-scheduler"
    )
    thread = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
    thread.start()
    try:
        with running_worker(db, lease_s=3, rescue_interval_s=0.3) as worker:
            wait_for(lambda: client.get("/health/ready").status_code == 200, what="readiness")

            def broken(*_args: object) -> int:
                raise RuntimeError("rescue is broken")

            worker.heartbeat.rescuer.run_once = broken  # type: ignore[method-assign]
            response = wait_for(
                lambda: (r := client.get("/health/ready")).status_code == 503 and r, what="the failing loop"
            )
    finally:
        stop.set()
        thread.join(10)

    workers = response.json()["checks"]["workers"]
    assert not workers["ok"]
    assert "rescuer" in workers["detail"] and "rescue is broken" in workers["detail"]


def test_503_while_the_database_is_away_does_not_show_where_it_listens(tmp_path) -> None:
    socket_dir = tmp_path / "no-server-here"
    url = f"postgresql://postgres@/ordo?host={socket_dir}"
    db = Database(url)
    try:
        with serving(create_app(Settings(database_url=url), db, registry=REGISTRY)) as base:
            ready = httpx.get(f"{base}/health/ready", timeout=30)
            tasks = httpx.get(
                f"{base}/tasks", headers=bearer("ordo_" + "a" * 12 + "_" + "b" * 43), timeout=30
            )
    finally:
        db.dispose()
    assert ready.status_code == 503 and tasks.status_code == 503
    assert tasks.json()["code"] == "STORE_ERROR"
    for body in (ready.text, tasks.text):
        assert str(socket_dir) not in body and ".s.PGSQL" not in body
    assert "its socket" in ready.json()["checks"]["database"]["detail"]
