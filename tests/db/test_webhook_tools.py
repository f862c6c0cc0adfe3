"""webhook.notify and event.publish as pipeline steps in a real worker: they act for the task's owner,
reach the receiver signed, and a run retried after them announces nothing twice."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from engine import Tool, ToolRegistry
from engine.tools import plant
from engine.webhook_signing import new_secret
from scheduler import task_document
from store import agents, webhooks
from store import events as store_events
from store import runs as store_runs
from store import tasks as store_tasks
from store.db import Database
from store.errors import InvalidWebhook, ToolError
from store.tasks import LOCAL_AGENT_ID
from tests.helpers import REGISTRY, add_task, running_worker, scalar, wait_for
from tests.webhook_receiver import Receiver, receiving


def _fails_on_first_attempt(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    if ctx.run["attempt"] == 1:
        raise ToolError("first attempt fails", code="FLAKY")
    return {"attempt": ctx.run["attempt"]}


FLAKY = Tool(
    address="test.flaky",
    description="fails on a run's first attempt, succeeds after",
    input_schema={"type": "object"},
    output_schema={"type": "object"},
    timeout_s=5,
    scopes=(),
    runs={"kind": "python", "callable": "tests:none"},
    func=_fails_on_first_attempt,
    input_validator=Draft202012Validator({"type": "object"}),
    output_validator=Draft202012Validator({"type": "object"}),
)
WITH_FLAKY = ToolRegistry([*REGISTRY.values(), FLAKY])


@pytest.fixture
def receiver() -> Any:
    with receiving() as r:
        yield r


def hook(
    db: Database, receiver: Receiver, events: list[str], agent_id: Any = LOCAL_AGENT_ID
) -> dict[str, Any]:
    secret = new_secret()
    receiver.secrets.append(secret)
    with db.tx() as conn:
        return webhooks.create(conn, agent_id, url=receiver.url, events=events, description="", secret=secret)


def run(
    db: Database, steps: list[dict[str, Any]], registry: ToolRegistry = REGISTRY, **fields: Any
) -> dict[str, Any]:
    doc = {
        "title": "t",
        "schedule_kind": "manual",
        "payload": {"params": {"makespan": 55}, "pipeline": steps},
        "max_retries": 2,
        **fields,
    }
    with db.tx() as conn:
        task = store_tasks.create(
            conn, task_document.validate(doc, registry, now=datetime.now(UTC)), LOCAL_AGENT_ID
        )
    with db.tx() as conn:
        (run_id,) = store_runs.enqueue(conn, task["id"])
    with running_worker(db, registry):  # the worker delivers webhooks too
        wait_for(
            lambda: scalar(db, "SELECT 1 FROM task_run WHERE run_id = :id AND final", id=run_id), what="run"
        )
        wait_for(lambda: not _waiting_deliveries(db), what="deliveries")
    with db.tx() as conn:
        return store_runs.get(conn, run_id)


def _waiting_deliveries(db: Database) -> int:
    return scalar(db, "SELECT count(*) FROM webhook_delivery WHERE state NOT IN ('succeeded', 'dead')")


def test_notify_sends_the_owner_a_signed_plan_ready(db: Database, receiver: Receiver) -> None:
    hook(db, receiver, ["plan.ready"])
    done = run(
        db,
        [
            {
                "id": "tell",
                "uses": "webhook.notify",
                "with": {"event": "plan.ready", "data": {"makespan": "${params.makespan}"}},
            }
        ],
    )
    assert done["state"] == "succeeded", done
    output = done["steps"][0]["output"]
    receiver.wait_for(lambda r: len(r.accepted()) == 1)
    got = receiver.accepted()[0]
    assert got.webhook_id == output["webhook_id"] and len(output["deliveries"]) == 1
    assert got.payload["type"] == "plan.ready" and got.payload["data"] == {"makespan": 55}


def test_notify_with_no_subscriber_sends_nothing_and_succeeds(db: Database) -> None:
    done = run(db, [{"id": "tell", "uses": "webhook.notify", "with": {"event": "plan.ready"}}])
    assert done["state"] == "succeeded"
    assert done["steps"][0]["output"] == {"event": "plan.ready", "webhook_id": None, "deliveries": []}
    assert scalar(db, "SELECT count(*) FROM webhook_message") == 0


def test_notify_to_a_named_endpoint_ignores_its_subscriptions(db: Database, receiver: Receiver) -> None:
    endpoint = hook(db, receiver, ["something.else"])
    done = run(
        db,
        [
            {
                "id": "tell",
                "uses": "webhook.notify",
                "with": {"event": "plan.ready", "endpoint": str(endpoint["id"])},
            }
        ],
    )
    assert done["state"] == "succeeded"
    receiver.wait_for(lambda r: len(r.accepted()) == 1)


def test_notify_cannot_reach_another_agents_endpoint(db: Database, receiver: Receiver) -> None:
    with db.tx() as conn:
        other = agents.ensure_agent(conn, "mallory")
    endpoint = hook(db, receiver, ["plan.ready"], agent_id=other["id"])
    done = run(
        db,
        [
            {
                "id": "tell",
                "uses": "webhook.notify",
                "with": {"event": "plan.ready", "endpoint": str(endpoint["id"])},
            }
        ],
    )
    assert done["state"] == "dead" and done["error"]["code"] == "NOT_FOUND"
    assert scalar(db, "SELECT count(*) FROM webhook_delivery") == 0


def test_notify_refuses_system_topics(db: Database) -> None:
    done = run(db, [{"id": "tell", "uses": "webhook.notify", "with": {"event": "run.dead"}}])
    assert done["state"] == "dead" and done["error"]["code"] == "RESERVED_TOPIC"


def test_a_run_retried_after_notify_sends_once(db: Database, receiver: Receiver) -> None:
    """notify, then a step that fails on the first attempt: the retry succeeds without a second
    message (same delivery, same webhook-id)."""
    hook(db, receiver, ["plan.ready"])
    steps = [
        {
            "id": "tell",
            "uses": "webhook.notify",
            "with": {"event": "plan.ready", "data": {"n": "${run.attempt}"}},
        },
        {"id": "flaky", "uses": "test.flaky", "with": {}},
    ]
    done = run(db, steps, WITH_FLAKY, backoff={"base_s": 0.05, "cap_s": 0.05, "jitter": 0})
    assert done["state"] == "succeeded" and done["attempt"] == 2
    assert scalar(db, "SELECT count(*) FROM webhook_delivery") == 1
    first = done["attempts"][0]["steps"][0]["output"]
    assert done["steps"][0]["output"] == first
    receiver.wait_for(lambda r: len(r.accepted()) == 1)
    assert receiver.accepted()[0].payload["data"] == {"n": 1}


def test_event_publish_triggers_the_owners_tasks_and_webhooks_once(db: Database, receiver: Receiver) -> None:
    """An event.publish step starts the owner's event task on the topic and reaches its subscribed
    webhook; retried after it, the run publishes nothing more."""
    hook(db, receiver, ["orders.created"])
    listener = add_task(db, schedule_kind="event", schedule_expr="orders.created")
    steps = [
        {"id": "pub", "uses": "event.publish", "with": {"topic": "orders.created", "payload": {"order": 7}}},
        {"id": "flaky", "uses": "test.flaky", "with": {}},
    ]
    done = run(db, steps, WITH_FLAKY, backoff={"base_s": 0.05, "cap_s": 0.05, "jitter": 0})
    assert done["state"] == "succeeded" and done["attempt"] == 2
    published = done["steps"][0]["output"]
    assert published["webhook_deliveries"] == 1 and len(published["runs"]) == 1
    assert scalar(db, "SELECT count(*) FROM event") == 1
    assert scalar(db, "SELECT count(*) FROM task_run WHERE task_id = :t AND final", t=listener["id"]) == 1
    receiver.wait_for(lambda r: len(r.accepted()) == 1)
    assert receiver.accepted()[0].payload["data"] == {"order": 7}


def test_run_events_reach_the_owners_subscribed_endpoints(db: Database, receiver: Receiver) -> None:
    """A run that fails once then succeeds announces run.failed then run.succeeded to the owner's
    endpoint subscribed to both; another agent's endpoint hears nothing."""
    hook(db, receiver, ["run.succeeded", "run.failed", "run.dead"])
    with db.tx() as conn:
        other = agents.ensure_agent(conn, "mallory")
    with receiving() as elsewhere:
        hook(db, elsewhere, ["run.succeeded", "run.failed"], agent_id=other["id"])
        done = run(
            db,
            [{"id": "flaky", "uses": "test.flaky", "with": {}}],
            WITH_FLAKY,
            backoff={"base_s": 0.05, "cap_s": 0.05, "jitter": 0},
        )
        receiver.wait_for(lambda r: len(r.accepted()) == 2)
        assert elsewhere.received == []
    assert done["state"] == "succeeded"
    got = sorted((r.payload for r in receiver.accepted()), key=lambda p: p["data"]["attempt"])
    assert [(p["type"], p["data"]["attempt"]) for p in got] == [("run.failed", 1), ("run.succeeded", 2)]
    assert got[0]["data"]["run_id"] == done["id"] and got[0]["data"]["error"]["code"] == "FLAKY"
    assert got[1]["data"]["task_title"] == "t" and got[1]["data"]["error"] is None


def test_run_dead_is_announced(db: Database, receiver: Receiver) -> None:
    hook(db, receiver, ["run.dead"])
    done = run(db, [{"id": "tell", "uses": "webhook.notify", "with": {"event": "run.dead"}}])
    assert done["state"] == "dead"
    receiver.wait_for(lambda r: len(r.accepted()) == 1)
    assert receiver.accepted()[0].payload["data"]["error"]["code"] == "RESERVED_TOPIC"


def test_no_run_event_is_written_while_nobody_subscribes_to_them(db: Database, receiver: Receiver) -> None:
    hook(db, receiver, ["plan.ready"])
    assert run(db, [{"id": "say", "uses": "echo.message", "with": {"message": "hi"}}])["state"] == "succeeded"
    assert scalar(db, "SELECT count(*) FROM webhook_message") == 0


def test_pausing_a_task_announces_task_paused(db: Database, receiver: Receiver) -> None:
    hook(db, receiver, ["task.paused"])
    task = add_task(db, schedule_kind="cron", schedule_expr="0 6 * * *")
    with db.tx() as conn:
        store_tasks.pause(conn, task["id"])
        store_tasks.pause(conn, task["id"])  # already paused: nothing more
    with running_worker(db):
        receiver.wait_for(lambda r: len(r.accepted()) == 1)
        wait_for(lambda: not _waiting_deliveries(db), what="delivery recorded")
    payload = receiver.accepted()[0].payload
    assert payload["type"] == "task.paused" and payload["data"]["task_id"] == str(task["id"])
    assert scalar(db, "SELECT count(*) FROM webhook_message") == 1


def test_a_task_ordo_pauses_is_announced_once_with_the_reason_and_recorded_as_an_event(
    db: Database, receiver: Receiver
) -> None:
    """Paused by Ordo (a scope revoked): one task.paused message with the reason reaches the owner's
    endpoint, and the same event is in the event log, though agents may not publish that topic."""
    hook(db, receiver, ["task.paused"])
    task = add_task(db, schedule_kind="cron", schedule_expr="0 6 * * *")
    reason = {"reason": "SCOPE_REVOKED", "missing_scopes": ["tools:http"]}
    with db.tx() as conn:
        store_tasks.pause(conn, task["id"], reason=reason)
    with running_worker(db):
        receiver.wait_for(lambda r: len(r.accepted()) == 1)
        wait_for(lambda: not _waiting_deliveries(db), what="delivery recorded")
    data = receiver.accepted()[0].payload["data"]
    assert data["task_id"] == str(task["id"]) and data["title"] == task["title"]
    assert {k: data[k] for k in reason} == reason
    assert scalar(db, "SELECT count(*) FROM webhook_message") == 1
    assert scalar(db, "SELECT payload ->> 'reason' FROM event WHERE topic = 'task.paused'") == "SCOPE_REVOKED"
    with db.tx() as conn, pytest.raises(InvalidWebhook, match="system event"):
        store_events.publish(conn, LOCAL_AGENT_ID, "task.paused", {}, subscribers_of=None)


def test_a_generation_that_changes_availability_announces_it(db: Database, receiver: Receiver) -> None:
    """availability.changed goes with a generation that changed shifts; one that changed nothing
    announces nothing."""
    hook(db, receiver, ["availability.changed"])
    with db.tx() as conn:
        plant.apply_document(
            conn,
            LOCAL_AGENT_ID,
            document={
                "resources": [
                    {
                        "code": "S",
                        "level": "site",
                        "timezone": "UTC",
                        "children": [{"code": "M", "level": "work_unit"}],
                    }
                ],
                "assignments": [{"resource": "S", "pattern": "two_shift", "effective_from": "2026-01-01"}],
            },
        )
    first = plant.run_generation(db, LOCAL_AGENT_ID, date(2026, 3, 2), date(2026, 3, 3))
    plant.run_generation(db, LOCAL_AGENT_ID, date(2026, 3, 2), date(2026, 3, 3))  # the same again
    assert scalar(db, "SELECT count(*) FROM webhook_message") == 1
    with running_worker(db):
        receiver.wait_for(lambda r: len(r.accepted()) == 1)
    data = receiver.accepted()[0].payload["data"]
    assert data["generation_id"] == first["generation_id"] and data["added"] == first["changes"]["added"] > 0
