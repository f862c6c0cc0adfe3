"""Events: publishing runs every subscribed active task once, with the event in its context."""

from __future__ import annotations

import httpx

from store.db import Database
from tests.api.conftest import echo_task
from tests.helpers import running_worker, scalar, wait_for


def _subscribe(client: httpx.Client, headers: dict[str, str], topic: str, **fields: object) -> dict:
    response = client.post(
        "/tasks", json=echo_task(schedule_kind="event", schedule_expr=topic, **fields), headers=headers
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_publishing_runs_each_active_subscriber_once(client: httpx.Client, alice: dict[str, str]) -> None:
    """Active tasks subscribed to the topic get one run each; paused ones and other topics get none."""
    one = _subscribe(client, alice, "orders.created", title="one")
    two = _subscribe(client, alice, "orders.created", title="two")
    paused = _subscribe(client, alice, "orders.created", title="paused", status="paused")
    _subscribe(client, alice, "orders.shipped", title="other topic")

    response = client.post(
        "/events", json={"topic": "orders.created", "payload": {"order_id": 7}}, headers=alice
    )

    assert response.status_code == 202, response.text
    event = response.json()
    assert event["matched_tasks"] == 2 and event["payload"] == {"order_id": 7}
    assert sorted(r["task_id"] for r in event["runs"]) == sorted([one["id"], two["id"]])
    runs = client.get("/runs", headers=alice).json()["items"]
    assert {r["task_id"] for r in runs} == {one["id"], two["id"]}
    assert {r["origin"] for r in runs} == {"event"} and {r["event_id"] for r in runs} == {event["id"]}
    assert paused["id"] not in {r["task_id"] for r in runs}


def test_the_same_idempotency_key_triggers_once(
    client: httpx.Client, alice: dict[str, str], db: Database
) -> None:
    """Publishing the same event twice with one Idempotency-Key records one event and one run per
    subscriber; a new key is a new event."""
    _subscribe(client, alice, "sensor.alarm")
    body = {"topic": "sensor.alarm", "payload": {"level": 3}}

    first = client.post("/events", json=body, headers={**alice, "Idempotency-Key": "alarm-1"})
    retry = client.post("/events", json=body, headers={**alice, "Idempotency-Key": "alarm-1"})
    other = client.post("/events", json=body, headers={**alice, "Idempotency-Key": "alarm-2"})

    assert first.status_code == retry.status_code == 202
    assert retry.json() == first.json() and retry.headers["idempotent-replayed"] == "true"
    assert other.json()["id"] != first.json()["id"]
    assert scalar(db, "SELECT count(*) FROM event") == 2
    assert scalar(db, "SELECT count(*) FROM due_work WHERE origin = 'event'") == 2


def test_the_run_sees_the_event_payload(client: httpx.Client, alice: dict[str, str], db: Database) -> None:
    """${event.payload...} in the pipeline reads the published payload."""
    task = _subscribe(client, alice, "orders.created")
    client.patch(
        f"/tasks/{task['id']}",
        json={
            "payload": {
                "pipeline": [
                    {
                        "id": "say",
                        "uses": "echo.message",
                        "with": {"message": "order ${event.payload.order_id} from ${event.topic}"},
                    }
                ]
            }
        },
        headers=alice,
    )

    with running_worker(db):
        event = client.post(
            "/events", json={"topic": "orders.created", "payload": {"order_id": 42}}, headers=alice
        ).json()
        run_id = event["runs"][0]["run_id"]
        run = wait_for(
            lambda: (r := client.get(f"/runs/{run_id}", headers=alice).json())["state"] == "succeeded" and r,
            what="the event's run to succeed",
        )

    assert run["steps"][0]["output"] == {"message": "order 42 from orders.created"}


def test_an_agents_event_does_not_reach_another_agents_tasks(
    client: httpx.Client, alice: dict[str, str], bob: dict[str, str], admin: dict[str, str]
) -> None:
    """An agent's event triggers only its own subscribers; an admin's event reaches every agent's."""
    mine = _subscribe(client, alice, "shared.topic")
    theirs = _subscribe(client, bob, "shared.topic")

    from_bob = client.post("/events", json={"topic": "shared.topic"}, headers=bob).json()
    from_admin = client.post("/events", json={"topic": "shared.topic"}, headers=admin).json()

    assert [r["task_id"] for r in from_bob["runs"]] == [theirs["id"]]
    assert sorted(r["task_id"] for r in from_admin["runs"]) == sorted([mine["id"], theirs["id"]])


def test_events_are_listed_newest_first_and_shown_with_their_runs(
    client: httpx.Client, alice: dict[str, str], bob: dict[str, str]
) -> None:
    task = _subscribe(client, alice, "a.b")
    first = client.post("/events", json={"topic": "a.b"}, headers=alice).json()
    second = client.post("/events", json={"topic": "c.d", "payload": [1, 2]}, headers=alice).json()
    client.post("/events", json={"topic": "a.b"}, headers=bob)

    listed = client.get("/events", headers=alice).json()["items"]
    filtered = client.get("/events", params={"topic": "a.b"}, headers=alice).json()["items"]
    shown = client.get(f"/events/{first['id']}", headers=alice).json()

    assert [e["id"] for e in listed] == [second["id"], first["id"]]
    assert [e["id"] for e in filtered] == [first["id"]]
    assert [r["task_id"] for r in shown["runs"]] == [task["id"]]
    assert client.get(f"/events/{first['id']}", headers=bob).status_code == 404


def test_an_invalid_topic_is_refused(client: httpx.Client, alice: dict[str, str]) -> None:
    response = client.post("/events", json={"topic": "-starts with a dash"}, headers=alice)

    assert response.status_code == 422
    assert response.json()["details"]["path"] == "topic"
