"""`ordo event publish TOPIC` and `ordo event list`, as POST /events and GET /events do. Published
from the host, an event runs every agent's active tasks subscribed to the topic (as an admin's does)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli import documents
from cli.output import JsonFlag, emit_json, table
from cli.session import session
from store import events as store_events
from store import tasks as store_tasks

__all__ = ["event_app"]

event_app = typer.Typer(
    help="Publish events that trigger subscribed tasks, and list them.", no_args_is_help=True
)


@event_app.command("publish")
def event_publish(
    topic: Annotated[str, typer.Argument(metavar="TOPIC", help="Event topic, e.g. orders.created.")],
    payload: Annotated[
        str | None,
        typer.Option(
            "--payload",
            metavar="FILE",
            help="The event's payload (YAML or JSON; '-' reads stdin). Tasks read it as ${event.payload...}.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Publish an event: one run of every active task whose schedule is `event` on TOPIC."""
    with session() as s:
        body = documents.read(payload, max_bytes=s.settings.api_max_body_bytes) if payload else None
        with s.db.tx() as conn:
            event = store_events.public(
                store_events.publish(conn, store_tasks.LOCAL_AGENT_ID, topic, body, subscribers_of=None)
            )
        if as_json:
            emit_json(event)
            return
        runs = ", ".join(str(r["run_id"]) for r in event["runs"]) or "none"
        typer.echo(f"event {event['id']} published on {topic}: {len(event['runs'])} run(s) queued ({runs})")


@event_app.command("list")
def event_list(
    topic: Annotated[str | None, typer.Option(metavar="TOPIC", help="Only events on this topic.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Events published, newest first."""
    with session() as s:
        with s.db.tx() as conn:
            page = store_events.list_page(conn, topic=topic, limit=limit)
        events = [store_events.public(e) for e in page.items]
        if as_json:
            emit_json(events)
            return
        table(
            [(e["id"], e["topic"], e["matched_tasks"], e["created_at"], e["payload"]) for e in events],
            ["id", "topic", "tasks", "created_at", "payload"],
            empty="no events",
        )
