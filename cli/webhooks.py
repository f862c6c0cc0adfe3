"""`ordo webhook …`: register endpoints for the local agent, list and change them, rotate secrets, read
the delivery log and redeliver, and `ordo webhook receive`, a receiver that verifies what arrives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli import runtime
from cli.output import emit_json, table
from cli.runtime import guarded, load_settings
from cli.session import session
from engine.outbound import OutboundPolicy
from engine.webhook_endpoint import EndpointRules, check_changes, check_new, check_secret
from engine.webhook_signing import new_secret
from store import webhooks
from store.domain import SECRET_OVERLAP_MAX_S
from store.settings import Settings
from store.tasks import LOCAL_AGENT_ID

if TYPE_CHECKING:
    from workers.deliverer import DelivererConfig

__all__ = ["deliverer_config", "rules", "webhook_app"]

webhook_app = typer.Typer(
    help="Signed webhooks: register endpoints, read the delivery log, redeliver, receive.",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON only (for scripts).")]


def rules(settings: Settings) -> EndpointRules:
    """What a webhook URL may be under these settings (the outbound policy, https or not)."""
    return EndpointRules(
        OutboundPolicy.parse(settings.outbound_allow), require_https=settings.webhook_require_https
    )


def deliverer_config(settings: Settings) -> DelivererConfig:
    """A worker's webhook deliveries under these settings."""
    from workers.deliverer import DelivererConfig  # only `ordo worker` needs the workers package
    from workers.delivery_policy import DeliveryPolicy

    return DelivererConfig(
        policy=DeliveryPolicy(
            settings.webhook_retry_delays,
            settings.webhook_breaker_failures,
            settings.webhook_breaker_cooldown_s,
        ),
        concurrency=settings.webhook_concurrency,
        timeout_s=settings.webhook_timeout_s,
        retention_days=settings.run_retention_days,
    )


@webhook_app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="Where signed POSTs go.")],
    event: Annotated[list[str], typer.Option("--event", "-e", help="A topic to receive (repeat for more).")],
    secret: Annotated[
        str | None, typer.Option(help="whsec_… secret; generated when omitted.", envvar="ORDO_WEBHOOK_SECRET")
    ] = None,
    description: Annotated[str, typer.Option(help="A note for people.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Register an endpoint for the local agent's events. Prints its signing secret, once."""
    with session() as s:
        doc: dict[str, Any] = {"url": url, "events": event, "description": description}
        if secret is not None:
            doc["secret"] = secret
        values = check_new(doc, rules(s.settings))
        with s.db.tx() as conn:
            row = webhooks.create(
                conn,
                LOCAL_AGENT_ID,
                url=values["url"],
                events=values["events"],
                description=values["description"],
                secret=values["secret"] or new_secret(),
            )
        shown = webhooks.public(row, with_secret=True)
        if as_json:
            emit_json(shown)
            return
        typer.echo(
            f"webhook {shown['id']} registered for {', '.join(shown['events'])}; its secret (shown once):"
        )
        typer.echo(shown["secret"])


@webhook_app.command("list")
def list_(as_json: JsonFlag = False) -> None:
    """Every agent's endpoints, newest first, with state and breaker."""
    with session() as s:
        with s.db.tx() as conn:
            items = [webhooks.public(r) for r in webhooks.list_page(conn, limit=200).items]
        if as_json:
            emit_json(items)
            return
        table(
            [(w["id"], w["state"], w["breaker"]["state"], ",".join(w["events"]), w["url"]) for w in items],
            ["id", "state", "breaker", "events", "url"],
            empty="no webhooks",
        )


@webhook_app.command("show")
def show(webhook_id: str, as_json: JsonFlag = False) -> None:
    """One endpoint."""
    with session() as s:
        with s.db.tx() as conn:
            shown = webhooks.public(webhooks.get(conn, webhook_id))
        _print(shown, as_json)


def _change(webhook_id: str, doc: dict[str, Any], as_json: bool) -> None:
    with session() as s:
        changes = check_changes(doc, rules(s.settings))
        with s.db.tx() as conn:
            shown = webhooks.public(webhooks.update(conn, webhook_id, changes))
        _print(shown, as_json)


@webhook_app.command("pause")
def pause(webhook_id: str, as_json: JsonFlag = False) -> None:
    """Hold deliveries (nothing is dropped) until resumed."""
    _change(webhook_id, {"state": "paused"}, as_json)


@webhook_app.command("resume")
def resume(webhook_id: str, as_json: JsonFlag = False) -> None:
    """Send held deliveries now; also closes an open breaker."""
    _change(webhook_id, {"state": "active"}, as_json)


@webhook_app.command("rotate")
def rotate(
    webhook_id: str,
    overlap_s: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=SECRET_OVERLAP_MAX_S,
            help="How long the old secret signs too, seconds (default ORDO_WEBHOOK_SECRET_OVERLAP_S).",
        ),
    ] = None,
    secret: Annotated[
        str | None, typer.Option(help="The new whsec_… secret; generated when omitted.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Replace the signing secret; prints the new one, once."""
    with session() as s:
        new = new_secret() if secret is None else check_secret(secret)
        overlap = s.settings.webhook_secret_overlap_s if overlap_s is None else max(0.0, overlap_s)
        with s.db.tx() as conn:
            shown = webhooks.public(
                webhooks.rotate(conn, webhook_id, secret=new, overlap_s=overlap), with_secret=True
            )
        if as_json:
            emit_json(shown)
            return
        until = shown["previous_secret_expires_at"]
        typer.echo(f"new secret (shown once){f'; the old one signs too until {until}' if until else ''}:")
        typer.echo(shown["secret"])


@webhook_app.command("delete")
def delete(webhook_id: str) -> None:
    """Delete an endpoint with its deliveries and their log."""
    with session() as s:
        with s.db.tx() as conn:
            webhooks.delete(conn, webhook_id)
        typer.echo(f"webhook {webhook_id} deleted")


@webhook_app.command("deliveries")
def deliveries(
    webhook_id: str,
    state: Annotated[
        str | None, typer.Option(help="pending, delivering, succeeded, failed (will retry) or dead.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
    as_json: JsonFlag = False,
) -> None:
    """The delivery log, newest first: every attempt with status, latency and error."""
    with session() as s:
        with s.db.tx() as conn:
            page = webhooks.deliveries(conn, webhook_id, state=state, limit=limit)
        items = [webhooks.public_delivery(r) for r in page.items]
        if as_json:
            emit_json(items)
            return
        if not items:
            typer.echo("no deliveries")
        for d in items:
            typer.echo(
                f"delivery {d['id']}  {d['state']:<10} {d['type']}  {d['webhook_id']}  x{d['attempts']}"
            )
            for a in d["attempt_log"]:
                error = a["error"] or {}
                line = (
                    f"    #{a['attempt']} {a['started_at']}  {a['status_code'] or '-':>3}  "
                    f"{a['latency_ms'] or 0:>8.1f}ms  {a['outcome']:<9} "
                    f"{error.get('code', '')} {error.get('message', '')}"
                )
                typer.echo(line.rstrip())


@webhook_app.command("redeliver")
def redeliver(webhook_id: str, delivery_id: int, as_json: JsonFlag = False) -> None:
    """Send a dead (or succeeded) delivery again now, with the same webhook-id."""
    with session() as s:
        with s.db.tx() as conn:
            shown = webhooks.public_delivery(webhooks.redeliver(conn, webhook_id, delivery_id))
        if as_json:
            emit_json(shown)
        else:
            typer.echo(f"delivery {delivery_id} queued again ({shown['webhook_id']})")


@webhook_app.command("receive")
def receive(
    secret: Annotated[
        list[str],
        typer.Option(
            "--secret",
            help="The endpoint's whsec_… secret (repeat while rotating).",
            envvar="ORDO_WEBHOOK_RECEIVER_SECRET",
        ),
    ],
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8089,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    record: Annotated[
        Path | None, typer.Option(help="Append each request as a JSON line to this file.")
    ] = None,
) -> None:
    """Receive webhooks, verify each (signature, timestamp), and print one line per request."""
    from cli.receiver import Receiver, serve

    with guarded():
        settings = load_settings()
        runtime.service_logging(settings)

        def report(entry: dict[str, Any]) -> None:
            typer.echo(json.dumps(entry, ensure_ascii=False, default=str))

        try:
            receiver = Receiver([s for s in secret if s], record, on_request=report)
        except ValueError as e:
            runtime.fail(f"--secret: {e}", 2)
        stop = runtime.stop_on_signals()
        try:
            serve(receiver, host, port, stop)
        except OSError as e:
            runtime.fail(f"cannot listen on {host}:{port}: {e.strerror}")


def _print(shown: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(shown)
        return
    typer.echo(
        f"webhook {shown['id']}  {shown['state']}  breaker {shown['breaker']['state']}  "
        f"{','.join(shown['events'])}  {shown['url']}"
    )
