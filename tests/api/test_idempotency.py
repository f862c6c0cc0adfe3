"""Idempotency-Key on POST /tasks, POST /tasks/{id}/run_now (POST /events: see test_events.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from store.db import Database
from tests.api.conftest import echo_task
from tests.helpers import scalar


def test_a_retried_create_returns_the_first_response_and_creates_nothing(
    client: httpx.Client, alice: dict[str, str], db: Database
) -> None:
    headers = {**alice, "Idempotency-Key": "create-report-1"}

    first = client.post("/tasks", json=echo_task(), headers=headers)
    retry = client.post("/tasks", json=echo_task(), headers=headers)

    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    assert retry.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert retry.headers["location"] == first.headers["location"]
    assert scalar(db, "SELECT count(*) FROM task WHERE title = 'say hello'") == 1
    assert scalar(db, "SELECT count(*) FROM audit_log WHERE action = 'task.create'") == 1


def test_the_same_key_with_a_different_body_is_refused(
    client: httpx.Client, alice: dict[str, str], db: Database
) -> None:
    headers = {**alice, "Idempotency-Key": "k1"}
    client.post("/tasks", json=echo_task(title="first"), headers=headers)

    response = client.post("/tasks", json=echo_task(title="second"), headers=headers)

    assert response.status_code == 422
    assert response.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert scalar(db, "SELECT count(*) FROM task") == 1


def test_the_same_key_on_another_route_is_refused(client: httpx.Client, alice: dict[str, str]) -> None:
    task = client.post("/tasks", json=echo_task(), headers={**alice, "Idempotency-Key": "k2"}).json()

    response = client.post(f"/tasks/{task['id']}/run_now", headers={**alice, "Idempotency-Key": "k2"})

    assert response.status_code == 422
    assert response.json()["code"] == "IDEMPOTENCY_KEY_REUSED"


def test_keys_belong_to_one_agent(client: httpx.Client, alice: dict[str, str], bob: dict[str, str]) -> None:
    """Two agents using the same key string do not see each other's responses."""
    a = client.post("/tasks", json=echo_task(), headers={**alice, "Idempotency-Key": "shared"})
    b = client.post("/tasks", json=echo_task(), headers={**bob, "Idempotency-Key": "shared"})

    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"] and b.json()["agent_id"] != a.json()["agent_id"]


def test_concurrent_duplicates_write_once(client: httpx.Client, alice: dict[str, str], db: Database) -> None:
    """Eight identical requests racing with one key: one task, and all eight get its response."""
    headers = {**alice, "Idempotency-Key": "race"}

    with ThreadPoolExecutor(8) as pool:
        responses = list(
            pool.map(lambda _: client.post("/tasks", json=echo_task(), headers=headers), range(8))
        )

    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert scalar(db, "SELECT count(*) FROM task") == 1


def test_a_refused_request_leaves_the_key_free(
    client: httpx.Client, alice: dict[str, str], db: Database
) -> None:
    """A request that failed wrote nothing, its key included: the corrected retry goes through."""
    headers = {**alice, "Idempotency-Key": "fix-and-retry"}

    refused = client.post("/tasks", json=echo_task(priority=99), headers=headers)
    fixed = client.post("/tasks", json=echo_task(priority=9), headers=headers)

    assert refused.status_code == 422 and fixed.status_code == 201
    assert scalar(db, "SELECT count(*) FROM task") == 1


def test_a_retried_run_now_queues_one_run(client: httpx.Client, alice: dict[str, str], db: Database) -> None:
    task = client.post("/tasks", json=echo_task(), headers=alice).json()
    headers = {**alice, "Idempotency-Key": "run-once"}

    first = client.post(f"/tasks/{task['id']}/run_now", json={"params": {"who": "x"}}, headers=headers)
    retry = client.post(f"/tasks/{task['id']}/run_now", json={"params": {"who": "x"}}, headers=headers)

    assert first.status_code == retry.status_code == 202
    assert retry.json()["id"] == first.json()["id"]
    assert retry.headers["location"] == f"/runs/{first.json()['id']}"
    assert scalar(db, "SELECT count(*) FROM due_work") == 1


@pytest.mark.parametrize(
    "key", ["", "x" * 256, "with space", "ключ".encode()], ids=["empty", "long", "space", "utf8"]
)
def test_unusable_keys_are_refused(client: httpx.Client, alice: dict[str, str], key: str | bytes) -> None:
    response = client.post("/tasks", json=echo_task(), headers={**alice, "Idempotency-Key": key})

    assert response.status_code == 422, response.text
    assert response.json()["details"]["in"] == "header"
