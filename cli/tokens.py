"""`ordo token create`: an API token for an agent (created if missing), for bootstrap and scripts."""

from __future__ import annotations

from typing import Annotated

import typer

from cli import runtime
from cli.output import emit_json
from cli.runtime import fail, guarded, load_settings, open_database
from engine import ToolRegistry
from store import agents, audit
from store.agents import ADMIN, ROUTE_SCOPES, Principal
from store.tasks import LOCAL_AGENT_ID

__all__ = ["token_app"]

token_app = typer.Typer(help="Create API tokens.", no_args_is_help=True)

# The operator at the host, as recorded in the audit log.
_LOCAL = Principal(LOCAL_AGENT_ID, "local", None, frozenset({ADMIN}))


@token_app.command("create")
def create(
    agent: Annotated[str, typer.Option("--agent", help="Agent name; created if it does not exist.")],
    scopes: Annotated[
        str,
        typer.Option(
            "--scopes",
            help=f"Comma-separated scopes: {', '.join(ROUTE_SCOPES)}, and tool scopes such as tools:http.",
        ),
    ] = "",
    admin: Annotated[
        bool, typer.Option("--admin", help="Add the admin scope: everything, for every agent.")
    ] = False,
    name: Annotated[str, typer.Option("--name", help="A label: where the token will be used.")] = "",
    as_json: Annotated[
        bool, typer.Option("--json", help='Print {"agent_id": ..., "token": ...} only.')
    ] = False,
) -> None:
    """Print a new API token. It is shown only once; Ordo stores just its hash."""
    with guarded():
        settings = load_settings()
        runtime.quiet_logging(settings)
        wanted = [s.strip() for s in scopes.split(",") if s.strip()] + ([ADMIN] if admin else [])
        if not wanted:
            fail("give --scopes (e.g. --scopes tasks:read,tasks:write,runs:read) or --admin")
        registry = ToolRegistry.load(settings.tool_catalogs)
        known = set(ROUTE_SCOPES) | {scope for address in registry for scope in registry[address].scopes}
        granted = agents.validate_scopes(wanted, known)
        db = open_database(settings)
        try:
            with db.tx() as conn:
                row = agents.ensure_agent(conn, agent)
                token_row, token = agents.create_token(
                    conn, row["id"], granted, name=name or "ordo token create"
                )
                audit.record(
                    conn,
                    _LOCAL,
                    "token.create",
                    "token",
                    token_row["id"],
                    {"agent_id": str(row["id"]), "scopes": granted},
                )
        finally:
            db.dispose()
        if as_json:
            emit_json(
                {
                    "agent_id": str(row["id"]),
                    "token": token,
                    "token_id": str(token_row["id"]),
                    "scopes": granted,
                }
            )
            return
        typer.echo(
            f"token for agent {row['name']!r} ({row['id']}) with scopes {', '.join(granted)}; "
            "it is shown only once:",
            err=True,
        )
        typer.echo(token)
