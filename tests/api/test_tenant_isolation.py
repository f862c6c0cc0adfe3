"""Tenant isolation and bad input over the HTTP API.

Agent A's tokens against agent B's ids on every route that takes one, listings filtered by B's ids
and cursors, Idempotency-Key reuse, scopes of read-only / revoked / deleted / expired tokens, events
crossing agents, batches, and malformed input (NUL characters, out-of-range offsets, huge or
non-numeric parameters, wrong content types). Every refusal must be a 4xx with a code and a message,
never a 5xx, and must change nothing.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from store import agents
from store.db import Database
from tests.api.conftest import TokenFactory, bearer, echo_task
from tests.helpers import rows, scalar

ALL = (
    "tasks:read",
    "tasks:write",
    "runs:read",
    "events:publish",
    "webhooks:read",
    "webhooks:write",
    "availability:read",
    "availability:write",
)
URL = "https://mes.example.com/ordo"

PLANT = {
    "holiday_calendars": [{"name": "za", "country": "ZA"}],
    "patterns": [
        {
            "name": "four_tens",
            "kind": "weekly",
            "rules": [{"days": "mon-thu", "start": "07:00", "end": "17:00", "shift_code": "D"}],
        }
    ],
    "resources": [
        {
            "code": "ACME",
            "level": "enterprise",
            "children": [
                {
                    "code": "JHB",
                    "level": "site",
                    "timezone": "Africa/Johannesburg",
                    "holiday_calendar": "za",
                    "children": [{"code": "P-01", "level": "work_unit"}],
                }
            ],
        }
    ],
    "assignments": [{"resource": "JHB", "pattern": "two_shift", "effective_from": "2025-01-01"}],
    "exceptions": [
        {
            "resource": "P-01",
            "kind": "maintenance",
            "start": "2026-03-02T06:00",
            "end": "2026-03-02T10:00",
        }
    ],
}


@pytest.fixture
def a(make_token: TokenFactory) -> dict[str, str]:
    return bearer(make_token("agent-a", *ALL))


@pytest.fixture
def b(make_token: TokenFactory) -> dict[str, str]:
    return bearer(make_token("agent-b", *ALL))


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def refused(response: httpx.Response, status: int) -> dict[str, Any]:
    """A refusal in the one error shape: the status, a code and a message."""
    assert response.status_code == status, (response.request.method, response.request.url, response.text)
    body = response.json()
    assert isinstance(body.get("code"), str) and body["code"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    return body


def client_error(response: httpx.Response) -> dict[str, Any]:
    """Any 4xx in the error shape (not a 5xx)."""
    assert 400 <= response.status_code < 500, (
        response.request.method,
        str(response.request.url)[:200],
        response.status_code,
        response.text[:500],
    )
    body = response.json()
    assert body.get("code") and body.get("message"), body
    return body


def snapshot(db: Database) -> dict[str, Any]:
    """Every table a write through the API may touch, as counts and a digest of its rows."""
    tables = [
        "task",
        "due_work",
        "task_run",
        "event",
        "webhook_endpoint",
        "webhook_delivery",
        "resource",
        "operating_pattern",
        "holiday_calendar",
        "pattern_assignment",
        "availability_exception",
        "agent",
    ]
    out = {
        t: scalar(db, f"SELECT md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM {t} x")
        for t in tables
    }
    # Tokens, but not last_used_at (authenticating touches it).
    out["api_token"] = rows(db, "SELECT id, scopes, revoked_at, expires_at FROM api_token ORDER BY id")
    return out


def cursor_of(*parts: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


# -- B's world ------------------------------------------------------------------------------------


@pytest.fixture
def world_b(client: httpx.Client, b: dict[str, str]) -> dict[str, Any]:
    """Agent B with a task, a queued run, an event, a webhook with a delivery, and a plant."""
    task = ok(client.post("/tasks", json=echo_task(title="B's task"), headers=b), 201)
    run = ok(client.post(f"/tasks/{task['id']}/run_now", headers=b), 202)
    hook = ok(client.post("/webhooks", json={"url": URL, "events": ["plan.ready"]}, headers=b), 201)
    event = ok(client.post("/events", json={"topic": "plan.ready", "payload": {"x": 1}}, headers=b), 202)
    deliveries = ok(client.get(f"/webhooks/{hook['id']}/deliveries", headers=b))["items"]
    assert len(deliveries) == 1
    ok(client.post("/resources/import", json=PLANT, headers=b))
    resources = {r["code"]: r for r in ok(client.get("/resources", headers=b))["items"]}
    assignment = ok(client.get("/assignments", headers=b))[0]
    exception = ok(client.get("/exceptions", headers=b))[0]
    return {
        "task": task,
        "run": run,
        "hook": hook,
        "event": event,
        "delivery": deliveries[0],
        "resources": resources,
        "assignment": assignment,
        "exception": exception,
    }


# -- A against B's ids ----------------------------------------------------------------------------


def test_every_route_with_an_id_answers_404_for_another_agents_id_and_changes_nothing(
    client: httpx.Client, a: dict[str, str], world_b: dict[str, Any], db: Database
) -> None:
    w = world_b
    tid, rid, hid, did = w["task"]["id"], w["run"]["id"], w["hook"]["id"], w["delivery"]["id"]
    eid = w["event"]["id"]
    res = w["resources"]["P-01"]["id"]
    mine = ok(client.post("/webhooks", json={"url": URL, "events": ["x.y"]}, headers=a), 201)
    before = snapshot(db)

    attempts = {
        "GET task": client.get(f"/tasks/{tid}", headers=a),
        "PATCH task": client.patch(f"/tasks/{tid}", json={"priority": 1}, headers=a),
        "DELETE task": client.delete(f"/tasks/{tid}", headers=a),
        "run_now": client.post(f"/tasks/{tid}/run_now", json={"params": {"a": 1}}, headers=a),
        "pause": client.post(f"/tasks/{tid}/pause", headers=a),
        "resume": client.post(f"/tasks/{tid}/resume", headers=a),
        "cancel task": client.post(f"/tasks/{tid}/cancel", headers=a),
        "preview": client.get(f"/tasks/{tid}/preview", headers=a),
        "GET run": client.get(f"/runs/{rid}", headers=a),
        "cancel run": client.post(f"/runs/{rid}/cancel", headers=a),
        "retry run": client.post(f"/runs/{rid}/retry", headers=a),
        "GET event": client.get(f"/events/{eid}", headers=a),
        "GET webhook": client.get(f"/webhooks/{hid}", headers=a),
        "PATCH webhook": client.patch(f"/webhooks/{hid}", json={"state": "paused"}, headers=a),
        "rotate": client.post(f"/webhooks/{hid}/rotate-secret", headers=a),
        "deliveries": client.get(f"/webhooks/{hid}/deliveries", headers=a),
        "delivery": client.get(f"/webhooks/{hid}/deliveries/{did}", headers=a),
        "delivery via own hook": client.get(f"/webhooks/{mine['id']}/deliveries/{did}", headers=a),
        "redeliver": client.post(f"/webhooks/{hid}/deliveries/{did}/redeliver", headers=a),
        "redeliver via own hook": client.post(
            f"/webhooks/{mine['id']}/deliveries/{did}/redeliver", headers=a
        ),
        "DELETE webhook": client.delete(f"/webhooks/{hid}", headers=a),
        "GET resource by id": client.get(f"/resources/{res}", headers=a),
        "GET resource by code": client.get("/resources/P-01", headers=a),
        "PATCH resource": client.patch(f"/resources/{res}", json={"name": "x"}, headers=a),
        "DELETE resource": client.delete(f"/resources/{res}", headers=a),
        "GET pattern": client.get("/patterns/four_tens", headers=a),
        "pattern preview": client.get(
            "/patterns/four_tens/preview", params={"timezone": "UTC", "start": "2026-01-05"}, headers=a
        ),
        "DELETE pattern": client.delete("/patterns/four_tens", headers=a),
        "GET calendar": client.get("/holiday-calendars/za", headers=a),
        "calendar holidays": client.get(
            "/holiday-calendars/za/holidays", params={"start": "2026-01-01", "end": "2026-12-31"}, headers=a
        ),
        "DELETE calendar": client.delete("/holiday-calendars/za", headers=a),
        "PATCH assignment": client.patch(
            f"/assignments/{w['assignment']['id']}", json={"pattern": "24x7"}, headers=a
        ),
        "DELETE assignment": client.delete(f"/assignments/{w['assignment']['id']}", headers=a),
        "PATCH exception": client.patch(
            f"/exceptions/{w['exception']['id']}", json={"description": "x"}, headers=a
        ),
        "DELETE exception": client.delete(f"/exceptions/{w['exception']['id']}", headers=a),
        "assignments of B's resource": client.get("/assignments", params={"resource": res}, headers=a),
        "exceptions of B's resource": client.get("/exceptions", params={"resource": res}, headers=a),
        "resources under B's": client.get("/resources", params={"under": res}, headers=a),
        "availability of B's": client.get(
            "/availability",
            params={"resource_ids": res, "start": "2026-03-02", "end": "2026-03-03"},
            headers=a,
        ),
        "availability csv of B's": client.get(
            "/availability",
            params={"resource_ids": res, "start": "2026-03-02", "end": "2026-03-03", "format": "csv"},
            headers=a,
        ),
        "runs of B's task": client.get("/runs", params={"task_id": tid}, headers=a),
        "upcoming of B's task": client.get("/runs/upcoming", params={"task_id": tid}, headers=a),
    }

    wrong = {name: (r.status_code, r.text[:200]) for name, r in attempts.items() if r.status_code != 404}
    # A filter naming another agent's task may answer an empty page instead of 404; never B's rows.
    for name in ("runs of B's task", "upcoming of B's task"):
        if name in wrong and wrong[name][0] == 200:
            assert attempts[name].json()["items"] == []
            del wrong[name]
    assert wrong == {}
    for r in attempts.values():
        refused(r, 404) if r.status_code == 404 else None
    assert snapshot(db) == before


def test_cross_agent_references_inside_a_plant_document_are_refused(
    client: httpx.Client, a: dict[str, str], world_b: dict[str, Any], db: Database
) -> None:
    """A's plant documents naming B's resources (by id) or B's pattern and calendar are 422 and write
    nothing into either plant."""
    res = world_b["resources"]["P-01"]["id"]
    ok(client.post("/resources/import", json={"resources": [{"code": "MINE", "level": "site"}]}, headers=a))
    before = snapshot(db)
    attempts = [
        client.post(
            "/assignments",
            json={"resource": res, "pattern": "24x7", "effective_from": "2026-01-01"},
            headers=a,
        ),
        client.post(
            "/assignments",
            json={"resource": "MINE", "pattern": "four_tens", "effective_from": "2026-01-01"},
            headers=a,
        ),
        client.post(
            "/exceptions",
            json={
                "resource": res,
                "kind": "breakdown",
                "start": "2026-03-02T06:00",
                "end": "2026-03-02T07:00",
            },
            headers=a,
        ),
        client.patch("/resources/MINE", json={"holiday_calendar": "za"}, headers=a),
        client.patch("/resources/MINE", json={"parent": res}, headers=a),
        client.post(
            "/resources/import",
            json={"resources": [{"code": "CHILD", "level": "work_unit", "parent": res}]},
            headers=a,
        ),
    ]
    for r in attempts:
        client_error(r)
    assert snapshot(db) == before


def test_generate_and_generations_of_another_plant_are_not_reachable(
    client: httpx.Client, a: dict[str, str], world_b: dict[str, Any], db: Database
) -> None:
    """POST /schedules/generate naming B's resources is refused or generates nothing of B's."""
    res = world_b["resources"]["P-01"]["id"]
    response = client.post(
        "/schedules/generate", json={"start": "2026-03-02", "days": 1, "resource_ids": [res]}, headers=a
    )
    assert response.status_code in (202, 404, 422), response.text
    for gid in (1, 2):
        refused(client.get(f"/availability/generations/{gid}", headers=a), 404)
        refused(client.get(f"/availability/generations/{gid}/changes", headers=a), 404)


# -- listings -------------------------------------------------------------------------------------


def test_cursors_of_another_agent_or_listing_never_show_its_rows(
    client: httpx.Client, a: dict[str, str], b: dict[str, str], world_b: dict[str, Any]
) -> None:
    for _ in range(3):
        ok(client.post("/tasks", json=echo_task(), headers=b), 201)
        ok(client.post("/webhooks", json={"url": URL, "events": ["a.b"]}, headers=b), 201)
        ok(client.post("/events", json={"topic": "a.b"}, headers=b), 202)
    b_ids = {world_b["task"]["id"], world_b["hook"]["id"], world_b["event"]["id"]}
    for path in ("/tasks", "/webhooks", "/events", "/resources"):
        page = ok(client.get(path, params={"limit": 1}, headers=b))
        assert page["next_cursor"], path
        mine = client.get(path, params={"limit": 200, "cursor": page["next_cursor"]}, headers=a)
        assert mine.status_code in (200, 400), mine.text
        if mine.status_code == 200:
            assert mine.json()["items"] == [], path
        else:
            refused(mine, 400)
    tasks_cursor = ok(client.get("/tasks", params={"limit": 1}, headers=b))["next_cursor"]
    b_tasks = ok(client.get("/tasks", params={"limit": 200}, headers=b))["items"]
    assert b_ids & {t["id"] for t in b_tasks}
    for path in ("/webhooks", "/events", "/agents", "/runs", "/runs/upcoming", "/resources"):
        r = client.get(path, params={"cursor": tasks_cursor}, headers=a)
        assert r.status_code in (200, 400, 403), (path, r.text)
        if r.status_code == 200:
            assert r.json()["items"] == [], path


CURSORS = {
    "nul": cursor_of("\u0000", "00000000-0000-0000-0000-000000000000"),
    "surrogate": cursor_of("a\ud800", "00000000-0000-0000-0000-000000000000"),
    "offset+23:59": cursor_of("2026-01-01T00:00:00+23:59", "00000000-0000-0000-0000-000000000000"),
    "year1": cursor_of("0001-01-01T00:00:00+01:00", "00000000-0000-0000-0000-000000000000"),
    "baduuid": cursor_of("2026-01-01T00:00:00+00:00", "not-a-uuid"),
    "int64": cursor_of(2**63),
    "neg": cursor_of(-1),
    "bool": cursor_of(True),
    "junk": "%%%",
    "long": "x" * 600,
    "nested": cursor_of([1, [2]]),
}
LISTINGS = ("/tasks", "/runs", "/runs/upcoming", "/events", "/webhooks", "/resources", "/agents", "/audit")


def test_a_tampered_cursor_is_a_400_never_a_5xx(client: httpx.Client, admin: dict[str, str]) -> None:
    """A cursor no listing handed out is 400 INVALID_CURSOR, or (when its parts happen to have the
    listing's types: cursors are not signed) an ordinary page; never a 5xx."""
    for path in (*LISTINGS, "/availability/generations/1/changes"):
        for name, cursor in CURSORS.items():
            response = client.get(path, params={"cursor": cursor}, headers=admin)
            assert response.status_code in (200, 400, 404), (path, name, response.status_code, response.text)
            if response.status_code == 400:
                assert refused(response, 400)["code"] == "INVALID_CURSOR", (path, name)


# -- idempotency ----------------------------------------------------------------------------------


def test_idempotency_keys_do_not_cross_agents_routes_or_bodies(
    client: httpx.Client, a: dict[str, str], b: dict[str, str], db: Database
) -> None:
    key = {"Idempotency-Key": "k-1"}
    b_task = ok(client.post("/tasks", json=echo_task(title="B"), headers={**b, **key}), 201)
    a_task = ok(client.post("/tasks", json=echo_task(title="B"), headers={**a, **key}), 201)
    assert a_task["id"] != b_task["id"]
    # A's replay is A's.
    again = client.post("/tasks", json=echo_task(title="B"), headers={**a, **key})
    assert again.json()["id"] == a_task["id"] and again.headers["idempotent-replayed"] == "true"
    # Same key, other body: 422, nothing written.
    before = snapshot(db)
    assert (
        refused(client.post("/tasks", json=echo_task(title="other"), headers={**a, **key}), 422)["code"]
        == "IDEMPOTENCY_KEY_REUSED"
    )
    # Same key on another route.
    refused(client.post("/events", json={"topic": "a.b"}, headers={**a, **key}), 422)
    refused(client.post(f"/tasks/{a_task['id']}/run_now", headers={**a, **key}), 422)
    refused(client.post("/tasks/batch", json={"tasks": [echo_task(title="B")]}, headers={**a, **key}), 422)
    assert snapshot(db) == before
    # run_now with B's key on B's task by A: 404, and the key is not taken.
    run_key = {"Idempotency-Key": "run-1"}
    ok(client.post(f"/tasks/{b_task['id']}/run_now", headers={**b, **run_key}), 202)
    refused(client.post(f"/tasks/{b_task['id']}/run_now", headers={**a, **run_key}), 404)
    ok(client.post(f"/tasks/{a_task['id']}/run_now", headers={**a, **run_key}), 202)


def test_a_batch_reusing_a_key_with_an_invalid_body_is_the_key_conflict(
    client: httpx.Client, a: dict[str, str]
) -> None:
    """The same key with a different (here invalid) batch: as POST /tasks answers, the key conflict."""
    key = {"Idempotency-Key": "batch-1"}
    ok(client.post("/tasks/batch", json={"tasks": [echo_task()]}, headers={**a, **key}), 201)
    single = client.post("/tasks", json=echo_task(priority=99), headers={**a, "Idempotency-Key": "one"})
    refused(single, 422)
    response = client.post("/tasks/batch", json={"tasks": [echo_task(priority=99)]}, headers={**a, **key})
    refused(response, 422)


@pytest.mark.parametrize("value", ["", "a b", "é", "x" * 256, "a\tb"])
def test_malformed_idempotency_keys_are_refused(
    client: httpx.Client, a: dict[str, str], value: str, db: Database
) -> None:
    response = client.post(
        "/events",
        json={"topic": "a.b"},
        headers={**a, "Idempotency-Key": value.encode()},  # type: ignore[dict-item]
    )
    client_error(response)
    assert scalar(db, "SELECT count(*) FROM event") == 0


# -- scopes and dead tokens -----------------------------------------------------------------------


def test_a_read_only_token_can_write_nothing(
    client: httpx.Client, make_token: TokenFactory, world_b: dict[str, Any], b: dict[str, str], db: Database
) -> None:
    reader = bearer(make_token("agent-b", "tasks:read", "runs:read", "webhooks:read", "availability:read"))
    w = world_b
    tid, rid, hid, did = w["task"]["id"], w["run"]["id"], w["hook"]["id"], w["delivery"]["id"]
    before = snapshot(db)
    attempts = {
        "POST /tasks": client.post("/tasks", json=echo_task(), headers=reader),
        "batch": client.post("/tasks/batch", json={"tasks": [echo_task()]}, headers=reader),
        "PATCH task": client.patch(f"/tasks/{tid}", json={"priority": 1}, headers=reader),
        "DELETE task": client.delete(f"/tasks/{tid}", headers=reader),
        "run_now": client.post(f"/tasks/{tid}/run_now", headers=reader),
        "pause": client.post(f"/tasks/{tid}/pause", headers=reader),
        "resume": client.post(f"/tasks/{tid}/resume", headers=reader),
        "cancel": client.post(f"/tasks/{tid}/cancel", headers=reader),
        "cancel run": client.post(f"/runs/{rid}/cancel", headers=reader),
        "retry run": client.post(f"/runs/{rid}/retry", headers=reader),
        "publish": client.post("/events", json={"topic": "a.b"}, headers=reader),
        "list events": client.get("/events", headers=reader),
        "POST webhook": client.post("/webhooks", json={"url": URL, "events": ["a"]}, headers=reader),
        "PATCH webhook": client.patch(f"/webhooks/{hid}", json={"state": "paused"}, headers=reader),
        "rotate": client.post(f"/webhooks/{hid}/rotate-secret", headers=reader),
        "redeliver": client.post(f"/webhooks/{hid}/deliveries/{did}/redeliver", headers=reader),
        "DELETE webhook": client.delete(f"/webhooks/{hid}", headers=reader),
        "import": client.post("/resources/import", json=PLANT, headers=reader),
        "PATCH resource": client.patch("/resources/P-01", json={"name": "x"}, headers=reader),
        "DELETE resource": client.delete("/resources/P-01", headers=reader),
        "PUT pattern": client.put(
            "/patterns/p", json={"kind": "weekly", "rules": PLANT["patterns"][0]["rules"]}, headers=reader
        ),
        "DELETE pattern": client.delete("/patterns/four_tens", headers=reader),
        "PUT calendar": client.put("/holiday-calendars/c", json={"country": "ZA"}, headers=reader),
        "DELETE calendar": client.delete("/holiday-calendars/za", headers=reader),
        "POST assignment": client.post(
            "/assignments",
            json={"resource": "P-01", "pattern": "24x7", "effective_from": "2026-01-01"},
            headers=reader,
        ),
        "PATCH assignment": client.patch(
            f"/assignments/{w['assignment']['id']}", json={"pattern": "24x7"}, headers=reader
        ),
        "DELETE assignment": client.delete(f"/assignments/{w['assignment']['id']}", headers=reader),
        "POST exception": client.post(
            "/exceptions",
            json={
                "resource": "P-01",
                "kind": "breakdown",
                "start": "2026-03-02T06:00",
                "end": "2026-03-02T07:00",
            },
            headers=reader,
        ),
        "PATCH exception": client.patch(
            f"/exceptions/{w['exception']['id']}", json={"description": "x"}, headers=reader
        ),
        "DELETE exception": client.delete(f"/exceptions/{w['exception']['id']}", headers=reader),
        "generate": client.post("/schedules/generate", json={"days": 1}, headers=reader),
        "POST agent": client.post("/agents", json={"name": "x"}, headers=reader),
        "audit": client.get("/audit", headers=reader),
        "status": client.get("/status", headers=reader),
    }
    wrong = {k: (r.status_code, r.text[:120]) for k, r in attempts.items() if r.status_code != 403}
    assert wrong == {}
    for r in attempts.values():
        assert refused(r, 403)["code"] == "SCOPE_MISSING"
    assert snapshot(db) == before


def test_revoked_deleted_and_expired_tokens_are_401(
    client: httpx.Client, admin: dict[str, str], db: Database, make_token: TokenFactory
) -> None:
    revoked = make_token("agent-r", *ALL)
    task = ok(client.post("/tasks", json=echo_task(), headers=bearer(revoked)), 201)
    agent_r = scalar(db, "SELECT id FROM agent WHERE name = 'agent-r'")
    token_id = scalar(db, "SELECT id FROM api_token WHERE agent_id = :a", a=agent_r)
    ok(client.delete(f"/agents/{agent_r}/tokens/{token_id}", headers=admin))
    deleted = make_token("agent-d", *ALL)
    ok(client.get("/tasks", headers=bearer(deleted)))  # cached
    agent_d = scalar(db, "SELECT id FROM agent WHERE name = 'agent-d'")
    ok(client.delete(f"/agents/{agent_d}", headers=admin))
    with db.tx() as conn:
        row = agents.ensure_agent(conn, "agent-e")
        _, expired = agents.create_token(
            conn, row["id"], list(ALL), expires_at=datetime.now(UTC) - timedelta(seconds=1)
        )
    for token in (revoked, deleted, expired):
        for response in (
            client.get("/tasks", headers=bearer(token)),
            client.get(f"/tasks/{task['id']}", headers=bearer(token)),
            client.post("/tasks", json=echo_task(), headers=bearer(token)),
            client.post("/events", json={"topic": "a.b"}, headers=bearer(token)),
            client.get("/agents/me", headers=bearer(token)),
        ):
            refused(response, 401)
    # A deleted agent cannot get a token back.
    refused(client.post(f"/agents/{agent_d}/tokens", json={"scopes": ["tasks:read"]}, headers=admin), 409)
    # Tokens of one agent cannot be revoked through another agent's address.
    live = make_token("agent-x", "tasks:read")
    live_id = scalar(
        db, "SELECT id FROM api_token WHERE agent_id = (SELECT id FROM agent WHERE name='agent-x')"
    )
    refused(client.delete(f"/agents/{agent_r}/tokens/{live_id}", headers=admin), 404)
    ok(client.get("/tasks", headers=bearer(live)))


def test_a_token_cannot_grant_itself_or_read_other_agents(
    client: httpx.Client, a: dict[str, str], db: Database
) -> None:
    me = ok(client.get("/agents/me", headers=a))
    for response in (
        client.get(f"/agents/{me['agent']['id']}", headers=a),
        client.post(f"/agents/{me['agent']['id']}/tokens", json={"scopes": ["admin"]}, headers=a),
        client.get("/agents", headers=a),
        client.delete(f"/agents/{me['agent']['id']}/tokens/{me['token_id']}", headers=a),
    ):
        refused(response, 403)


# -- events ---------------------------------------------------------------------------------------


def test_events_of_one_agent_reach_neither_the_others_tasks_nor_webhooks(
    client: httpx.Client, a: dict[str, str], b: dict[str, str], db: Database
) -> None:
    subscribed = ok(
        client.post(
            "/tasks",
            json=echo_task(title="on topic", schedule_kind="event", schedule_expr="shared.topic"),
            headers=b,
        ),
        201,
    )
    hook = ok(client.post("/webhooks", json={"url": URL, "events": ["shared.topic"]}, headers=b), 201)
    event = ok(client.post("/events", json={"topic": "shared.topic", "payload": {"p": 1}}, headers=a), 202)
    assert event["runs"] == []
    assert ok(client.get(f"/webhooks/{hook['id']}/deliveries", headers=b))["items"] == []
    assert scalar(db, "SELECT count(*) FROM due_work WHERE task_id = :t", t=subscribed["id"]) == 0
    assert ok(client.get("/events", headers=b))["items"] == []
    # Agents cannot publish system events.
    for topic in ("run.dead", "run.succeeded", "task.paused", "availability.changed"):
        client_error(client.post("/events", json={"topic": topic}, headers=a))


def test_a_webhook_notify_step_cannot_target_another_agents_endpoint(
    client: httpx.Client, a: dict[str, str], world_b: dict[str, Any]
) -> None:
    """A pipeline naming B's endpoint by id is refused when stored (or at least delivers nothing)."""
    doc = echo_task(
        payload={
            "pipeline": [
                {
                    "id": "n",
                    "uses": "webhook.notify",
                    "with": {"event": "plan.ready", "data": {}, "endpoint": world_b["hook"]["id"]},
                }
            ]
        }
    )
    response = client.post("/tasks", json=doc, headers=a)
    assert response.status_code in (201, 403, 422), response.text


# -- batches --------------------------------------------------------------------------------------


def test_a_batch_with_one_bad_item_stores_nothing(
    client: httpx.Client, a: dict[str, str], db: Database
) -> None:
    before = snapshot(db)
    bad_items = [
        echo_task(title="x\u0000"),
        {"title": "no kind"},
        "not an object",
        None,
        [],
        echo_task(
            payload={"pipeline": [{"id": "s", "uses": "http.request", "with": {"url": "https://x.y"}}]}
        ),
        echo_task(schedule_kind="once", schedule_expr="2026-01-01T00:00:00+23:59"),
        echo_task(concurrency_key="\u0000", concurrency_limit=1),
    ]
    for item in bad_items:
        response = client.post("/tasks/batch", json={"tasks": [echo_task(), item]}, headers=a)
        client_error(response)
    assert snapshot(db) == before
    refused(client.post("/tasks/batch", json={"tasks": []}, headers=a), 422)
    refused(client.post("/tasks/batch", json={"tasks": [echo_task()], "extra": 1}, headers=a), 422)
    refused(client.post("/tasks/batch", json=[echo_task()], headers=a), 422)


# -- bad input ------------------------------------------------------------------------------------


def test_bad_limits_are_422(client: httpx.Client, admin: dict[str, str]) -> None:
    limits = [
        "100000000000000000000",
        "-1",
        "0",
        "abc",
        "1e3",
        "1.5",
        "",
        "100000",
        "99999999999999999999999",
    ]
    for path in LISTINGS:
        for limit in limits:
            response = client.get(f"{path}?limit={limit}", headers=admin)
            assert response.status_code == 422, (path, limit, response.text)
            assert refused(response, 422)["code"] == "INVALID_REQUEST"


NUL_IN_PATHS_AND_QUERIES = [
    ("GET", "/resources/%00", None),
    ("GET", "/resources/a%00b", None),
    ("PATCH", "/resources/a%00b", None),
    ("DELETE", "/resources/a%00b", None),
    ("GET", "/patterns/a%00b", None),
    ("DELETE", "/patterns/a%00b", None),
    ("GET", "/holiday-calendars/a%00b", None),
    ("DELETE", "/holiday-calendars/a%00b", None),
    ("GET", "/holiday-calendars/a%00b/holidays", {"start": "2026-01-01", "end": "2026-01-02"}),
    ("GET", "/patterns/a%00b/preview", {"timezone": "UTC", "start": "2026-01-01"}),
    ("GET", "/patterns/24x7/preview", {"timezone": "U\u0000TC", "start": "2026-01-01"}),
    ("GET", "/patterns/24x7/preview", {"timezone": "UTC", "start": "2026-01-01", "holidays": "Z\u0000A"}),
    ("GET", "/patterns/dupont/preview", {"timezone": "UTC", "start": "2026-01-01", "crew": "A\u0000"}),
    ("GET", "/resources", {"under": "a\u0000"}),
    ("GET", "/assignments", {"resource": "a\u0000"}),
    ("GET", "/exceptions", {"resource": "a\u0000"}),
    ("GET", "/availability", {"resource_ids": "a\u0000", "start": "2026-01-01", "end": "2026-01-02"}),
    ("GET", "/availability/changes", {"since": "a\u0000"}),
    ("GET", "/webhooks/a%00b/deliveries", None),
    ("GET", "/tasks", {"text": "a\u0000"}),
    ("GET", "/runs", {"worker_id": "a\u0000"}),
    ("GET", "/audit", {"target_id": "a\u0000"}),
    ("GET", "/events", {"topic": "a\u0000"}),
    ("GET", "/tools/a%00b", None),
]


def test_nul_in_paths_and_queries_is_a_4xx(client: httpx.Client, admin: dict[str, str]) -> None:
    for method, path, params in NUL_IN_PATHS_AND_QUERIES:
        kwargs: dict[str, Any] = {"params": params, "headers": admin}
        if method == "PATCH":
            kwargs["json"] = {"name": "x"}
        client_error(client.request(method, path, **kwargs))


BAD_BODIES = [
    ("/webhooks", {"url": "https://mes.example.com/\u0000", "events": ["a.b"]}),
    ("/webhooks", {"url": "https://mes.exa\u0000mple.com/", "events": ["a.b"]}),
    ("/webhooks", {"url": URL, "events": ["a.b\u0000"]}),
    ("/webhooks", {"url": URL, "events": ["a.b"], "description": "d\u0000"}),
    ("/webhooks", {"url": URL, "events": ["a.b"], "secret": "whsec_\u0000"}),
    ("/events", {"topic": "a.b", "payload": {"k": "v\u0000"}}),
    ("/events", {"topic": "a.b", "payload": {"k\u0000": "v"}}),
    ("/events", {"topic": "a.b\u0000"}),
    ("/tasks", echo_task(title="t\u0000")),
    ("/tasks", echo_task(timezone="U\u0000TC")),
    ("/tasks", echo_task(schedule_kind="event", schedule_expr="a.b\u0000")),
    ("/tasks", echo_task(schedule_kind="once", schedule_expr="2026-01-01T00:00:00+23:59")),
    ("/tasks", echo_task(schedule_kind="once", schedule_expr="9999-12-31T23:59:59-14:00")),
    ("/tasks", echo_task(concurrency_key="k\u0000", concurrency_limit=1)),
    ("/schedules/preview", {"kind": "cron", "expr": "* * * * *", "timezone": "U\u0000TC"}),
    ("/schedules/generate", {"days": 1, "resource_ids": ["a\u0000"]}),
    ("/resources/import", {"resources": [{"code": "A\u0000", "level": "site"}]}),
    ("/resources/import", {"resources": [{"code": "A", "level": "site", "timezone": "U\u0000TC"}]}),
    ("/assignments", {"resource": "A\u0000", "pattern": "24x7", "effective_from": "2026-01-01"}),
    ("/agents", {"name": "a\u0000"}),
]


def test_nul_and_out_of_range_values_in_bodies_are_a_4xx(
    client: httpx.Client, admin: dict[str, str], db: Database
) -> None:
    ok(client.post("/resources/import", json={"resources": [{"code": "A", "level": "site"}]}, headers=admin))
    before = snapshot(db)
    for path, body in BAD_BODIES:
        client_error(client.post(path, json=body, headers=admin))
        assert snapshot(db) == before, (path, body)


def test_nul_in_a_csv_import_and_in_patches_is_a_4xx(
    client: httpx.Client, a: dict[str, str], db: Database
) -> None:
    ok(client.post("/resources/import", json={"resources": [{"code": "A", "level": "site"}]}, headers=a))
    hook = ok(client.post("/webhooks", json={"url": URL, "events": ["a.b"]}, headers=a), 201)
    task = ok(client.post("/tasks", json=echo_task(), headers=a), 201)
    before = snapshot(db)
    bad_csv = (
        b"code,level,name\nB,site,na\x00me\n",
        b"code,level\nB\x00,site\n",
        b"code,level,meta.k\nB,site,v\x00\n",
        b"code,level\nB,site\n\xff\n",
    )
    for response in (
        *(
            client.post("/resources/import", content=csv, headers={**a, "Content-Type": "text/csv"})
            for csv in bad_csv
        ),
        client.patch(f"/webhooks/{hook['id']}", json={"url": "https://mes.example.com/\u0000"}, headers=a),
        client.patch(f"/webhooks/{hook['id']}", json={"events": ["a\u0000"]}, headers=a),
        client.post(f"/webhooks/{hook['id']}/rotate-secret", json={"secret": "whsec_\u0000"}, headers=a),
        client.patch(f"/tasks/{task['id']}", json={"description": "d\u0000"}, headers=a),
        client.post(f"/tasks/{task['id']}/run_now", json={"params": {"x": "\u0000"}}, headers=a),
        client.patch("/resources/A", json={"name": "n\u0000"}, headers=a),
        client.patch("/resources/A", json={"metadata": {"k": "\u0000"}}, headers=a),
        client.put("/patterns/p%00", json={"kind": "weekly", "rules": []}, headers=a),
        client.put("/holiday-calendars/c", json={"country": "Z\u0000A"}, headers=a),
    ):
        client_error(response)
    assert snapshot(db) == before


@pytest.mark.parametrize(
    "params",
    [
        {"since": "2026-01-01T00:00:00+23:59"},
        {"until": "2026-01-01T00:00:00-23:59"},
        {"since": "0001-01-01T00:00:00+01:00"},
        {"until": "9999-12-31T23:59:59-14:00"},
    ],
)
def test_extreme_run_filter_instants_are_never_a_5xx(
    client: httpx.Client, a: dict[str, str], params: dict[str, str]
) -> None:
    response = client.get("/runs", params=params, headers=a)
    assert response.status_code in (200, 422), response.text


@pytest.mark.parametrize(
    "params",
    [
        {"since": "2026-13-01T00:00:00Z"},
        {"task_id": "not-a-uuid"},
        {"state": "scheduled"},
        {"state": "bogus"},
        {"stauts": "x"},
    ],
)
def test_bad_run_filters_are_a_4xx(client: httpx.Client, a: dict[str, str], params: dict[str, str]) -> None:
    client_error(client.get("/runs", params=params, headers=a))


@pytest.mark.parametrize(
    "since", ["2026-01-01T00:00:00+23:59", "0001-01-01T00:00:00+01:00", "9999999999999999999", "-1"]
)
def test_bad_availability_since_is_a_4xx(client: httpx.Client, a: dict[str, str], since: str) -> None:
    response = client.get("/availability/changes", params={"since": since}, headers=a)
    assert response.status_code < 500, response.text


UNREADABLE_BODIES = [
    ("text/plain", b'{"title": "x"}'),
    ("application/x-www-form-urlencoded", b"title=x"),
    ("multipart/form-data; boundary=x", b"--x--"),
    ("application/json", b'{"title": "a", "title": "b"'),
    ("application/json", b"\xff\xfe"),
    ("application/json", b"[" * 100_000),
    ("application/json", b'{"a": 1e999}'),
    ("application/json", b'{"a": NaN}'),
    ("application/json", b'{"a": ' + b"1" * 5000 + b"}"),
    ("application/json", b'"\\ud800"'),
    ("application/json", b'{"title": "\\ud800"}'),
]


def test_unreadable_bodies_are_a_4xx(client: httpx.Client, admin: dict[str, str]) -> None:
    for path in ("/tasks", "/tasks/batch", "/events", "/webhooks", "/resources/import"):
        for content_type, body in UNREADABLE_BODIES:
            client_error(client.post(path, content=body, headers={**admin, "Content-Type": content_type}))


def test_oversized_bodies_are_413_on_every_write(client: httpx.Client, admin: dict[str, str]) -> None:
    big = json.dumps({"title": "x" * (1_100_000)}).encode()
    for path in ("/tasks", "/tasks/batch", "/events", "/resources/import", "/webhooks", "/schedules/preview"):
        response = client.post(path, content=big, headers={**admin, "Content-Type": "application/json"})
        assert refused(response, 413)["code"] == "BODY_TOO_LARGE"


def test_duplicate_json_keys_do_not_slip_past_checks(client: httpx.Client, a: dict[str, str]) -> None:
    """A document with a key twice: JSON parsers keep the last; whatever is decided, it is one decision
    (the stored task reads back as validated)."""
    raw = (
        b'{"title": "first", "schedule_kind": "manual", "schedule_kind": "cron",'
        b' "schedule_expr": "0 25 * * *",'
        b' "payload": {"pipeline": [{"id": "s", "uses": "echo.message", "with": {"message": "m"}}]}}'
    )
    response = client.post("/tasks", content=raw, headers={**a, "Content-Type": "application/json"})
    assert response.status_code in (400, 422), response.text


def test_huge_query_strings_are_refused_cleanly(client: httpx.Client, a: dict[str, str]) -> None:
    for params in (
        {"text": "x" * 30_000},
        {"cursor": "x" * 30_000},
        {"task_id": "0" * 10_000},
    ):
        path = "/runs" if "task_id" in params else "/tasks"
        response = client.get(path, params=params, headers=a)
        assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])


def test_path_ids_out_of_range_are_a_4xx(client: httpx.Client, admin: dict[str, str]) -> None:
    for path in (
        "/runs/0",
        "/runs/-1",
        "/runs/9223372036854775808",
        "/runs/99999999999999999999999999",
        "/runs/1e3",
        "/tasks/not-a-uuid",
        "/tasks/00000000-0000-0000-0000-00000000000g",
        "/webhooks/00000000-0000-0000-0000-000000000000/deliveries/9223372036854775808",
        "/availability/generations/0",
        "/availability/generations/9223372036854775808",
        "/events/x",
    ):
        client_error(client.get(path, headers=admin))


# -- shared names at run time ---------------------------------------------------------------------


def _lease_keyed(db: Database, key: str, n: int = 10) -> list[dict[str, Any]]:
    """The worker's keyed lease pass for one concurrency key (workers/queries.sql)."""
    from store.sql import load_queries

    q = load_queries("workers", "queries.sql")
    leased: list[dict[str, Any]] = []
    with db.tx() as conn:
        for ready_key, agent_id in conn.execute(q["keys_ready"], {"now": None, "m": 100}).all():
            if ready_key != key:
                continue
            owned = {"key": key, "agent_id": agent_id}
            conn.execute(q["lock_key"], owned)
            params = {**owned, "n": n - len(leased), "now": None, "lease_s": 30, "worker_id": "probe"}
            leased += [dict(r) for r in conn.execute(q["lease_keyed"], params).mappings()]
    return leased


def test_a_concurrency_key_of_one_agent_does_not_throttle_another_agents_runs(
    client: httpx.Client, a: dict[str, str], b: dict[str, str], db: Database
) -> None:
    """Concurrency keys are names an agent picks for its own tasks. Agent A, choosing the same name
    as B with limit 1 and keeping one run busy, must not hold back B's runs (B allows 3 at once)."""
    a_task = ok(
        client.post("/tasks", json=echo_task(concurrency_key="press-7", concurrency_limit=1), headers=a), 201
    )
    b_task = ok(
        client.post("/tasks", json=echo_task(concurrency_key="press-7", concurrency_limit=3), headers=b), 201
    )
    ok(client.post(f"/tasks/{a_task['id']}/run_now", headers=a), 202)
    assert [str(r["task_id"]) for r in _lease_keyed(db, "press-7", n=1)] == [a_task["id"]]  # A's run runs
    for _ in range(3):
        ok(client.post(f"/tasks/{b_task['id']}/run_now", headers=b), 202)

    leased = _lease_keyed(db, "press-7")

    assert [str(r["task_id"]) for r in leased] == [b_task["id"]] * 3


def test_an_admin_listing_one_plants_subtree_gets_only_that_plant(
    client: httpx.Client, a: dict[str, str], b: dict[str, str], admin: dict[str, str]
) -> None:
    """GET /resources?under=<B's resource id> as an admin: B's subtree, not A's resources that happen
    to have the same codes (a path is only unique within a plant)."""
    ok(client.post("/resources/import", json=PLANT, headers=a))
    ok(client.post("/resources/import", json=PLANT, headers=b))
    b_jhb = next(r for r in ok(client.get("/resources", headers=b))["items"] if r["code"] == "JHB")
    listed = ok(client.get("/resources", params={"under": b_jhb["id"]}, headers=admin))["items"]
    b_agent = ok(client.get("/agents/me", headers=b))["agent"]["id"]
    assert {r["code"] for r in listed} == {"JHB", "P-01"}
    assert all(r.get("agent_id", b_agent) == b_agent for r in listed), listed
    assert len(listed) == 2


# -- dates at the edges of the calendar -----------------------------------------------------------


EDGE_DATES = [
    ("GET", "/holiday-calendars/za/holidays", {"start": "0001-01-01", "end": "0001-12-31"}, None),
    ("GET", "/holiday-calendars/za/holidays", {"start": "9999-01-01", "end": "9999-12-31"}, None),
    ("GET", "/patterns/24x7/preview", {"timezone": "UTC", "start": "9999-12-25", "days": "14"}, None),
    ("GET", "/patterns/24x7/preview", {"timezone": "Pacific/Kiritimati", "start": "9999-12-31"}, None),
    ("GET", "/patterns/24x7/preview", {"timezone": "Pacific/Niue", "start": "0001-01-01"}, None),
    (
        "GET",
        "/patterns/dupont/preview",
        {"timezone": "UTC", "start": "2026-01-01", "anchor": "0001-01-01"},
        None,
    ),
    (
        "GET",
        "/patterns/dupont/preview",
        {"timezone": "UTC", "start": "2026-01-01", "anchor": "9999-12-31"},
        None,
    ),
    ("GET", "/availability", {"start": "9999-12-30", "end": "9999-12-31"}, None),
    ("GET", "/availability", {"start": "0001-01-01", "end": "0001-01-02"}, None),
    ("GET", "/availability", {"start": "9999-12-30", "end": "9999-12-31", "format": "csv"}, None),
    ("POST", "/schedules/generate", None, {"start": "9999-12-30", "days": 5}),
    ("POST", "/schedules/generate", None, {"start": "0001-01-01", "end": "0001-01-02"}),
    (
        "POST",
        "/assignments",
        None,
        {"resource": "JHB", "pattern": "24x7", "effective_from": "9999-12-31"},
    ),
    (
        "POST",
        "/assignments",
        None,
        {"resource": "JHB", "pattern": "24x7", "effective_from": "0001-01-01"},
    ),
    (
        "POST",
        "/exceptions",
        None,
        {"resource": "P-01", "kind": "breakdown", "start": "9999-12-31T23:00", "end": "9999-12-31T23:59"},
    ),
    (
        "POST",
        "/exceptions",
        None,
        {"resource": "P-01", "kind": "breakdown", "start": "0001-01-01T00:00", "end": "0001-01-01T01:00"},
    ),
    (
        "POST",
        "/exceptions",
        None,
        {
            "resource": "P-01",
            "kind": "breakdown",
            "start": "2026-01-01T00:00",
            "end": "2026-01-01T01:00",
            "rrule": "FREQ=SECONDLY",
        },
    ),
    ("PUT", "/holiday-calendars/edge", None, {"country": "ZA", "dates": ["9999-12-31", "0001-01-01"]}),
    (
        "POST",
        "/schedules/preview",
        None,
        {
            "kind": "rrule",
            "expr": "FREQ=YEARLY",
            "dtstart": "9999-12-31T00:00:00",
            "timezone": "Pacific/Kiritimati",
        },
    ),
    (
        "POST",
        "/schedules/preview",
        None,
        {"kind": "cron", "expr": "0 0 31 12 *", "dtstart": "9999-12-31T23:00:00+00:00"},
    ),
    (
        "POST",
        "/tasks",
        None,
        echo_task(schedule_kind="rrule", schedule_expr="DTSTART:99991231T000000Z\nRRULE:FREQ=DAILY"),
    ),
]


def test_dates_at_the_edges_are_never_a_5xx(client: httpx.Client, make_token: TokenFactory) -> None:
    headers = bearer(make_token("edge", *ALL))
    ok(client.post("/resources/import", json=PLANT, headers=headers))
    for method, path, params, body in EDGE_DATES:
        response = client.request(method, path, params=params, json=body, headers=headers)
        assert response.status_code < 500, (
            method,
            path,
            params,
            body,
            response.status_code,
            response.text[:300],
        )
        if response.status_code >= 400:
            client_error(response)
