"""`ordo up --demo`: the flagship, loaded and run once so a new user sees the whole product at work.

It loads, for the local agent, the sample press shop (catalogs/examples/plant/press_shop.yaml) and the
nightly_plan task (catalogs/examples/nightly_plan.yaml), points a plan.ready webhook at a built-in
receiver that verifies every signature (`ordo webhook receive`, a child of `ordo up`), opens exactly
that receiver's address and port in the outbound policy, and queues one run. Loading is idempotent: a
second `ordo up --demo` finds the plant, the task and the webhook it made before, brings them up to
date (the receiver listens on a fresh port each time), and runs the plan once more.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml

from engine import ToolRegistry
from engine.outbound import OutboundPolicy
from engine.tools import plant
from engine.webhook_endpoint import EndpointRules, check_changes, check_new
from engine.webhook_signing import new_secret
from scheduler import task_document
from store import runs as store_runs
from store import tasks as store_tasks
from store import webhooks
from store.db import Database
from store.settings import Settings
from store.tasks import LOCAL_AGENT_ID

__all__ = ["Demo", "prepare"]

PLANT = ("plant", "press_shop.yaml")
TASK = ("nightly_plan.yaml",)
# How the demo recognises the webhook it registered on an earlier start.
RECEIVER_NOTE = "ordo up --demo: the built-in receiver that verifies signatures"


@dataclass(frozen=True)
class Demo:
    task_id: UUID
    webhook_id: UUID
    run_id: int
    receiver_port: int
    secret: str
    outbound_allow: str  # ORDO_OUTBOUND_ALLOW for the processes: the user's, plus the receiver
    record: Path  # where the receiver writes what it got, one JSON line per request

    @property
    def receiver_url(self) -> str:
        return f"http://127.0.0.1:{self.receiver_port}/hook"

    def explain(self) -> str:
        """What to look at, for the person who started it."""
        return (
            "\nDemo: the press shop and the nightly plan are loaded, and the plan runs once now:\n"
            "generate the week's availability, solve the open work orders in those shifts, validate,\n"
            "analyse, and send plan.ready to a receiver that verifies the signature.\n\n"
            f"    ordo run {self.run_id}                    # every step with its output\n"
            f"    ordo webhook deliveries {self.webhook_id}   # the signed delivery\n"
            f"    curl -s http://127.0.0.1:{self.receiver_port}/   # what the receiver verified\n"
            f"    tail {self.record}   # the same, one JSON line per request\n\n"
            f"The task ({self.task_id}) runs again every weekday at 05:30 in Johannesburg.\n\n"
        )


def prepare(db: Database, settings: Settings, registry: ToolRegistry) -> Demo:
    """Load the flagship (idempotently) and queue one run of it."""
    port = _free_port()
    allow = ",".join(a for a in (settings.outbound_allow.strip(), f"127.0.0.1:{port}") if a)
    rules = EndpointRules(OutboundPolicy.parse(allow), require_https=False)
    now = datetime.now(UTC)
    task_doc = _example(*TASK)
    with db.tx() as conn:
        plant.apply_document(conn, LOCAL_AGENT_ID, document=_example(*PLANT))
        task = _task(conn, task_doc, registry, now)
        endpoint = _receiver_endpoint(conn, f"http://127.0.0.1:{port}/hook", rules)
        (run_id,) = store_runs.enqueue(conn, task["id"])
    record = settings.data_dir / "demo-webhooks.jsonl"
    record.parent.mkdir(parents=True, exist_ok=True)
    return Demo(task["id"], endpoint["id"], run_id, port, endpoint["secret"], allow, record)


def _task(conn: Any, doc: dict[str, Any], registry: ToolRegistry, now: datetime) -> dict[str, Any]:
    """The demo's task: the one made by an earlier start (brought up to date), or a new one."""
    page = store_tasks.list_page(conn, agent_id=LOCAL_AGENT_ID, text=doc["title"], limit=200)
    for row in page.items:
        if row["title"] == doc["title"] and row["status"] != "canceled":
            return task_document.edit(conn, row["id"], doc, registry, now=now, agent_id=LOCAL_AGENT_ID)
    return store_tasks.create(conn, task_document.validate(doc, registry, now=now), LOCAL_AGENT_ID)


def _receiver_endpoint(conn: Any, url: str, rules: EndpointRules) -> dict[str, Any]:
    """The webhook to the receiver: the one made by an earlier start (now at this URL), or a new one."""
    for row in webhooks.list_page(conn, agent_id=LOCAL_AGENT_ID, limit=200).items:
        if row["description"] == RECEIVER_NOTE:
            changes = check_changes({"url": url, "events": ["plan.ready"], "state": "active"}, rules)
            return webhooks.update(conn, row["id"], changes, agent_id=LOCAL_AGENT_ID)
    values = check_new({"url": url, "events": ["plan.ready"], "description": RECEIVER_NOTE}, rules)
    return webhooks.create(
        conn,
        LOCAL_AGENT_ID,
        url=values["url"],
        events=values["events"],
        description=values["description"],
        secret=new_secret(),
    )


def _example(*path: str) -> Any:
    return yaml.safe_load(resources.files("catalogs").joinpath("examples", *path).read_text(encoding="utf-8"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
