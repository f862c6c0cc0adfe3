"""Request ids: every response carries X-Request-ID (the caller's, when sensible, or a new one), and
every line logged while serving the request carries it; GET /status is for admins."""

from __future__ import annotations

import re

import httpx
import pytest
import structlog
from structlog.testing import capture_logs

from api import create_app
from store.db import Database
from store.settings import Settings
from tests.api.conftest import serving
from tests.helpers import REGISTRY


@pytest.fixture
def logging_client(settings: Settings, db: Database):
    """The real app plus two routes that log (one crashes), served by uvicorn."""
    app = create_app(settings, db, registry=REGISTRY)
    log = structlog.get_logger("test")

    async def noisy() -> dict[str, bool]:
        log.info("handling", detail="something")
        return {"ok": True}

    def crash() -> None:
        log.info("about_to_crash")
        raise RuntimeError("boom")

    app.add_api_route("/_test/noisy", noisy)
    app.add_api_route("/_test/crash", crash)
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def test_a_response_carries_a_new_request_id(client: httpx.Client):
    first, second = client.get("/health"), client.get("/tools")
    ids = [first.headers["X-Request-ID"], second.headers["X-Request-ID"]]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids) and ids[0] != ids[1]
    assert second.status_code == 401  # errors carry it too


def test_a_sensible_incoming_request_id_is_kept(client: httpx.Client):
    response = client.get("/health/ready", headers={"X-Request-ID": "edge-7f3a:2026/11.27"})
    assert response.headers["X-Request-ID"] == "edge-7f3a:2026/11.27"


@pytest.mark.parametrize("incoming", ["a" * 129, "has space", "semi;colon", "", "über"])
def test_an_unusable_incoming_request_id_is_replaced(client: httpx.Client, incoming: str):
    response = client.get("/health", headers={"X-Request-ID": incoming.encode()})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


def test_every_line_of_a_request_carries_its_id(logging_client: httpx.Client):
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        response = logging_client.get("/_test/noisy", headers={"X-Request-ID": "req-1"})
        other = logging_client.get("/_test/noisy")
    assert response.status_code == 200 and other.status_code == 200
    handled = [e for e in logs if e["event"] == "handling"]
    assert [e["request_id"] for e in handled] == ["req-1", other.headers["X-Request-ID"]]


def test_a_crashing_request_logs_and_returns_its_id(logging_client: httpx.Client):
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        response = logging_client.get("/_test/crash", headers={"X-Request-ID": "req-crash"})
    assert response.status_code == 500 and response.json()["code"] == "INTERNAL_ERROR"
    assert response.headers["X-Request-ID"] == "req-crash"
    crashed = [e for e in logs if e["event"] in ("about_to_crash", "request_crashed")]
    assert [e["event"] for e in crashed] == ["about_to_crash", "request_crashed"]
    assert all(e["request_id"] == "req-crash" for e in crashed)


def test_status_is_for_admins(client: httpx.Client, admin: dict[str, str], alice: dict[str, str]):
    assert client.get("/status").status_code == 401
    refused = client.get("/status", headers=alice)
    assert refused.status_code == 403 and refused.json()["details"]["required_scope"] == "admin"
    report = client.get("/status", headers=admin)
    assert report.status_code == 200
    assert set(report.json()) == {"at", "queue", "runs_last_hour", "workers", "scheduler", "webhooks"}
