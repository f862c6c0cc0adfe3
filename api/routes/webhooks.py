"""Webhook endpoints (Standard Webhooks v1): register, list, change, rotate the secret, delete; the
delivery log with every attempt; redeliver. An agent sees only its own endpoints (others' are 404)
unless it is an admin. A secret is shown only in the response that made it."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Path, Response

from api.deps import CheckedRoute, Cursor, Db, Limit, Reads, State, WebhookRules, WebhooksRead, WebhooksWrite
from api.errors import responses
from api.responses import json_body
from api.schemas import (
    DeliveryPage,
    DeliveryPublic,
    SecretRotation,
    WebhookCreate,
    WebhookCreated,
    WebhookPage,
    WebhookPatch,
    WebhookPublic,
)
from engine.webhook_endpoint import check_changes, check_new, check_secret
from engine.webhook_signing import new_secret
from store import audit, webhooks
from store.domain import DeliveryState

__all__ = ["router"]

router = APIRouter(prefix="/webhooks", tags=["webhooks"], route_class=CheckedRoute)

_READ = responses(400, 401, 403, 404, 422, 429, 503)
_WRITE = responses(400, 401, 403, 404, 409, 413, 422, 429, 503)

# The delivery log reads its cursor before it looks the endpoint up (as every listing does), so its
# path takes any text: an id that is no UUID is a 404 there, not a 422 ahead of a bad cursor's 400.
WebhookRef = Annotated[str, Path(max_length=100, description="Webhook id.")]
DeliveryId = Annotated[int, Path(ge=1, le=2**63 - 1, description="Delivery id.")]


@router.post("", status_code=201, response_model=WebhookCreated, responses=_WRITE)
def create_webhook(body: WebhookCreate, caller: WebhooksWrite, db: Db, rules: WebhookRules) -> Any:
    """Register an endpoint for the caller's events. The response carries the signing secret (made
    when not given); it is never shown again. A URL whose host is an address the outbound policy
    refuses (loopback, private, link-local, metadata, ...) is refused here (422)."""
    values = check_new(body.model_dump(exclude_none=True), rules)
    with db.tx() as conn:
        row = webhooks.create(
            conn,
            caller.agent_id,
            url=values["url"],
            events=values["events"],
            description=values["description"],
            secret=values["secret"] or new_secret(),
        )
        audit.record(conn, caller, "webhook.create", "webhook", row["id"], {"events": values["events"]})
    out = webhooks.public(row, with_secret=True)
    return json_body(out, 201, {"Location": f"/webhooks/{out['id']}"})


@router.get("", response_model=WebhookPage, responses=_READ)
async def list_webhooks(caller: WebhooksRead, reads: Reads, cursor: Cursor = None, limit: Limit = 50) -> Any:
    """The caller's endpoints (every agent's for admins), newest first."""
    page = await reads.run(webhooks.list_page, agent_id=caller.owner, cursor=cursor, limit=limit)
    return json_body({"items": [webhooks.public(r) for r in page.items], "next_cursor": page.next_cursor})


@router.get("/{webhook_id}", response_model=WebhookPublic, responses=_READ)
async def get_webhook(webhook_id: UUID, caller: WebhooksRead, reads: Reads) -> Any:
    """One endpoint with its state and breaker."""
    return json_body(webhooks.public(await reads.run(webhooks.get, webhook_id, caller.owner)))


@router.patch("/{webhook_id}", response_model=WebhookPublic, responses=_WRITE)
def update_webhook(
    webhook_id: UUID, body: WebhookPatch, caller: WebhooksWrite, db: Db, rules: WebhookRules
) -> Any:
    """Change the URL, the events or the description; `state: paused` holds deliveries, `state:
    active` resumes them (and closes an open breaker)."""
    changes = check_changes(body.model_dump(exclude_unset=True), rules)
    with db.tx() as conn:
        row = webhooks.update(conn, webhook_id, changes, agent_id=caller.owner)
        audit.record(conn, caller, "webhook.update", "webhook", webhook_id, {"fields": sorted(changes)})
    return json_body(webhooks.public(row))


@router.delete("/{webhook_id}", status_code=204, response_class=Response, responses=_WRITE)
def delete_webhook(webhook_id: UUID, caller: WebhooksWrite, db: Db) -> Response:
    """Delete an endpoint with its deliveries and their log."""
    with db.tx() as conn:
        webhooks.delete(conn, webhook_id, agent_id=caller.owner)
        audit.record(conn, caller, "webhook.delete", "webhook", webhook_id)
    return Response(status_code=204)


@router.post("/{webhook_id}/rotate-secret", response_model=WebhookCreated, responses=_WRITE)
def rotate_secret(
    webhook_id: UUID,
    caller: WebhooksWrite,
    db: Db,
    state: State,
    body: Annotated[SecretRotation | None, Body()] = None,
) -> Any:
    """Replace the signing secret. The old one keeps signing too (a second `v1,` entry) until
    `previous_secret_expires_at`, so receivers can switch without missing a request."""
    body = body or SecretRotation()
    secret = new_secret() if body.secret is None else check_secret(body.secret)
    overlap = state.settings.webhook_secret_overlap_s if body.overlap_s is None else body.overlap_s
    with db.tx() as conn:
        row = webhooks.rotate(conn, webhook_id, secret=secret, overlap_s=overlap, agent_id=caller.owner)
        audit.record(conn, caller, "webhook.rotate_secret", "webhook", webhook_id, {"overlap_s": overlap})
    return json_body(webhooks.public(row, with_secret=True))


@router.get("/{webhook_id}/deliveries", response_model=DeliveryPage, responses=_READ)
async def list_deliveries(
    webhook_id: WebhookRef,
    caller: WebhooksRead,
    reads: Reads,
    state: DeliveryState | None = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Any:
    """The endpoint's deliveries, newest first, each with every attempt: when, status code,
    latency, the start of the answer, the error."""
    page = await reads.run(
        webhooks.deliveries, webhook_id, agent_id=caller.owner, state=state, cursor=cursor, limit=limit
    )
    return json_body(
        {"items": [webhooks.public_delivery(r) for r in page.items], "next_cursor": page.next_cursor}
    )


@router.get("/{webhook_id}/deliveries/{delivery_id}", response_model=DeliveryPublic, responses=_READ)
async def get_delivery(webhook_id: UUID, delivery_id: DeliveryId, caller: WebhooksRead, reads: Reads) -> Any:
    row = await reads.run(webhooks.delivery, webhook_id, delivery_id, agent_id=caller.owner)
    return json_body(webhooks.public_delivery(row))


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=DeliveryPublic,
    responses=_WRITE,
)
def redeliver(webhook_id: UUID, delivery_id: DeliveryId, caller: WebhooksWrite, db: Db) -> Any:
    """Send a dead (or succeeded) delivery again now, with the same webhook-id and a fresh round of
    retries. A delivery still waiting or in flight is a 409."""
    with db.tx() as conn:
        row = webhooks.redeliver(conn, webhook_id, delivery_id, agent_id=caller.owner)
        audit.record(conn, caller, "webhook.redeliver", "webhook", webhook_id, {"delivery_id": delivery_id})
    return json_body(webhooks.public_delivery(row), 202)
