"""`ordo token create|list|revoke`: API tokens from the host, as the admin routes issue, show and revoke
them (POST /agents/{id}/tokens, GET /agents/{id}, DELETE /agents/{id}/tokens/{token_id})."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.output import JsonFlag, emit_json, table
from cli.runtime import fail
from cli.session import session
from store import agents, audit
from store.agents import ADMIN, ROUTE_SCOPES, Principal
from store.domain import TOKEN_NAME_MAX
from store.tasks import LOCAL_AGENT_ID

__all__ = ["token_app"]

token_app = typer.Typer(help="Create, list and revoke API tokens.", no_args_is_help=True)

# The operator at the host, as recorded in the audit log.
_LOCAL = Principal(LOCAL_AGENT_ID, "local", None, frozenset({ADMIN}))


@token_app.command("create")
def create(
    agent: Annotated[
        str, typer.Option("--agent", metavar="NAME", help="Agent name; created if it does not exist.")
    ],
    scopes: Annotated[
        str,
        typer.Option(
            "--scopes",
            metavar="SCOPES",
            help=f"Comma-separated scopes: {', '.join(ROUTE_SCOPES)}, and tool scopes such as tools:http.",
        ),
    ] = "",
    admin: Annotated[
        bool, typer.Option("--admin", help="Add the admin scope: everything, for every agent.")
    ] = False,
    name: Annotated[str, typer.Option("--name", help="A label: where the token will be used.")] = "",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the token as JSON (POST /agents/{id}/tokens's answer).")
    ] = False,
) -> None:
    """Print a new API token for an agent. It is shown only once; Ordo stores just its hash. The token
    sees and runs only the tasks its agent creates (admin: everyone's)."""
    with session() as s:
        wanted = [x.strip() for x in scopes.split(",") if x.strip()] + ([ADMIN] if admin else [])
        if len(name) > TOKEN_NAME_MAX:
            fail(f"--name is at most {TOKEN_NAME_MAX} characters, not {len(name)}")
        if not wanted:
            fail("give --scopes (e.g. --scopes tasks:read,tasks:write,runs:read) or --admin")
        known = set(ROUTE_SCOPES) | {scope for address in s.registry for scope in s.registry[address].scopes}
        granted = agents.validate_scopes(wanted, known)
        with s.db.tx() as conn:
            row = agents.ensure_agent(conn, agent)
            token_row, token = agents.create_token(conn, row["id"], granted, name=name or "ordo token create")
            audit.record(
                conn,
                _LOCAL,
                "token.create",
                "token",
                token_row["id"],
                {"agent_id": str(row["id"]), "scopes": granted},
            )
        if as_json:
            emit_json({**agents.public_token(token_row), "token": token})
            return
        typer.echo(
            f"token for agent {row['name']!r} ({row['id']}) with scopes {', '.join(granted)}; "
            "it is shown only once:",
            err=True,
        )
        typer.echo(token)


@token_app.command("list")
def list_tokens(
    agent: Annotated[
        str | None, typer.Option("--agent", metavar="NAME", help="Only this agent's tokens.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Tokens, oldest first: their public part, agent, scopes and state (never the secret)."""
    with session() as s:
        with s.db.tx() as conn:
            rows = agents.tokens_with_agents(conn, agent_name=agent)
        tokens = [agents.public_token(r) for r in rows]
        if as_json:
            emit_json(tokens)
            return
        table(
            [
                (
                    t["id"],
                    t["prefix"],
                    r["agent_name"],
                    ",".join(t["scopes"]),
                    "revoked" if t["revoked_at"] else "active",
                    t["last_used_at"],
                    t["name"],
                )
                for t, r in zip(tokens, rows, strict=True)
            ],
            ["id", "prefix", "agent", "scopes", "state", "last_used_at", "name"],
            empty="no tokens",
        )


@token_app.command("revoke")
def revoke(
    token: Annotated[
        str, typer.Argument(metavar="TOKEN", help="The token's id, or its public part (ordo_xxxxxxxxxxxx).")
    ],
    as_json: JsonFlag = False,
) -> None:
    """Revoke a token: the API refuses it (401) from the next request on."""
    with session() as s:
        with s.db.tx() as conn:
            found = agents.find_token(conn, token)
            row = agents.revoke_token(conn, found["agent_id"], found["id"])
            audit.record(conn, _LOCAL, "token.revoke", "token", row["id"], {"agent_id": str(row["agent_id"])})
        if as_json:
            emit_json(agents.public_token(row))
        else:
            typer.echo(f"token {row['id']} (ordo_{row['public_id']}) is revoked")
