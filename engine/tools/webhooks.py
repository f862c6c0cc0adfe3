"""webhook.notify and event.publish: a pipeline step that tells the task owner's systems something, by
signed webhook, or by an event (which triggers the owner's event tasks and reaches its webhooks too).

Both act for the task's owner and write through the worker's database handle (`ctx.db`). A run that
is retried after such a step has run does not announce twice: the step's (run, step) pair keys what
it wrote, and the retry returns the first attempt's result.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson

from engine.context import ToolContext
from engine.values import escapes_nul
from store import events as store_events
from store import idempotency
from store import webhooks as store_webhooks
from store.errors import Permanent

__all__ = ["MAX_DATA_BYTES", "notify", "publish"]

MAX_DATA_BYTES = 256 * 1024  # a webhook body is best kept small; this is a hard ceiling


def notify(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Queue `data` as an `event` message to the owner's endpoints subscribed to it, or to the one
    `endpoint`. Schemas: catalogs/tools.json, webhook.notify."""
    event, data = args["event"], args.get("data", {})
    store_webhooks.check_publishable(event, "with.event")
    _check_size(data, "with.data")
    owner, run_key = _owner(ctx), _run_key(ctx)
    with ctx.db.tx() as conn:
        queued = store_webhooks.announce(
            conn,
            owner,
            event,
            data,
            endpoint_id=args.get("endpoint"),
            source_key=None if run_key is None else f"{run_key}:notify",
        )
    return {
        "event": event,
        "webhook_id": queued[0]["webhook_id"] if queued else None,
        "deliveries": [{"delivery_id": q["delivery_id"], "endpoint_id": q["endpoint_id"]} for q in queued],
    }


def publish(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """Publish an event as the task's owner: its event tasks on the topic run, its webhooks subscribed
    to the topic are sent the payload. Schemas: catalogs/tools.json, event.publish."""
    topic, payload = args["topic"], args.get("payload")
    _check_size(payload, "with.payload")
    owner, run_key = _owner(ctx), _run_key(ctx)
    operation = "event.publish"
    with ctx.db.tx() as conn:
        if run_key is not None:
            first = idempotency.claim(
                conn, owner, run_key, operation, idempotency.fingerprint(operation, run_key)
            )
            if first is not None:
                return first.response
        event = store_events.publish(conn, owner, topic, payload, subscribers_of=owner)
        out = {
            "event_id": str(event["id"]),
            "topic": topic,
            "runs": [{"run_id": r["run_id"], "task_id": str(r["task_id"])} for r in event["runs"]],
            "webhook_deliveries": event["webhook_deliveries"],
        }
        if run_key is not None:
            idempotency.save(conn, owner, run_key, 200, out)
    return out


def _owner(ctx: ToolContext) -> UUID:
    if ctx.db is None or not ctx.task.get("agent_id"):
        raise Permanent(
            "this tool acts for a task's owner and needs Ordo's database: it runs only inside a worker",
            code="NEEDS_WORKER",
        )
    return UUID(ctx.task["agent_id"])


def _run_key(ctx: ToolContext) -> str | None:
    """What identifies this step of this run across its attempts."""
    run_id = ctx.run.get("id")
    return None if run_id is None else f"run:{run_id}:{ctx.step_id}"


def _check_size(value: Any, path: str) -> None:
    try:
        text = orjson.dumps(value)
    except orjson.JSONEncodeError as e:  # a lone surrogate (from a JMESPath literal), an integer past 64 bits
        raise Permanent(
            f"{path} cannot be sent as JSON: {e}", code="PAYLOAD_INVALID", details={"path": path}
        ) from None
    if escapes_nul(text):
        raise Permanent(
            f"{path} holds the character U+0000, which cannot be stored",
            code="PAYLOAD_INVALID",
            details={"path": path},
        )
    size = len(text)
    if size > MAX_DATA_BYTES:
        raise Permanent(
            f"{path} is {size} bytes as JSON; at most {MAX_DATA_BYTES} may be sent (send ids, not documents)",
            code="PAYLOAD_TOO_LARGE",
            details={"path": path, "bytes": size},
        )
