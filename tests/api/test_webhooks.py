"""The webhooks API: registration and its refusals, isolation between agents, changes, secret rotation,
and events published over the API arriving signed at a real receiver, with the delivery log and
redelivery."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import httpx
import pytest

from api import create_app
from store.db import Database
from store.settings import Settings
from tests.api.conftest import TokenFactory, bearer, serving
from tests.helpers import REGISTRY, delivering, scalar, wait_for
from tests.webhook_receiver import Answer, receiving

HOOKS = ("webhooks:read", "webhooks:write", "events:publish")
URL = "https://mes.example.com/ordo"


@pytest.fixture
def carol(make_token: TokenFactory) -> dict[str, str]:
    return bearer(make_token("carol", *HOOKS))


@pytest.fixture
def dan(make_token: TokenFactory) -> dict[str, str]:
    return bearer(make_token("dan", *HOOKS))


@contextmanager
def api(db: Database, db_url: str, **settings: Any) -> Iterator[httpx.Client]:
    """The API with these settings, served for real."""
    app = create_app(
        Settings(database_url=db_url, api_rate_limit_per_min=1_000_000, **settings), db, registry=REGISTRY
    )
    with serving(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield client


def register(client: httpx.Client, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post("/webhooks", json={"url": URL, "events": ["plan.ready"], **body}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def test_registration_shows_the_secret_once(client: httpx.Client, carol: dict[str, str]) -> None:
    """201 with a generated whsec_ secret and a Location; reading it back never shows the secret."""
    response = client.post(
        "/webhooks",
        json={"url": URL, "events": ["plan.ready", "run.dead"], "description": "MES"},
        headers=carol,
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert (
        created["secret"].startswith("whsec_")
        and response.headers["location"] == f"/webhooks/{created['id']}"
    )
    assert created["state"] == "active" and created["breaker"]["state"] == "closed"
    shown = client.get(f"/webhooks/{created['id']}", headers=carol).json()
    listed = client.get("/webhooks", headers=carol).json()["items"]
    assert "secret" not in shown and all("secret" not in item for item in listed)
    assert shown == {k: v for k, v in created.items() if k != "secret"}
    assert [item["id"] for item in listed] == [created["id"]]


def test_a_given_secret_is_kept(client: httpx.Client, carol: dict[str, str]) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert register(client, carol, secret=secret)["secret"] == secret


@pytest.mark.parametrize(
    ("body", "path", "code"),
    [
        ({"url": "ftp://mes.example.com/x"}, "url", "INVALID_WEBHOOK"),
        ({"url": "mes.example.com/x"}, "url", "INVALID_WEBHOOK"),
        ({"url": "https://mes.example.com:99999/x"}, "url", "INVALID_WEBHOOK"),  # accepted once, failed later
        ({"url": "https://mes.example.com:0/x"}, "url", "INVALID_WEBHOOK"),
        ({"url": "http://127.0.0.1:9000/hook"}, "url", "WEBHOOK_URL_REFUSED"),
        ({"url": "http://2130706433/hook"}, "url", "WEBHOOK_URL_REFUSED"),
        ({"url": "http://0x7f000001/hook"}, "url", "WEBHOOK_URL_REFUSED"),
        ({"url": "http://[::1]/hook"}, "url", "WEBHOOK_URL_REFUSED"),
        ({"url": "http://[::ffff:127.0.0.1]/hook"}, "url", "WEBHOOK_URL_REFUSED"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, "url", "WEBHOOK_URL_REFUSED"),
        ({"url": "http://10.1.2.3/hook"}, "url", "WEBHOOK_URL_REFUSED"),
        ({"url": "http://0.0.0.0/hook"}, "url", "WEBHOOK_URL_REFUSED"),
        ({"events": []}, "events", "INVALID_WEBHOOK"),
        ({"events": ["plan ready"]}, "events[0]", "INVALID_WEBHOOK"),
        ({"secret": "hunter2"}, "secret", "INVALID_WEBHOOK"),
        ({"secret": "whsec_c2hvcnQ="}, "secret", "INVALID_WEBHOOK"),
        ({"colour": "red"}, "colour", "INVALID_REQUEST"),
        ({"events": "plan.ready"}, "events", "INVALID_REQUEST"),
    ],
)
def test_bad_registrations_are_refused_naming_the_field_and_store_nothing(
    client: httpx.Client, carol: dict[str, str], db: Database, body: dict[str, Any], path: str, code: str
) -> None:
    response = client.post("/webhooks", json={"url": URL, "events": ["plan.ready"], **body}, headers=carol)

    assert response.status_code == 422, response.text
    assert response.json()["code"] == code
    assert response.json()["details"]["path"] == path
    assert scalar(db, "SELECT count(*) FROM webhook_endpoint") == 0


def test_https_can_be_required(db: Database, db_url: str, carol: dict[str, str]) -> None:
    with api(db, db_url, webhook_require_https=True) as client:
        refused = client.post(
            "/webhooks", json={"url": "http://mes.example.com/x", "events": ["a"]}, headers=carol
        )
        assert refused.status_code == 422 and "https" in refused.json()["message"]
        assert client.post("/webhooks", json={"url": URL, "events": ["a"]}, headers=carol).status_code == 201


def test_the_outbound_allow_list_opens_exactly_what_it_names(
    db: Database, db_url: str, carol: dict[str, str]
) -> None:
    with api(db, db_url, outbound_allow="127.0.0.1:9000") as client:
        ok = client.post("/webhooks", json={"url": "http://127.0.0.1:9000/h", "events": ["a"]}, headers=carol)
        other = client.post(
            "/webhooks", json={"url": "http://127.0.0.1:9001/h", "events": ["a"]}, headers=carol
        )
    assert ok.status_code == 201
    assert other.status_code == 422 and other.json()["details"]["category"] == "loopback"


def test_an_agent_sees_only_its_own_endpoints_and_admins_see_all(
    client: httpx.Client, carol: dict[str, str], dan: dict[str, str], admin_token: str
) -> None:
    mine = register(client, carol)
    theirs = register(client, dan)
    for method, suffix in [
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("POST", "/rotate-secret"),
        ("GET", "/deliveries"),
    ]:
        body = {"description": "x"} if method == "PATCH" else None
        response = client.request(method, f"/webhooks/{theirs['id']}{suffix}", json=body, headers=carol)
        assert response.status_code == 404, (method, suffix, response.text)
    assert [w["id"] for w in client.get("/webhooks", headers=carol).json()["items"]] == [mine["id"]]
    everyone = client.get("/webhooks", headers=bearer(admin_token)).json()["items"]
    assert {w["id"] for w in everyone} == {mine["id"], theirs["id"]}


def test_pause_resume_and_changes(client: httpx.Client, carol: dict[str, str]) -> None:
    hook = register(client, carol)
    paused = client.patch(f"/webhooks/{hook['id']}", json={"state": "paused"}, headers=carol).json()
    assert (paused["state"], paused["paused_reason"]) == ("paused", "owner")
    changed = client.patch(
        f"/webhooks/{hook['id']}",
        json={"state": "active", "events": ["run.dead", "run.dead", "plan.ready"], "url": URL + "/v2"},
        headers=carol,
    ).json()
    assert (changed["state"], changed["events"], changed["url"]) == (
        "active",
        ["run.dead", "plan.ready"],
        URL + "/v2",
    )
    refused = client.patch(f"/webhooks/{hook['id']}", json={"url": "http://10.0.0.1/x"}, headers=carol)
    assert refused.status_code == 422 and refused.json()["details"]["path"] == "url"
    empty = client.patch(f"/webhooks/{hook['id']}", json={}, headers=carol)
    assert empty.status_code == 422
    assert client.delete(f"/webhooks/{hook['id']}", headers=carol).status_code == 204
    assert client.get(f"/webhooks/{hook['id']}", headers=carol).status_code == 404


def test_rotating_the_secret_keeps_the_old_one_for_the_overlap(
    client: httpx.Client, carol: dict[str, str]
) -> None:
    hook = register(client, carol)
    rotated = client.post(f"/webhooks/{hook['id']}/rotate-secret", headers=carol)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret"] != hook["secret"]
    assert rotated.json()["previous_secret_expires_at"] is not None
    at_once = client.post(
        f"/webhooks/{hook['id']}/rotate-secret", json={"overlap_s": 0}, headers=carol
    ).json()
    assert at_once["previous_secret_expires_at"] is None
    bad = client.post(f"/webhooks/{hook['id']}/rotate-secret", json={"secret": "nope"}, headers=carol)
    assert bad.status_code == 422 and bad.json()["details"]["path"] == "secret"


def test_system_topics_cannot_be_published(client: httpx.Client, carol: dict[str, str]) -> None:
    response = client.post("/events", json={"topic": "run.dead", "payload": {}}, headers=carol)
    assert response.status_code == 422 and response.json()["code"] == "RESERVED_TOPIC"


def test_a_published_event_arrives_signed_and_can_be_redelivered(
    db: Database, db_url: str, carol: dict[str, str]
) -> None:
    """POST /events reaches the publisher's subscribed endpoint (webhook-id = msg_<event id>), verified
    by the reference library; the delivery log shows the attempt; a redelivery arrives with the same id;
    a delivery still waiting cannot be redelivered (409)."""
    with receiving() as receiver, api(db, db_url, outbound_allow=receiver.url.split("/")[2]) as client:
        hook = register(client, carol, url=receiver.url, events=["orders.created"])
        receiver.secrets = [hook["secret"]]
        published = client.post(
            "/events", json={"topic": "orders.created", "payload": {"order": 7}}, headers=carol
        )
        assert published.json()["webhook_deliveries"] == 1
        event_id = UUID(published.json()["id"])
        with delivering(db):
            receiver.wait_for(lambda r: len(r.accepted()) == 1)
            log = wait_for(lambda: _succeeded(client, hook["id"], carol), what="delivery recorded")
            assert log["webhook_id"] == f"msg_{event_id.hex}" and log["data"] == {"order": 7}
            assert log["attempt_log"][0]["status_code"] == 200
            again = client.post(f"/webhooks/{hook['id']}/deliveries/{log['id']}/redeliver", headers=carol)
            assert again.status_code == 202, again.text
            receiver.wait_for(lambda r: len(r.accepted()) == 2)
        assert {r.webhook_id for r in receiver.received} == {f"msg_{event_id.hex}"}
        assert receiver.received[0].payload["data"] == {"order": 7}

        receiver.answer(Answer(400))
        client.post("/events", json={"topic": "orders.created", "payload": {"order": 8}}, headers=carol)
        newest = client.get(f"/webhooks/{hook['id']}/deliveries", headers=carol).json()["items"][0]
        conflict = client.post(f"/webhooks/{hook['id']}/deliveries/{newest['id']}/redeliver", headers=carol)
        assert conflict.status_code == 409 and conflict.json()["details"]["state"] == "pending"
        assert (
            client.get(f"/webhooks/{hook['id']}/deliveries?state=pending", headers=carol).json()["items"][0][
                "id"
            ]
            == newest["id"]
        )
        assert client.get(f"/webhooks/{hook['id']}/deliveries?state=lost", headers=carol).status_code == 422
        assert client.get(f"/webhooks/{hook['id']}/deliveries/999999", headers=carol).status_code == 404


def _succeeded(client: httpx.Client, hook_id: str, headers: dict[str, str]) -> dict[str, Any] | None:
    items = client.get(f"/webhooks/{hook_id}/deliveries", headers=headers).json()["items"]
    return items[0] if items and items[0]["state"] == "succeeded" else None


def test_events_nobody_subscribes_to_write_no_webhook_rows(
    client: httpx.Client, carol: dict[str, str], db: Database
) -> None:
    register(client, carol, events=["plan.ready"])
    published = client.post("/events", json={"topic": "orders.created", "payload": {}}, headers=carol).json()
    assert published["webhook_deliveries"] == 0
    assert scalar(db, "SELECT count(*) FROM webhook_message") == 0
