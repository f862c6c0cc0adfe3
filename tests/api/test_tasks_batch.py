"""POST /tasks/batch: many tasks in one request, all stored or none, with every invalid document named."""

from __future__ import annotations

import httpx

from scheduler.task_document import BATCH_MAX
from store.db import Database
from tests.api.conftest import TokenFactory, bearer, echo_task
from tests.helpers import scalar


def test_a_batch_is_stored_whole_and_answers_the_ids_in_order(
    client: httpx.Client, alice: dict[str, str]
) -> None:
    """201 with one id per document, in the order sent; each task reads back as POST /tasks stores it
    (defaults filled in, the schedule normalised), owned by the caller."""
    docs = [
        echo_task(title="first"),
        echo_task(title="second", schedule_kind="cron", schedule_expr="*/5 * * * *"),
        echo_task(
            title="third", schedule_kind="rrule", schedule_expr="FREQ=DAILY;BYHOUR=6", timezone="Asia/Tokyo"
        ),
    ]

    response = client.post("/tasks/batch", json={"tasks": docs}, headers=alice)

    assert response.status_code == 201, response.text
    ids = response.json()["ids"]
    tasks = [client.get(f"/tasks/{i}", headers=alice).json() for i in ids]
    assert [t["title"] for t in tasks] == ["first", "second", "third"]
    assert tasks[1]["next_fire_at"] is not None and tasks[0]["next_fire_at"] is None
    assert tasks[2]["schedule_expr"].startswith("DTSTART;TZID=Asia/Tokyo:")
    assert {t["priority"] for t in tasks} == {5}
    assert len({t["agent_id"] for t in tasks}) == 1
    single = client.post("/tasks", json=docs[2], headers=alice).json()
    assert {
        k: v for k, v in single.items() if k not in ("id", "created_at", "updated_at", "next_fire_at")
    } == {k: v for k, v in tasks[2].items() if k not in ("id", "created_at", "updated_at", "next_fire_at")}


def test_invalid_documents_are_each_named_and_nothing_is_stored(
    client: httpx.Client, alice: dict[str, str], db: Database
) -> None:
    """Two bad documents among four: 422 INVALID_BATCH listing both by index with their own code,
    message and field path; the two good ones are not stored either."""
    docs = [
        echo_task(title="good"),
        echo_task(schedule_kind="cron", schedule_expr="0 25 * * *"),
        echo_task(title="also good"),
        echo_task(priority=12),
    ]

    response = client.post("/tasks/batch", json={"tasks": docs}, headers=alice)

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "INVALID_BATCH"
    assert body["details"]["invalid"] == 2
    errors = body["details"]["errors"]
    assert [e["index"] for e in errors] == [1, 3]
    assert errors[0]["code"] == "INVALID_SCHEDULE" and "hour" in errors[0]["message"]
    assert errors[1]["code"] == "INVALID_TASK" and errors[1]["path"] == "priority"
    assert "2 of 4 tasks are invalid" in body["message"] and "tasks[1]" in body["message"]
    assert scalar(db, "SELECT count(*) FROM task") == 0


def test_identical_pipelines_are_each_checked_against_the_callers_scopes(
    client: httpx.Client, make_token: TokenFactory, db: Database
) -> None:
    """A pipeline checked once for a batch is still refused for every document that uses it when the
    caller lacks the tool's scope."""
    doc = echo_task()
    doc["payload"]["pipeline"] = [
        {"id": "get", "uses": "http.request", "with": {"url": "https://example.org"}}
    ]
    without = bearer(make_token("carol", "tasks:write"))

    response = client.post("/tasks/batch", json={"tasks": [echo_task(), doc, doc]}, headers=without)

    assert response.status_code == 422
    errors = response.json()["details"]["errors"]
    assert [(e["index"], e["code"]) for e in errors] == [(1, "TOOL_SCOPE_MISSING"), (2, "TOOL_SCOPE_MISSING")]
    assert scalar(db, "SELECT count(*) FROM task") == 0


def test_an_empty_or_oversized_batch_is_refused(client: httpx.Client, alice: dict[str, str]) -> None:
    empty = client.post("/tasks/batch", json={"tasks": []}, headers=alice)
    too_many = client.post("/tasks/batch", json={"tasks": [{"title": "x"}] * (BATCH_MAX + 1)}, headers=alice)
    not_a_list = client.post("/tasks/batch", json=[echo_task()], headers=alice)

    assert (empty.status_code, too_many.status_code, not_a_list.status_code) == (422, 422, 422)


def test_a_repeated_idempotency_key_answers_the_first_batch(
    client: httpx.Client, alice: dict[str, str], db: Database
) -> None:
    headers = {**alice, "Idempotency-Key": "batch-1"}
    body = {"tasks": [echo_task(title="a"), echo_task(title="b")]}

    first = client.post("/tasks/batch", json=body, headers=headers)
    again = client.post("/tasks/batch", json=body, headers=headers)

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert scalar(db, "SELECT count(*) FROM task") == 2


def test_values_no_run_could_carry_are_refused_by_name(client: httpx.Client, alice: dict[str, str]) -> None:
    """An integer beyond 64 bits in one document's params is a 422 naming the item and the field (it
    was a 500: the bulk insert's encoder refuses such integers, as every run's would)."""
    big = echo_task()
    big["payload"]["params"] = {"x": 10**23}
    response = client.post("/tasks/batch", json={"tasks": [echo_task(), big]}, headers=alice)

    assert response.status_code == 422, response.text
    assert response.json()["message"] == "tasks[1] (body): payload.params.x: an integer beyond 64 bits"
    assert client.get("/tasks", headers=alice).json()["items"] == []
