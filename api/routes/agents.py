"""Agents and their tokens (admin scope), and `GET /agents/me` for any token."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Response
from sqlalchemy import Connection

from api.deps import Admin, Caller, CheckedRoute, Clock, Cursor, Db, Limit, Reads, State
from api.errors import responses
from api.schemas import (
    AgentCreate,
    AgentDetail,
    AgentPage,
    AgentPublic,
    Me,
    TokenCreate,
    TokenCreated,
    TokenPublic,
)
from store import agents, audit

__all__ = ["router"]

router = APIRouter(prefix="/agents", tags=["agents"], route_class=CheckedRoute)

_ADMIN_READ = responses(401, 403, 404, 422, 429, 503)
_ADMIN_LIST = responses(400, 401, 403, 422, 429, 503)
_ADMIN_WRITE = responses(400, 401, 403, 404, 409, 413, 415, 422, 429, 503)


@router.get("/me", response_model=Me, responses=responses(401, 429, 503))
async def whoami(caller: Caller, reads: Reads) -> Any:
    """The agent behind the token, and the token's scopes."""
    agent = await reads.run(agents.get_agent, caller.agent_id)
    return {
        "agent": agents.public_agent(agent),
        "token_id": str(caller.token_id) if caller.token_id else None,
        "scopes": sorted(caller.scopes),
        "admin": caller.is_admin,
    }


@router.post("", status_code=201, response_model=AgentPublic, responses=_ADMIN_WRITE)
def create_agent(body: AgentCreate, caller: Admin, db: Db, response: Response) -> Any:
    """Register an agent. It can do nothing until it gets a token (POST /agents/{id}/tokens)."""
    with db.tx() as conn:
        agent = agents.create_agent(conn, body.name)
        audit.record(conn, caller, "agent.create", "agent", agent["id"], {"name": agent["name"]})
    response.headers["Location"] = f"/agents/{agent['id']}"
    return agents.public_agent(agent)


@router.get("", response_model=AgentPage, responses=_ADMIN_LIST)
async def list_agents(caller: Admin, reads: Reads, cursor: Cursor = None, limit: Limit = 50) -> Any:
    """Every agent, oldest first."""
    page = await reads.run(agents.list_agents, cursor=cursor, limit=limit)
    return {"items": [agents.public_agent(a) for a in page.items], "next_cursor": page.next_cursor}


@router.get("/{agent_id}", response_model=AgentDetail, responses=_ADMIN_READ)
async def get_agent(agent_id: UUID, caller: Admin, reads: Reads) -> Any:
    """An agent with its tokens (never their secrets)."""
    agent, tokens = await reads.run(_agent_and_tokens, agent_id)
    return {**agents.public_agent(agent), "tokens": [agents.public_token(t) for t in tokens]}


@router.delete("/{agent_id}", response_model=AgentPublic, responses=_ADMIN_WRITE)
def delete_agent(agent_id: UUID, caller: Admin, db: Db, state: State) -> Any:
    """Delete an agent: its tokens are revoked and its active tasks paused; tasks and history stay."""
    with db.tx() as conn:
        agent = agents.disable_agent(conn, agent_id, by=caller.agent_id)
        audit.record(conn, caller, "agent.delete", "agent", agent_id, {"name": agent["name"]})
    state.tokens.invalidate()  # other API processes hear it from the database (api.auth)
    return agents.public_agent(agent)


@router.post("/{agent_id}/tokens", status_code=201, response_model=TokenCreated, responses=_ADMIN_WRITE)
def create_token(agent_id: UUID, body: TokenCreate, caller: Admin, db: Db, state: State, now: Clock) -> Any:
    """Issue a token. The token is in this response only; Ordo keeps just its hash."""
    scopes = agents.validate_scopes(body.scopes, state.known_scopes)
    expires_at = now + timedelta(seconds=body.expires_in_s) if body.expires_in_s else None
    with db.tx() as conn:
        row, token = agents.create_token(
            conn, agent_id, scopes, name=body.name, created_by=caller.agent_id, expires_at=expires_at
        )
        audit.record(
            conn, caller, "token.create", "token", row["id"], {"agent_id": str(agent_id), "scopes": scopes}
        )
    return {**agents.public_token(row), "token": token}


@router.delete("/{agent_id}/tokens/{token_id}", response_model=TokenPublic, responses=_ADMIN_WRITE)
def revoke_token(agent_id: UUID, token_id: UUID, caller: Admin, db: Db, state: State) -> Any:
    """Revoke a token: it is refused (401) from the next request on."""
    with db.tx() as conn:
        row = agents.revoke_token(conn, agent_id, token_id)
        audit.record(conn, caller, "token.revoke", "token", token_id, {"agent_id": str(agent_id)})
    state.tokens.invalidate()  # other API processes hear it from the database (api.auth)
    return agents.public_token(row)


def _agent_and_tokens(conn: Connection, agent_id: UUID) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return agents.get_agent(conn, agent_id), agents.list_tokens(conn, agent_id)
