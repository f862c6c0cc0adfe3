"""Task routes: create, list, show, change, delete, run now, pause, resume, cancel, preview."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from store.db import Database
from tests.api.conftest import TokenFactory, bearer, echo_task
from tests.helpers import scalar


def _create(client: httpx.Client, headers: dict[str, str], **fields: object) -> dict:
    response = client.post("/tasks", json=echo_task(**fields), headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


# -- happy paths ----------------------------------------------------------------------------------


def test_create_returns_the_stored_task_with_its_location(
    client: httpx.Client, alice: dict[str, str]
) -> None:
    """POST /tasks stores the document (defaults filled in) and answers 201 with Location."""
    response = client.post(
        "/tasks",
        json=echo_task(
            schedule_kind="rrule", schedule_expr="FREQ=DAILY;BYHOUR=5;BYMINUTE=30", timezone="Europe/Chisinau"
        ),
        headers=alice,
    )

    assert response.status_code == 201, response.text
    task = response.json()
    assert response.headers["location"] == f"/tasks/{task['id']}"
    assert task["schedule_kind"] == "rrule"
    assert task["schedule_expr"].startswith("DTSTART;TZID=Europe/Chisinau:")  # normalised like the CLI does
    assert task["status"] == "active" and task["priority"] == 5 and task["next_fire_at"] is not None
    assert client.get(f"/tasks/{task['id']}", headers=alice).json() == task


def test_list_filters_by_status_kind_and_text(client: httpx.Client, alice: dict[str, str]) -> None:
    """GET /tasks filters by status, schedule kind and a text search."""
    a = _create(client, alice, title="nightly plan")
    b = _create(client, alice, title="hourly sync", schedule_kind="cron", schedule_expr="0 * * * *")
    client.post(f"/tasks/{b['id']}/pause", headers=alice)

    def ids(**params: str) -> list[str]:
        response = client.get("/tasks", params=params, headers=alice)
        assert response.status_code == 200, response.text
        return [t["id"] for t in response.json()["items"]]

    assert ids() == [b["id"], a["id"]]
    assert ids(status="paused") == [b["id"]]
    assert ids(schedule_kind="manual") == [a["id"]]
    assert ids(text="NIGHTLY") == [a["id"]]
    assert ids(text="100%") == []


def test_list_pages_with_a_cursor(client: httpx.Client, alice: dict[str, str]) -> None:
    """Pages of GET /tasks chain through next_cursor, newest first, each task once."""
    created = [_create(client, alice, title=f"task {i}")["id"] for i in range(7)]

    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/tasks", params=params, headers=alice).json()
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == created[::-1]


def test_patch_merges_revalidates_and_bumps_the_version(client: httpx.Client, alice: dict[str, str]) -> None:
    """PATCH changes only the given fields, validates the whole task again, and bumps its version."""
    task = _create(client, alice)

    response = client.patch(
        f"/tasks/{task['id']}", json={"priority": 8, "backoff": {"cap_s": 30}}, headers=alice
    )

    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed["priority"] == 8
    assert changed["backoff"] == {"base_s": 2.0, "cap_s": 30.0, "jitter": 0.2}
    assert changed["title"] == task["title"] and changed["version"] == task["version"] + 1


def test_patch_with_a_bad_schedule_changes_nothing(client: httpx.Client, alice: dict[str, str]) -> None:
    """A PATCH that makes the task invalid is refused and the task stays as it was."""
    task = _create(client, alice)

    response = client.patch(
        f"/tasks/{task['id']}", json={"schedule_kind": "cron", "schedule_expr": "61 * * * *"}, headers=alice
    )

    assert response.status_code == 422
    assert response.json()["code"] == "INVALID_SCHEDULE"
    assert client.get(f"/tasks/{task['id']}", headers=alice).json() == task


def test_delete_removes_the_task_and_its_runs(
    client: httpx.Client, alice: dict[str, str], db: Database
) -> None:
    """DELETE answers 204; the task and its runs are gone."""
    task = _create(client, alice)
    client.post(f"/tasks/{task['id']}/run_now", headers=alice)

    response = client.delete(f"/tasks/{task['id']}", headers=alice)

    assert response.status_code == 204 and response.content == b""
    assert client.get(f"/tasks/{task['id']}", headers=alice).status_code == 404
    assert scalar(db, "SELECT count(*) FROM due_work") == 0


def test_run_now_returns_a_queued_run_handle(client: httpx.Client, alice: dict[str, str]) -> None:
    """run_now answers 202 with the queued run and where to poll it, with params overrides recorded."""
    task = _create(client, alice)

    response = client.post(f"/tasks/{task['id']}/run_now", json={"params": {"who": "Ana"}}, headers=alice)

    assert response.status_code == 202, response.text
    run = response.json()
    assert run["task_id"] == task["id"] and run["state"] == "queued" and run["origin"] == "manual"
    assert response.headers["location"] == f"/runs/{run['id']}"
    assert client.get(f"/runs/{run['id']}", headers=alice).json()["state"] == "queued"


def test_run_now_without_a_body_is_accepted(client: httpx.Client, alice: dict[str, str]) -> None:
    """run_now needs no body at all."""
    task = _create(client, alice)

    assert client.post(f"/tasks/{task['id']}/run_now", headers=alice).status_code == 202


def test_pause_resume_cancel(client: httpx.Client, alice: dict[str, str]) -> None:
    """pause, resume and cancel move the task through its states; a canceled task cannot resume (409)."""
    task = _create(client, alice, schedule_kind="cron", schedule_expr="*/5 * * * *")
    path = f"/tasks/{task['id']}"

    paused = client.post(f"{path}/pause", headers=alice).json()
    resumed = client.post(f"{path}/resume", headers=alice).json()
    canceled = client.post(f"{path}/cancel", headers=alice).json()
    again = client.post(f"{path}/resume", headers=alice)

    assert (paused["status"], paused["next_fire_at"]) == ("paused", None)
    assert resumed["status"] == "active" and resumed["next_fire_at"] is not None
    assert canceled["status"] == "canceled"
    assert again.status_code == 409 and again.json()["code"] == "CONFLICT"
    assert client.post(f"{path}/run_now", headers=alice).status_code == 409


def test_preview_lists_the_next_occurrences_with_offsets(client: httpx.Client, alice: dict[str, str]) -> None:
    """GET /tasks/{id}/preview gives N occurrences in the task's zone, ISO 8601 with offset."""
    task = _create(
        client,
        alice,
        schedule_kind="rrule",
        schedule_expr="FREQ=DAILY;BYHOUR=8;BYMINUTE=0",
        timezone="Asia/Tokyo",
    )

    response = client.get(f"/tasks/{task['id']}/preview", params={"count": 3}, headers=alice)

    assert response.status_code == 200, response.text
    occurrences = response.json()["occurrences"]
    assert len(occurrences) == 3
    assert all(o.endswith("T08:00:00+09:00") for o in occurrences)


def test_schedule_preview_of_a_draft(client: httpx.Client, alice: dict[str, str]) -> None:
    """POST /schedules/preview expands a draft RRULE with DTSTART across a DST change."""
    response = client.post(
        "/schedules/preview",
        json={
            "kind": "rrule",
            "expr": "FREQ=DAILY;BYHOUR=8;BYMINUTE=0",
            "timezone": "Europe/Chisinau",
            "dtstart": "2026-03-28T00:00:00",
            "count": 3,
        },
        headers=alice,
    )

    assert response.status_code == 200, response.text
    assert response.json() == {
        "occurrences": [
            "2026-03-28T08:00:00+02:00",
            "2026-03-29T08:00:00+03:00",
            "2026-03-30T08:00:00+03:00",
        ],
        "complete": True,
        "cut_short": None,
    }


def test_schedule_preview_refuses_a_bad_rule_with_the_reason(
    client: httpx.Client, alice: dict[str, str]
) -> None:
    """An impossible RRULE is a 422 INVALID_SCHEDULE naming the problem."""
    response = client.post(
        "/schedules/preview", json={"kind": "rrule", "expr": "FREQ=DAILY;BYHOUR=25"}, headers=alice
    )

    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "INVALID_SCHEDULE" and "BYHOUR" in body["message"]


# -- refused documents ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "code", "path"),
    [
        ({"schedule_kind": "rrule", "schedule_expr": "FREQ=SOMETIMES"}, "INVALID_SCHEDULE", None),
        ({"schedule_kind": "cron", "schedule_expr": "* * *"}, "INVALID_SCHEDULE", None),
        ({"schedule_kind": "once", "schedule_expr": "2001-01-01T00:00:00Z"}, "INVALID_SCHEDULE", None),
        ({"timezone": "Mars/Olympus"}, "INVALID_SCHEDULE", None),
        ({"priority": 10}, "INVALID_TASK", "priority"),
        ({"priority": "5"}, "INVALID_TASK", "priority"),
        ({"priority": 10**40}, "INVALID_REQUEST", None),  # beyond 64 bits: no run could carry it
        ({"title": ""}, "INVALID_TASK", "title"),
        ({"colour": "red"}, "INVALID_TASK", "task"),
        ({"backoff": {"base_s": 10, "cap_s": 1}}, "INVALID_TASK", "backoff.cap_s"),
    ],
)
def test_invalid_task_documents_are_refused_with_the_field(
    client: httpx.Client, alice: dict[str, str], fields: dict, code: str, path: str | None
) -> None:
    """Bad fields, schedules and zones are 422 with the CLI's error code and the field path."""
    response = client.post("/tasks", json=echo_task(**fields), headers=alice)

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == code
    if path is not None:
        assert body["details"]["path"] == path
    assert client.get("/tasks", headers=alice).json()["items"] == []


def test_a_pipeline_naming_an_unknown_tool_is_refused_with_its_path(
    client: httpx.Client, alice: dict[str, str]
) -> None:
    """An unknown tool is 422 UNKNOWN_TOOL at payload.pipeline[i].uses."""
    doc = echo_task()
    doc["payload"]["pipeline"].append({"id": "plan", "uses": "solver.solve_everything"})

    response = client.post("/tasks", json=doc, headers=alice)

    assert response.status_code == 422
    assert response.json()["code"] == "UNKNOWN_TOOL"
    assert response.json()["details"]["path"] == "payload.pipeline[1].uses"


def test_a_step_reading_a_later_step_is_refused(client: httpx.Client, alice: dict[str, str]) -> None:
    """A template that reads a step which has not run yet is 422 INVALID_PIPELINE."""
    doc = echo_task()
    doc["payload"]["pipeline"][0]["with"] = {"message": "${steps.later.message}"}

    response = client.post("/tasks", json=doc, headers=alice)

    assert response.status_code == 422
    assert response.json()["code"] == "INVALID_PIPELINE"


def test_a_tool_needs_its_scope(client: httpx.Client, make_token: TokenFactory) -> None:
    """http.request needs tools:http: without it 403 TOOL_SCOPE_MISSING, with it 201."""
    doc = echo_task()
    doc["payload"]["pipeline"] = [
        {"id": "get", "uses": "http.request", "with": {"url": "https://example.org"}}
    ]
    without = bearer(make_token("carol", "tasks:write"))
    with_scope = bearer(make_token("carol", "tasks:write", "tools:http"))

    refused = client.post("/tasks", json=doc, headers=without)
    accepted = client.post("/tasks", json=doc, headers=with_scope)

    assert refused.status_code == 403
    assert refused.json()["code"] == "TOOL_SCOPE_MISSING"
    assert refused.json()["details"]["missing_scopes"] == ["tools:http"]
    assert accepted.status_code == 201


# -- bad input never gives a 500 ------------------------------------------------------------------


def test_malformed_json_is_400(client: httpx.Client, alice: dict[str, str]) -> None:
    """A body that is not JSON is 400 MALFORMED_JSON with the position."""
    response = client.post(
        "/tasks", content=b'{"title": "x",', headers={**alice, "Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["code"] == "MALFORMED_JSON"


@pytest.mark.parametrize(
    "body",
    [
        b"[1, 2, 3]",
        b'"a task"',
        b"null",
        json.dumps(echo_task(title="nul \u0000 inside")).encode(),
        json.dumps(echo_task(description="\ud800")).encode(),
        b'{"title": "x", "schedule_kind": "manual", "payload": {"pipeline": [], "params": {"n": NaN}}}',
        b'{"title": "x", "schedule_kind": "manual", "payload": {"params": {"n": 1e999}}}',
        (
            '{"title": "x", "schedule_kind": "manual", "payload": {"params": ' + "[" * 200 + "]" * 200 + "}}"
        ).encode(),
    ],
    ids=["array", "string", "null", "nul-char", "lone-surrogate", "nan", "infinity", "deep-nesting"],
)
def test_unstorable_bodies_are_422(client: httpx.Client, alice: dict[str, str], body: bytes) -> None:
    """Bodies PostgreSQL could not store (or that are not objects) are 422, never 5xx."""
    response = client.post("/tasks", content=body, headers={**alice, "Content-Type": "application/json"})

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "INVALID_REQUEST"


@pytest.mark.parametrize(
    "body",
    [
        b'{"title": "x", "payload": {"params": {"n": ' + b"9" * 5000 + b"}}}",
        b"[" * 100_000 + b"]" * 100_000,
        b"\xff\xfe{}",
    ],
    ids=["5000-digit-int", "100k-nesting", "not-utf8"],
)
def test_unparseable_bodies_are_400(client: httpx.Client, alice: dict[str, str], body: bytes) -> None:
    """Bodies the JSON parser itself refuses are 400, never 5xx."""
    response = client.post("/tasks", content=body, headers={**alice, "Content-Type": "application/json"})

    assert response.status_code == 400, response.text
    assert response.json()["code"] == "MALFORMED_JSON"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/tasks/not-a-uuid"),
        ("PATCH", "/tasks/123"),
        ("POST", "/tasks/%00/pause"),
        ("GET", "/tasks?limit=0"),
        ("GET", "/tasks?limit=1e100"),
        ("GET", "/tasks?status=sleeping"),
        ("GET", "/tasks?text=%00"),
        ("GET", "/runs/0"),
        ("GET", "/runs/99999999999999999999999"),
        ("GET", "/runs?since=yesterday"),
        ("GET", "/runs?since=2026-01-01T00:00:00"),
        ("GET", "/runs?state=lost"),
        ("GET", "/runs?state=scheduled"),
        ("GET", "/tasks/{id}/preview?count=100000"),
    ],
)
def test_bad_parameters_are_422(client: httpx.Client, alice: dict[str, str], method: str, path: str) -> None:
    """Malformed ids, numbers, enums and timestamps are 422 with the parameter named."""
    task = _create(client, alice)

    response = client.request(method, path.replace("{id}", task["id"]), json={}, headers=alice)

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "INVALID_REQUEST" and body["details"]["in"] in ("path", "query")


def test_unknown_task_is_404(client: httpx.Client, alice: dict[str, str]) -> None:
    response = client.get(f"/tasks/{uuid.uuid4()}", headers=alice)

    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


def test_unknown_route_and_wrong_method_have_the_error_shape(
    client: httpx.Client, alice: dict[str, str]
) -> None:
    """404 for an unknown path and 405 (with Allow) for a wrong method use {code, message, details}."""
    missing = client.get("/nothing-here", headers=alice)
    wrong = client.put("/tasks", headers=alice)

    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
    assert wrong.status_code == 405 and wrong.json()["code"] == "METHOD_NOT_ALLOWED"
    assert "GET" in wrong.headers["allow"]
