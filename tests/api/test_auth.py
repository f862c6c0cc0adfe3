"""Authentication, scopes, isolation between agents, tokens, the audit log, and `ordo token create`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from api import create_app
from api.bootstrap import ensure_admin_token
from store import agents
from store.db import Database
from store.settings import Settings
from tests.api.conftest import AGENT_SCOPES, TokenFactory, bearer, echo_task
from tests.helpers import REGISTRY, rows, run_ordo, scalar

# Every route and the scope it needs. test_the_scope_table_covers_every_route keeps this honest.
ROUTE_SCOPES: dict[tuple[str, str], str] = {
    ("POST", "/tasks"): "tasks:write",
    ("POST", "/tasks/batch"): "tasks:write",
    ("GET", "/tasks"): "tasks:read",
    ("GET", "/tasks/{task_id}"): "tasks:read",
    ("PATCH", "/tasks/{task_id}"): "tasks:write",
    ("DELETE", "/tasks/{task_id}"): "tasks:write",
    ("POST", "/tasks/{task_id}/run_now"): "tasks:write",
    ("POST", "/tasks/{task_id}/pause"): "tasks:write",
    ("POST", "/tasks/{task_id}/resume"): "tasks:write",
    ("POST", "/tasks/{task_id}/cancel"): "tasks:write",
    ("GET", "/tasks/{task_id}/preview"): "tasks:read",
    ("POST", "/schedules/preview"): "tasks:read",
    ("GET", "/runs"): "runs:read",
    ("GET", "/runs/upcoming"): "runs:read",
    ("GET", "/runs/{run_id}"): "runs:read",
    ("POST", "/runs/{run_id}/cancel"): "tasks:write",
    ("POST", "/runs/{run_id}/retry"): "tasks:write",
    ("POST", "/events"): "events:publish",
    ("GET", "/events"): "events:publish",
    ("GET", "/events/{event_id}"): "events:publish",
    ("POST", "/webhooks"): "webhooks:write",
    ("GET", "/webhooks"): "webhooks:read",
    ("GET", "/webhooks/{webhook_id}"): "webhooks:read",
    ("PATCH", "/webhooks/{webhook_id}"): "webhooks:write",
    ("DELETE", "/webhooks/{webhook_id}"): "webhooks:write",
    ("POST", "/webhooks/{webhook_id}/rotate-secret"): "webhooks:write",
    ("GET", "/webhooks/{webhook_id}/deliveries"): "webhooks:read",
    ("GET", "/webhooks/{webhook_id}/deliveries/{delivery_id}"): "webhooks:read",
    ("POST", "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"): "webhooks:write",
    ("POST", "/agents"): "admin",
    ("GET", "/agents"): "admin",
    ("GET", "/agents/{agent_id}"): "admin",
    ("DELETE", "/agents/{agent_id}"): "admin",
    ("POST", "/agents/{agent_id}/tokens"): "admin",
    ("DELETE", "/agents/{agent_id}/tokens/{token_id}"): "admin",
    ("GET", "/audit"): "admin",
    # The plant and its availability.
    ("POST", "/resources/import"): "availability:write",
    ("GET", "/resources"): "availability:read",
    ("GET", "/resources/hierarchy"): "availability:read",
    ("GET", "/resources/{ref}"): "availability:read",
    ("PATCH", "/resources/{ref}"): "availability:write",
    ("DELETE", "/resources/{ref}"): "availability:write",
    ("GET", "/patterns"): "availability:read",
    ("GET", "/patterns/{name}"): "availability:read",
    ("PUT", "/patterns/{name}"): "availability:write",
    ("DELETE", "/patterns/{name}"): "availability:write",
    ("GET", "/patterns/{name}/preview"): "availability:read",
    ("GET", "/holiday-calendars"): "availability:read",
    ("GET", "/holiday-calendars/{name}"): "availability:read",
    ("PUT", "/holiday-calendars/{name}"): "availability:write",
    ("DELETE", "/holiday-calendars/{name}"): "availability:write",
    ("GET", "/holiday-calendars/{name}/holidays"): "availability:read",
    ("GET", "/assignments"): "availability:read",
    ("POST", "/assignments"): "availability:write",
    ("PATCH", "/assignments/{assignment_id}"): "availability:write",
    ("DELETE", "/assignments/{assignment_id}"): "availability:write",
    ("GET", "/exceptions"): "availability:read",
    ("POST", "/exceptions"): "availability:write",
    ("PATCH", "/exceptions/{exception_id}"): "availability:write",
    ("DELETE", "/exceptions/{exception_id}"): "availability:write",
    ("GET", "/availability"): "availability:read",
    ("GET", "/availability/changes"): "availability:read",
    ("GET", "/availability/generations/{generation_id}"): "availability:read",
    ("GET", "/availability/generations/{generation_id}/changes"): "availability:read",
    ("POST", "/schedules/generate"): "availability:write",
    ("GET", "/status"): "admin",
}
# Any valid token may call these.
AUTHENTICATED_ONLY = {("GET", "/tools"), ("GET", "/tools/{address}"), ("GET", "/agents/me")}
PUBLIC = {("GET", "/health"), ("GET", "/health/ready"), ("GET", "/metrics")}

_BODIES = {
    "/tasks": echo_task(),
    "/tasks/batch": {"tasks": [echo_task()]},
    "/tasks/{task_id}": {"priority": 7},
    "/tasks/{task_id}/run_now": {"params": {}},
    "/schedules/preview": {"kind": "cron", "expr": "0 8 * * *"},
    "/events": {"topic": "orders.created", "payload": {}},
    "/webhooks": {"url": "https://mes.example.com/hook", "events": ["plan.ready"]},
    "/webhooks/{webhook_id}": {"description": "MES"},
    "/agents": {"name": "dave"},
    "/agents/{agent_id}/tokens": {"scopes": ["tasks:read"]},
    "/resources/import": {"resources": []},
    "/resources/{ref}": {"name": "x"},
    "/patterns/{name}": {"kind": "weekly", "rules": []},
    "/holiday-calendars/{name}": {"country": "ZA"},
    "/assignments": {},
    "/assignments/{assignment_id}": {},
    "/exceptions": {},
    "/exceptions/{exception_id}": {},
    "/schedules/generate": {"days": 1},
}


def _concrete(path: str) -> str:
    ids = {
        "{task_id}": uuid.uuid4(),
        "{event_id}": uuid.uuid4(),
        "{agent_id}": uuid.uuid4(),
        "{token_id}": uuid.uuid4(),
        "{webhook_id}": uuid.uuid4(),
    }
    for name, value in ids.items():
        path = path.replace(name, str(value))
    path = path.replace("{assignment_id}", str(uuid.uuid4())).replace("{exception_id}", str(uuid.uuid4()))
    path = path.replace("{ref}", "P-01").replace("{name}", "two_shift").replace("{generation_id}", "1")
    path = path.replace("{delivery_id}", "12345")
    return path.replace("{run_id}", "12345").replace("{address}", "echo.message")


def test_the_scope_table_covers_every_route(settings: Settings) -> None:
    """Every operation in the OpenAPI document is in exactly one of the tables above."""
    spec = create_app(settings, registry=REGISTRY).openapi()
    operations = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}

    assert operations == set(ROUTE_SCOPES) | AUTHENTICATED_ONLY | PUBLIC


def test_every_operation_documents_what_it_takes_to_call_it(settings: Settings) -> None:
    """The OpenAPI document names each operation's scope (x-required-scope and the description's first
    line), or says that any token, or none, will do."""
    spec = create_app(settings, registry=REGISTRY).openapi()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            key, first_line = (method.upper(), path), operation["description"].splitlines()[0]
            if key in ROUTE_SCOPES:
                assert operation["x-required-scope"] == ROUTE_SCOPES[key], key
                assert f"`{ROUTE_SCOPES[key]}`" in first_line, key
            elif key in AUTHENTICATED_ONLY:
                assert first_line == "**Scope:** none; any valid token.", key
            else:
                assert first_line == "**Authentication:** none.", key


@pytest.mark.parametrize(("method", "path"), sorted(ROUTE_SCOPES), ids=lambda v: str(v))
def test_a_token_without_the_route_scope_gets_403(
    client: httpx.Client, make_token: TokenFactory, method: str, path: str
) -> None:
    """Every route refuses (403 SCOPE_MISSING) a token holding every scope but the one it needs, and does
    not refuse the same request for a token that holds it."""
    scope = ROUTE_SCOPES[(method, path)]
    others = [s for s in (*AGENT_SCOPES, "admin") if s not in (scope, "admin")]
    lacking = bearer(make_token("erin", *others))
    holding = bearer(make_token("erin", scope))
    url, body = _concrete(path), _BODIES.get(path)

    refused = client.request(method, url, json=body, headers=lacking)
    allowed = client.request(method, url, json=body, headers=holding)

    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "SCOPE_MISSING"
    assert refused.json()["details"]["required_scope"] == scope
    assert allowed.status_code != 403, allowed.text


@pytest.mark.parametrize(
    ("method", "path"), sorted(AUTHENTICATED_ONLY | set(ROUTE_SCOPES)), ids=lambda v: str(v)
)
def test_every_route_needs_a_token(client: httpx.Client, method: str, path: str) -> None:
    """Without a bearer token every non-health route is 401 with WWW-Authenticate."""
    response = client.request(method, _concrete(path), json=_BODIES.get(path))

    assert response.status_code == 401, response.text
    assert response.json()["code"] == "UNAUTHORIZED"
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic YWxpY2U6c2VjcmV0",
        "Bearer",
        "Bearer not-a-token",
        "Bearer ordo_aaaaaaaaaaaa_" + "A" * 43,
        "Bearer ordo_ABCDEFGHIJKL_" + "A" * 43,
    ],
)
def test_malformed_or_unknown_tokens_get_401(client: httpx.Client, authorization: str) -> None:
    response = client.get("/tasks", headers={"Authorization": authorization})

    assert response.status_code == 401
    assert response.json()["code"] == "UNAUTHORIZED"


def test_a_right_prefix_with_a_wrong_secret_gets_401(client: httpx.Client, make_token: TokenFactory) -> None:
    """The public id alone is worthless: the secret must match its hash."""
    token = make_token("frank", "tasks:read")
    forged = token[:18] + ("B" if token[18] != "B" else "C") + token[19:]

    response = client.get("/tasks", headers=bearer(forged))

    assert response.status_code == 401
    assert client.get("/tasks", headers=bearer(token)).status_code == 200


def test_a_revoked_token_gets_401_from_the_next_request(
    client: httpx.Client, admin: dict[str, str], db: Database
) -> None:
    """Revoking through the API takes effect at once; other tokens of the agent keep working."""
    agent = client.post("/agents", json={"name": "grace"}, headers=admin).json()
    first = client.post(
        f"/agents/{agent['id']}/tokens", json={"scopes": ["tasks:read"]}, headers=admin
    ).json()
    second = client.post(
        f"/agents/{agent['id']}/tokens", json={"scopes": ["tasks:read"]}, headers=admin
    ).json()
    assert client.get("/tasks", headers=bearer(first["token"])).status_code == 200

    revoked = client.delete(f"/agents/{agent['id']}/tokens/{first['id']}", headers=admin)
    after = client.get("/tasks", headers=bearer(first["token"]))

    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert after.status_code == 401
    assert "revoked" in after.json()["message"]
    assert client.get("/tasks", headers=bearer(second["token"])).status_code == 200


def test_an_expired_token_gets_401(client: httpx.Client, db: Database) -> None:
    with db.tx() as conn:
        agent = agents.ensure_agent(conn, "heidi")
        _, token = agents.create_token(
            conn, agent["id"], ["tasks:read"], expires_at=datetime.now(UTC) - timedelta(seconds=1)
        )

    response = client.get("/tasks", headers=bearer(token))

    assert response.status_code == 401
    assert "expired" in response.json()["message"]


def test_tokens_are_stored_only_as_hashes_and_shown_once(
    client: httpx.Client, admin: dict[str, str], db: Database
) -> None:
    """The token appears in the creation response only; the database holds its SHA-256."""
    agent = client.post("/agents", json={"name": "ivan"}, headers=admin).json()

    created = client.post(
        f"/agents/{agent['id']}/tokens",
        json={"scopes": ["runs:read", "tasks:read"], "name": "ci"},
        headers=admin,
    ).json()
    listed = client.get(f"/agents/{agent['id']}", headers=admin).json()["tokens"]

    token = created["token"]
    stored = rows(db, "SELECT * FROM api_token WHERE id = :id", id=uuid.UUID(created["id"]))[0]
    assert bytes(stored["secret_hash"]) == hashlib.sha256(token.encode()).digest()
    assert token not in json.dumps({k: str(v) for k, v in stored.items()})
    assert listed == [{k: v for k, v in created.items() if k != "token"}]
    assert all("token" not in t for t in listed)
    assert token.startswith(created["prefix"] + "_")
    assert created["scopes"] == ["runs:read", "tasks:read"]


def test_unknown_scopes_are_refused(client: httpx.Client, admin: dict[str, str]) -> None:
    agent = client.post("/agents", json={"name": "judy"}, headers=admin).json()

    response = client.post(f"/agents/{agent['id']}/tokens", json={"scopes": ["task:write"]}, headers=admin)

    assert response.status_code == 422
    assert response.json()["code"] == "INVALID_SCOPE"
    assert response.json()["details"]["path"] == "scopes[0]"


def test_last_use_is_recorded_without_a_write_per_request(
    client: httpx.Client, make_token: TokenFactory, db: Database
) -> None:
    """last_used_at is set on first use and not rewritten by requests within the next minute."""
    token = make_token("kim", "tasks:read")
    assert scalar(db, "SELECT last_used_at FROM api_token") is None

    client.get("/tasks", headers=bearer(token))
    first = scalar(db, "SELECT last_used_at FROM api_token")
    client.get("/tasks", headers=bearer(token))
    second = scalar(db, "SELECT last_used_at FROM api_token")

    assert first is not None and second == first


def test_me_describes_the_caller(client: httpx.Client, make_token: TokenFactory) -> None:
    token = make_token("leo", "runs:read", "tasks:read")

    me = client.get("/agents/me", headers=bearer(token)).json()

    assert me["agent"]["name"] == "leo"
    assert me["scopes"] == ["runs:read", "tasks:read"] and me["admin"] is False


# -- isolation ------------------------------------------------------------------------------------


def test_another_agents_task_is_not_found(
    client: httpx.Client, alice: dict[str, str], bob: dict[str, str]
) -> None:
    """Bob gets 404 for every operation on Alice's task and her run, and sees none of her rows."""
    task = client.post("/tasks", json=echo_task(), headers=alice).json()
    run = client.post(f"/tasks/{task['id']}/run_now", headers=alice).json()
    tid, rid = task["id"], run["id"]

    attempts = [
        client.get(f"/tasks/{tid}", headers=bob),
        client.patch(f"/tasks/{tid}", json={"priority": 1}, headers=bob),
        client.post(f"/tasks/{tid}/run_now", headers=bob),
        client.post(f"/tasks/{tid}/pause", headers=bob),
        client.post(f"/tasks/{tid}/resume", headers=bob),
        client.post(f"/tasks/{tid}/cancel", headers=bob),
        client.get(f"/tasks/{tid}/preview", headers=bob),
        client.delete(f"/tasks/{tid}", headers=bob),
        client.get(f"/runs/{rid}", headers=bob),
        client.post(f"/runs/{rid}/cancel", headers=bob),
        client.get("/runs", params={"task_id": tid}, headers=bob),
    ]

    assert [r.status_code for r in attempts] == [404] * len(attempts)
    assert client.get("/tasks", headers=bob).json()["items"] == []
    assert client.get("/runs", headers=bob).json()["items"] == []
    after = client.get(f"/tasks/{tid}", headers=alice).json()
    assert after == task and client.get(f"/runs/{rid}", headers=alice).json()["state"] == "queued"


def test_an_admin_sees_and_manages_every_agents_tasks(
    client: httpx.Client, alice: dict[str, str], bob: dict[str, str], admin: dict[str, str]
) -> None:
    a = client.post("/tasks", json=echo_task(title="a"), headers=alice).json()
    b = client.post("/tasks", json=echo_task(title="b"), headers=bob).json()

    listed = {t["id"] for t in client.get("/tasks", headers=admin).json()["items"]}
    paused = client.post(f"/tasks/{a['id']}/pause", headers=admin)

    assert listed == {a["id"], b["id"]}
    assert paused.status_code == 200 and paused.json()["status"] == "paused"


# -- agents ---------------------------------------------------------------------------------------


def test_agent_lifecycle(client: httpx.Client, admin: dict[str, str]) -> None:
    """Create (409 on a taken name), list, show, and delete: tokens revoked, active tasks paused."""
    agent = client.post("/agents", json={"name": "mallory"}, headers=admin)
    duplicate = client.post("/agents", json={"name": "mallory"}, headers=admin)
    aid = agent.json()["id"]
    token = client.post(
        f"/agents/{aid}/tokens", json={"scopes": ["tasks:write", "tasks:read"]}, headers=admin
    ).json()
    task = client.post("/tasks", json=echo_task(), headers=bearer(token["token"])).json()

    deleted = client.delete(f"/agents/{aid}", headers=admin)

    assert agent.status_code == 201 and duplicate.status_code == 409
    assert "mallory" in [a["name"] for a in client.get("/agents", headers=admin).json()["items"]]
    assert deleted.status_code == 200 and deleted.json()["disabled_at"] is not None
    assert client.get("/tasks", headers=bearer(token["token"])).status_code == 401
    assert client.get(f"/tasks/{task['id']}", headers=admin).json()["status"] == "paused"
    assert (
        client.post(f"/agents/{aid}/tokens", json={"scopes": ["tasks:read"]}, headers=admin).status_code
        == 409
    )


def test_the_local_agent_and_the_caller_itself_cannot_be_deleted(
    client: httpx.Client, admin: dict[str, str]
) -> None:
    me = client.get("/agents/me", headers=admin).json()["agent"]["id"]

    local = client.delete("/agents/00000000-0000-0000-0000-000000000001", headers=admin)
    itself = client.delete(f"/agents/{me}", headers=admin)

    assert (local.status_code, itself.status_code) == (409, 409)


def test_invalid_agent_names_are_refused(client: httpx.Client, admin: dict[str, str]) -> None:
    response = client.post("/agents", json={"name": "no spaces please"}, headers=admin)

    assert response.status_code == 422
    assert response.json()["details"]["path"] == "name"


# -- audit ----------------------------------------------------------------------------------------


def test_every_write_is_in_the_audit_log(
    client: httpx.Client, alice: dict[str, str], admin: dict[str, str]
) -> None:
    """Writes record who (agent and token), what (action), on what, and when; reads record nothing."""
    me = client.get("/agents/me", headers=alice).json()
    task = client.post("/tasks", json=echo_task(), headers=alice).json()
    client.patch(f"/tasks/{task['id']}", json={"priority": 2}, headers=alice)
    run = client.post(f"/tasks/{task['id']}/run_now", headers=alice).json()
    client.post(f"/runs/{run['id']}/cancel", headers=alice)
    client.post(f"/tasks/{task['id']}/pause", headers=alice)
    client.post(f"/tasks/{task['id']}/resume", headers=alice)
    client.post(f"/tasks/{task['id']}/cancel", headers=alice)
    client.post("/events", json={"topic": "t"}, headers=alice)
    client.delete(f"/tasks/{task['id']}", headers=alice)
    client.get("/tasks", headers=alice)

    entries = client.get("/audit", params={"agent_id": me["agent"]["id"]}, headers=admin).json()["items"]

    assert [e["action"] for e in reversed(entries)] == [
        "task.create",
        "task.update",
        "task.run_now",
        "run.cancel",
        "task.pause",
        "task.resume",
        "task.cancel",
        "event.publish",
        "task.delete",
    ]
    assert {e["token_id"] for e in entries} == {me["token_id"]}
    assert entries[0]["target_id"] == task["id"] and entries[0]["at"]
    assert entries[-1]["target_id"] == task["id"] and entries[-1]["details"] == {"title": task["title"]}
    assert client.get("/audit", params={"action": "task.update"}, headers=admin).json()["items"][0][
        "details"
    ] == {"fields": ["priority"]}


# -- bootstrap and the CLI ------------------------------------------------------------------------


def test_the_first_admin_token_is_created_once(db: Database) -> None:
    first = ensure_admin_token(db)
    second = ensure_admin_token(db)

    assert first is not None and first.startswith("ordo_")
    assert second is None


def _ordo(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_ordo(*args, env={**os.environ, "DATABASE_URL": db_url})


def test_ordo_token_create_prints_a_working_token(client: httpx.Client, db_url: str) -> None:
    """`ordo token create --json` creates the agent and prints {"agent_id", "token"}; the token works."""
    result = _ordo(
        db_url, "token", "create", "--agent", "script-bot", "--scopes", "tasks:read,runs:read", "--json"
    )

    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    me = client.get("/agents/me", headers=bearer(printed["token"])).json()
    assert me["agent"]["id"] == printed["agent_id"] and me["agent"]["name"] == "script-bot"
    assert me["scopes"] == ["runs:read", "tasks:read"]
    assert client.post("/tasks", json=echo_task(), headers=bearer(printed["token"])).status_code == 403


def test_ordo_token_create_admin_and_plain_output(client: httpx.Client, db_url: str) -> None:
    result = _ordo(db_url, "token", "create", "--agent", "ops", "--admin")

    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert client.get("/agents", headers=bearer(token)).status_code == 200


def test_ordo_token_create_refuses_unknown_scopes(db_url: str) -> None:
    result = _ordo(db_url, "token", "create", "--agent", "x", "--scopes", "tasks:reed")

    assert result.returncode == 2
    assert "unknown scope 'tasks:reed'" in result.stderr
