"""Run routes: list with filters and a stable cursor, show with steps, cancel (waiting and running)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from sqlalchemy import text

from store import runs as store_runs
from store.db import Database
from tests.api.conftest import TokenFactory, bearer, echo_task
from tests.helpers import running_worker, wait_for


def _task(client: httpx.Client, headers: dict[str, str], **fields: object) -> dict:
    response = client.post("/tasks", json=echo_task(**fields), headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def _run(client: httpx.Client, headers: dict[str, str], run_id: int) -> dict:
    response = client.get(f"/runs/{run_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_run_now_executes_and_the_run_shows_every_step(
    client: httpx.Client, alice: dict[str, str], db: Database
) -> None:
    """A run queued by run_now is picked up by a worker; GET /runs/{id} shows its steps and outputs."""
    task = _task(client, alice)
    with running_worker(db):
        run = client.post(
            f"/tasks/{task['id']}/run_now", json={"params": {"who": "Ana"}}, headers=alice
        ).json()
        done = wait_for(
            lambda: (r := _run(client, alice, run["id"]))["state"] == "succeeded" and r,
            what="the run to succeed",
        )

    assert done["attempt"] == 1 and done["started_at"] and done["finished_at"]
    (step,) = done["steps"]
    assert step["id"] == "say" and step["uses"] == "echo.message" and step["state"] == "ok"
    assert step["output"] == {"message": "hello Ana"} and step["duration_ms"] >= 0
    assert done["attempts"][0]["steps"] == done["steps"]


def test_list_filters_by_task_state_and_time(client: httpx.Client, alice: dict[str, str]) -> None:
    """GET /runs filters by task, by state (repeatable) and by creation time."""
    a, b = _task(client, alice, title="a"), _task(client, alice, title="b")
    ra = client.post(f"/tasks/{a['id']}/run_now", headers=alice).json()
    rb = client.post(f"/tasks/{b['id']}/run_now", headers=alice).json()
    client.post(f"/runs/{rb['id']}/cancel", headers=alice)

    def ids(**params: object) -> list[int]:
        response = client.get("/runs", params=params, headers=alice)
        assert response.status_code == 200, response.text
        return [r["id"] for r in response.json()["items"]]

    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert ids() == [rb["id"], ra["id"]]
    assert ids(task_id=a["id"]) == [ra["id"]]
    assert ids(state="canceled") == [rb["id"]]
    assert ids(state=["queued", "canceled"]) == [rb["id"], ra["id"]]
    assert ids(since=future) == [] and ids(until=future) == [rb["id"], ra["id"]]


def test_paging_neither_skips_nor_repeats_runs_while_runs_are_added_and_finish(
    client: httpx.Client, alice: dict[str, str], db: Database
) -> None:
    """Pages of GET /runs, read while other runs are inserted and a worker finishes runs (moving them from
    the queue to history), hold every run that existed before the first page exactly once, newest first."""
    task = _task(client, alice)
    with db.tx() as conn:
        before = store_runs.enqueue(conn, task["id"], n=60)
    stop = threading.Event()
    added: list[int] = []

    def insert() -> None:
        while not stop.wait(0.003):
            with db.tx() as conn:
                added.extend(store_runs.enqueue(conn, task["id"], n=2))

    inserter = threading.Thread(target=insert, daemon=True)
    with running_worker(db, concurrency=2):
        inserter.start()
        seen: list[int] = []
        cursor = None
        try:
            while True:
                params: dict[str, object] = {"limit": 7, "task_id": task["id"]}
                if cursor:
                    params["cursor"] = cursor
                page = client.get("/runs", params=params, headers=alice).json()
                seen += [r["id"] for r in page["items"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
        finally:
            stop.set()
            inserter.join(10)

    assert added, "nothing was inserted while paging"
    assert len(seen) == len(set(seen)), "a run appeared twice"
    assert seen == sorted(seen, reverse=True)
    assert set(before) <= set(seen), f"skipped: {sorted(set(before) - set(seen))}"
    first_page_top = seen[0]
    assert all(rid <= first_page_top for rid in seen)


def test_cancel_withdraws_a_queued_run(client: httpx.Client, alice: dict[str, str]) -> None:
    """A queued run is canceled at once; canceling it again is 409."""
    task = _task(client, alice)
    run = client.post(f"/tasks/{task['id']}/run_now", headers=alice).json()

    canceled = client.post(f"/runs/{run['id']}/cancel", headers=alice)
    again = client.post(f"/runs/{run['id']}/cancel", headers=alice)

    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["state"] == "canceled" and canceled.json()["error"]["code"] == "CANCELED"
    assert _run(client, alice, run["id"])["state"] == "canceled"
    assert again.status_code == 409 and again.json()["code"] == "CONFLICT"


class _SlowEndpoint:
    """An HTTP endpoint that holds each request until released: a pipeline step that takes as long as
    the test wants."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoint.entered.set()
                endpoint.release.wait(30)
                body = json.dumps({"ok": True}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/slow"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slow_endpoint() -> Iterator[_SlowEndpoint]:
    endpoint = _SlowEndpoint()
    try:
        yield endpoint
    finally:
        endpoint.close()


def test_cancel_stops_a_running_run_at_the_next_step_boundary(
    client: httpx.Client, make_token: TokenFactory, db: Database, slow_endpoint: _SlowEndpoint
) -> None:
    """A running run is asked to stop: the step in progress finishes, the next one never starts, and the
    run is recorded as canceled."""
    caller = bearer(make_token("olga", "tasks:write", "runs:read", "tools:http"))
    doc = echo_task()
    doc["payload"]["pipeline"] = [
        {"id": "slow", "uses": "http.request", "with": {"url": slow_endpoint.url, "timeout_s": 30}},
        {"id": "after", "uses": "echo.message", "with": {"message": "should not run"}},
    ]
    task = client.post("/tasks", json=doc, headers=caller).json()
    with running_worker(db, lease_s=3) as worker:
        run = client.post(f"/tasks/{task['id']}/run_now", headers=caller).json()
        assert slow_endpoint.entered.wait(10), "the first step never started"

        asked = client.post(f"/runs/{run['id']}/cancel", headers=caller)
        # The worker learns of the request with its next lease heartbeat (a second here).
        wait_for(lambda: worker.held.is_canceled(run["id"]), what="the worker to see the cancel request")
        slow_endpoint.release.set()
        ended = wait_for(
            lambda: (r := _run(client, caller, run["id"]))["state"] == "canceled" and r,
            what="the run to be canceled",
        )

    assert asked.status_code == 200, asked.text
    assert asked.json()["state"] == "running" and asked.json()["cancel_requested"] is True
    assert [s["id"] for s in ended["steps"]] == ["slow"]
    assert ended["steps"][0]["state"] == "ok"
    assert ended["error"]["code"] == "CANCELED"
    assert ended["attempts"][-1]["state"] == "canceled"


def test_a_finished_run_cannot_be_canceled(client: httpx.Client, alice: dict[str, str], db: Database) -> None:
    task = _task(client, alice)
    with running_worker(db):
        run = client.post(f"/tasks/{task['id']}/run_now", headers=alice).json()
        wait_for(lambda: _run(client, alice, run["id"])["state"] == "succeeded", what="the run to succeed")

    response = client.post(f"/runs/{run['id']}/cancel", headers=alice)

    assert response.status_code == 409
    assert "succeeded" in response.json()["message"]


def test_unknown_run_is_404(client: httpx.Client, alice: dict[str, str]) -> None:
    response = client.get("/runs/424242", headers=alice)

    assert response.status_code == 404 and response.json()["code"] == "NOT_FOUND"


def test_a_listed_run_reads_exactly_as_its_detail(
    client: httpx.Client, alice: dict[str, str], db: Database
) -> None:
    """GET /runs items (built by the database) and GET /runs/{id} (built in Python) agree field for field,
    for a queued, a succeeded and a dead run with its error."""
    ok = _task(client, alice, title="ok")
    broken = _task(
        client,
        alice,
        title="broken",
        max_retries=0,
        payload={
            # abs() of a string fails when the step runs, not when the task is checked
            "pipeline": [
                {"id": "calc", "uses": "transform.jmespath", "with": {"expression": "abs(@)", "data": "x"}}
            ]
        },
    )
    with running_worker(db):
        done = [client.post(f"/tasks/{t['id']}/run_now", headers=alice).json()["id"] for t in (ok, broken)]
        wait_for(
            lambda: all(_run(client, alice, rid)["state"] in ("succeeded", "dead") for rid in done),
            what="both runs to end",
        )
    queued = client.post(f"/tasks/{ok['id']}/run_now", json={"params": {"who": "x"}}, headers=alice).json()[
        "id"
    ]

    listed = {r["id"]: r for r in client.get("/runs", headers=alice).json()["items"]}
    assert sorted(listed) == sorted([*done, queued])
    for rid, item in listed.items():
        detail = _run(client, alice, rid)
        detail.pop("attempts")
        assert item == detail
    assert listed[done[0]]["state"] == "succeeded" and listed[done[0]]["steps"][0]["output"]
    assert listed[done[1]]["state"] == "dead" and listed[done[1]]["error"]["message"]
    assert listed[queued]["state"] == "queued" and listed[queued]["steps"] == []
    assert all(datetime.fromisoformat(item["created_at"]).tzinfo is not None for item in listed.values())


def _scheduler(db: Database):  # a SchedulerService
    import structlog

    from scheduler.service import SchedulerConfig, SchedulerService

    return SchedulerService(db, SchedulerConfig(horizon_s=600), structlog.get_logger("test"), "api-test")


def test_history_leaves_out_what_is_written_ahead_and_upcoming_lists_it(
    client: httpx.Client, alice: dict[str, str], db: Database
) -> None:
    """GET /runs is what has run or is due; GET /runs/upcoming the occurrences written ahead, soonest
    first, each a run that can be canceled before its time (then it is history, and does not run)."""
    task = _task(client, alice, schedule_kind="cron", schedule_expr="* * * * *")
    manual = client.post(f"/tasks/{task['id']}/run_now", headers=alice).json()
    scheduler = _scheduler(db)
    try:
        scheduler.tick()
        history = client.get("/runs", params={"task_id": task["id"]}, headers=alice).json()["items"]
        upcoming = client.get("/runs/upcoming", params={"task_id": task["id"]}, headers=alice).json()["items"]
        skipped = client.post(f"/runs/{upcoming[0]['id']}/cancel", headers=alice).json()
        scheduler.tick()
        after = client.get("/runs/upcoming", params={"task_id": task["id"]}, headers=alice).json()["items"]
    finally:
        scheduler.step_down()

    assert [r["id"] for r in history] == [manual["id"]]
    assert len(upcoming) >= 9 and {r["state"] for r in upcoming} == {"scheduled"}
    times = [r["scheduled_for"] for r in upcoming]
    assert times == sorted(times) and times[0] > manual["scheduled_for"]
    assert skipped["state"] == "canceled"
    assert upcoming[0]["id"] not in {r["id"] for r in after}
    assert after[0]["scheduled_for"] == times[1]


def test_retry_gives_a_dead_run_a_new_attempt_and_refuses_others(
    client: httpx.Client, alice: dict[str, str], db: Database
) -> None:
    task = _task(
        client,
        alice,
        max_retries=0,
        payload={"pipeline": [{"id": "say", "uses": "echo.message", "with": {"message": "${params.m}"}}]},
    )
    run = client.post(f"/tasks/{task['id']}/run_now", headers=alice).json()
    with running_worker(db):
        wait_for(lambda: _run(client, alice, run["id"])["state"] == "dead", what="the run to die")
        retried = client.post(f"/runs/{run['id']}/retry", headers=alice)
        again = wait_for(
            lambda: (r := _run(client, alice, run["id"]))["state"] == "dead" and r["attempt"] == 2 and r,
            what="the second attempt to end",
        )
    queued = client.post(f"/tasks/{task['id']}/run_now", headers=alice).json()
    refused = client.post(f"/runs/{queued['id']}/retry", headers=alice)

    assert retried.status_code == 200, retried.text
    assert retried.json()["id"] == run["id"] and retried.json()["state"] in ("failed", "running", "dead")
    assert [a["state"] for a in again["attempts"]] == ["failed", "dead"]
    assert refused.status_code == 409 and refused.json()["code"] == "CONFLICT"


def test_next_fire_at_is_the_next_occurrence_not_the_end_of_what_is_written_ahead(
    client: httpx.Client, alice: dict[str, str], db: Database
) -> None:
    task = _task(client, alice, schedule_kind="cron", schedule_expr="* * * * *")
    scheduler = _scheduler(db)
    try:
        scheduler.tick()
    finally:
        scheduler.step_down()
    now = datetime.now(UTC)

    shown = client.get(f"/tasks/{task['id']}", headers=alice).json()
    listed = client.get("/tasks", headers=alice).json()["items"][0]

    nxt = datetime.fromisoformat(shown["next_fire_at"])
    assert now <= nxt <= now + timedelta(seconds=61), shown["next_fire_at"]
    assert nxt.second == 0 and shown["next_fire_at"].endswith("+00:00")
    assert listed["next_fire_at"] == shown["next_fire_at"]


def test_a_listing_leaves_large_outputs_out_and_the_detail_keeps_them(
    client: httpx.Client, alice: dict[str, str], db: Database
) -> None:
    """GET /runs never returns an unbounded body: a step's or the run's output above the listing limit
    is replaced by {"truncated": true, "bytes": N}; GET /runs/{id} shows it whole."""
    doc = echo_task()
    doc["payload"]["params"] = {"big": "x" * 40_000, "small": "y"}
    doc["payload"]["pipeline"] = [
        {"id": "large", "uses": "echo.message", "with": {"message": "${params.big}"}, "save_as": "kept"},
        {"id": "small", "uses": "echo.message", "with": {"message": "${params.small}"}},
    ]
    task = client.post("/tasks", json=doc, headers=alice).json()
    with running_worker(db):
        run = client.post(f"/tasks/{task['id']}/run_now", headers=alice).json()
        detail = wait_for(
            lambda: (r := _run(client, alice, run["id"]))["state"] == "succeeded" and r, what="the run"
        )

    def listed() -> dict:
        (item,) = client.get(f"/runs?task_id={task['id']}", headers=alice).json()["items"]
        return item

    item = listed()
    large, small = item["steps"]
    assert large["output"] == {"truncated": True, "bytes": large["output"]["bytes"]}
    assert large["output"]["bytes"] > 40_000
    assert item["output"] == {"truncated": True, "bytes": item["output"]["bytes"]}
    assert small["output"] == {"message": "y"}
    assert detail["steps"][0]["output"] == {"message": "x" * 40_000}
    assert detail["output"] == {"kept": {"message": "x" * 40_000}}
    # History recorded before attempts carried their size is checked output by output.
    with db.tx() as conn:
        conn.execute(text("UPDATE task_run SET record_bytes = NULL"))
    assert listed() == item
