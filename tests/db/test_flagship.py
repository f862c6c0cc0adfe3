"""The flagship end to end in a real worker: the sample plant, the open work orders and the nightly
plan (catalogs/examples): availability generated, a plan that is optimal or feasible and valid, and
plan.ready received at a real receiver that verifies it with the reference library."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources
from typing import Any

import yaml

from engine.tools import plant
from engine.webhook_signing import new_secret
from scheduler import task_document
from store import runs as store_runs
from store import tasks as store_tasks
from store import webhooks
from store.db import Database
from store.tasks import LOCAL_AGENT_ID
from tests.helpers import REGISTRY, running_worker, scalar, wait_for
from tests.webhook_receiver import receiving


def _example(*path: str) -> Any:
    return yaml.safe_load(resources.files("catalogs").joinpath("examples", *path).read_text())


def test_the_nightly_plan_generates_plans_validates_analyses_and_notifies(db: Database) -> None:
    doc = _example("nightly_plan.yaml")
    operations = sum(len(order["operations"]) for order in doc["payload"]["params"]["work_orders"])
    with db.tx() as conn:
        plant.apply_document(conn, LOCAL_AGENT_ID, document=_example("plant", "press_shop.yaml"))
        values = task_document.validate(doc, REGISTRY, now=datetime.now(UTC))
        task = store_tasks.create(conn, values, LOCAL_AGENT_ID)
    with receiving() as receiver:
        secret = new_secret()
        receiver.secrets.append(secret)
        with db.tx() as conn:
            webhooks.create(
                conn, LOCAL_AGENT_ID, url=receiver.url, events=["plan.ready"], description="", secret=secret
            )
            (run_id,) = store_runs.enqueue(conn, task["id"])
        with running_worker(db):
            wait_for(
                lambda: scalar(db, "SELECT state FROM task_run WHERE run_id = :id AND final", id=run_id),
                timeout=120,
                what="the nightly plan",
            )
            receiver.wait_for(lambda r: len(r.accepted()) == 1, timeout=30)
    with db.tx() as conn:
        run = store_runs.get(conn, run_id)
    assert run["state"] == "succeeded", run["error"]
    steps = {s["id"]: s for s in run["steps"]}
    assert [s["id"] for s in run["steps"]] == ["avail", "plan", "check", "analyze", "notify"]
    assert steps["avail"]["output"]["rows"] > 0 and steps["avail"]["output"]["resources"] == 4
    assert steps["plan"]["output"]["status"] in ("optimal", "feasible")
    assert steps["check"]["output"]["valid"] is True, steps["check"]["output"]["violations"]
    assert len(steps["plan"]["output"]["assignments"]) == operations
    ready = receiver.accepted()[0].payload
    assert ready["type"] == "plan.ready"
    assert ready["data"]["run_id"] == run_id and ready["data"]["operations"] == operations
    assert ready["data"]["status"] == steps["plan"]["output"]["status"]
    assert ready["data"]["bottleneck"] in ("PW-P1", "PW-P2", "PW-P3", "PW-B1")
    first = min(a["start"] for a in steps["plan"]["output"]["assignments"])
    assert ready["data"]["first_start"] == first >= run["started_at"][:16]  # nothing planned in the past
